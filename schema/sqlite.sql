-- edgemon local buffer (SQLite, WAL mode). Migration 1.
-- Applied by edgemon itself (src/buffer/migrations.rs); PRAGMA user_version holds the version.
-- Times are Unix milliseconds (INTEGER) unless the column name says otherwise.

-- One row per configured host, kept across restarts; a host removed from the config keeps its row
-- (and its samples) until they are synced and expired.
CREATE TABLE hosts (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT    NOT NULL UNIQUE,
    address              TEXT    NOT NULL,
    next_seq             INTEGER NOT NULL DEFAULT 1,    -- per-host sequence of the next sample
    last_sample_at       INTEGER,                        -- received_at of the newest sample
    last_attempt_at      INTEGER,
    last_duration_ms     INTEGER,
    last_error_at        INTEGER,
    last_error_class     TEXT,
    last_error           TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0
);

-- One row per sample. Identity stable across retries: (appliance id, host name, seq).
-- sync_state: 0 = unsynced, 1 = synced (after the MySQL COMMIT), 2 = quarantined (MySQL rejected it).
CREATE TABLE samples (
    id            INTEGER PRIMARY KEY,
    host_id       INTEGER NOT NULL REFERENCES hosts(id),
    seq           INTEGER NOT NULL,
    collected_at  INTEGER NOT NULL,                      -- the agent's clock
    received_at   INTEGER NOT NULL,                      -- the appliance's clock
    clock_skewed  INTEGER NOT NULL DEFAULT 0,            -- 1 when |collected_at - received_at| > max_clock_skew
    cpu           REAL    NOT NULL,                      -- total CPU %, 0-100
    cores         TEXT    NOT NULL,                      -- per-core CPU %, comma separated, core 0 first
    mem_used      INTEGER NOT NULL,
    mem_total     INTEGER NOT NULL,
    swap_used     INTEGER NOT NULL,
    swap_total    INTEGER NOT NULL,
    uptime_s      INTEGER NOT NULL,
    boot_time_s   INTEGER,
    load1         REAL,
    load5         REAL,
    load15        REAL,
    hostname      TEXT,
    os            TEXT,
    kernel        TEXT,
    extras        TEXT,                                  -- JSON object of elements the collector does not model
    sync_state    INTEGER NOT NULL DEFAULT 0,
    synced_at     INTEGER,
    UNIQUE (host_id, seq)
);
CREATE INDEX samples_unsynced ON samples (id) WHERE sync_state = 0;
CREATE INDEX samples_host_time ON samples (host_id, received_at);

-- Failed collection attempts, synced to MySQL like samples.
CREATE TABLE collection_errors (
    id          INTEGER PRIMARY KEY,
    host_id     INTEGER NOT NULL REFERENCES hosts(id),
    at          INTEGER NOT NULL,
    class       TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    sync_state  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX collection_errors_unsynced ON collection_errors (id) WHERE sync_state = 0;

-- Samples MySQL refused for their content, with the reason; never retried automatically.
CREATE TABLE quarantine (
    sample_id   INTEGER PRIMARY KEY REFERENCES samples(id),
    at          INTEGER NOT NULL,
    reason      TEXT    NOT NULL
);

-- Every sample the buffer dropped before it was synced: never a silent loss.
CREATE TABLE drops (
    id          INTEGER PRIMARY KEY,
    host_id     INTEGER NOT NULL REFERENCES hosts(id),
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    sync_state  INTEGER NOT NULL DEFAULT 0
);

-- Alert lifecycle per host and rule (cpu, memory, swap, reboot, unreachable).
CREATE TABLE alert_state (
    host_id          INTEGER NOT NULL REFERENCES hosts(id),
    rule             TEXT    NOT NULL,
    state            TEXT    NOT NULL,                   -- ok | pending | firing | flapping | stale
    breaches         INTEGER NOT NULL DEFAULT 0,         -- consecutive breaching samples
    since            INTEGER,                            -- when the current state began
    last_value       REAL,
    last_notified_at INTEGER,
    flips            TEXT    NOT NULL DEFAULT '',        -- recent transition times, comma separated
    PRIMARY KEY (host_id, rule)
);

-- Every alert transition, synced to MySQL's alert_events.
CREATE TABLE alert_events (
    id          INTEGER PRIMARY KEY,
    host_id     INTEGER NOT NULL REFERENCES hosts(id),
    rule        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,                        -- firing | reminder | resolved | flapping | stale
    value       REAL,
    threshold   REAL,
    at          INTEGER NOT NULL,
    message     TEXT    NOT NULL,
    sync_state  INTEGER NOT NULL DEFAULT 0
);

-- Mail waiting to be sent; written in the same transaction as the alert state that caused it.
-- state: pending | sent | failed (permanent refusal, reason in last_error).
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    message_id      TEXT    NOT NULL UNIQUE,
    recipient       TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    sent_at         INTEGER
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE state = 'pending';

-- Small key/value facts: last sync time and error, operator warnings, counters.
CREATE TABLE kv (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
