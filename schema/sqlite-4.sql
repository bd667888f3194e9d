-- edgemon local buffer (SQLite), migration 4 (issue 19): sample ids never reused, and the
-- appliance's monotonic receive time beside the wall-clock one.
-- Applied by edgemon itself after migration 3, in one transaction with the version bump.
-- Never edit this file once shipped: append a migration.

-- samples rebuilt with AUTOINCREMENT: retention can shed the newest unsynced rows, and a plain
-- rowid table then hands their ids out again, so a mark meant for a shed row could land on a
-- new sample. Rows and ids are kept. received_mono is the buffer's monotonic clock at receipt
-- (ms, `buffer/mono.rs`: CLOCK_BOOTTIME plus an offset carried across reboots), which a step
-- of the wall clock does not move; NULL for rows received before this migration.
-- The quarantine rows reference samples(id): kept aside while the table is replaced.
CREATE TEMP TABLE quarantine_kept AS SELECT sample_id, at, reason FROM quarantine;
DELETE FROM quarantine;

CREATE TABLE samples_4 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id       INTEGER NOT NULL REFERENCES hosts(id),
    seq           INTEGER NOT NULL,
    collected_at  INTEGER NOT NULL,                      -- the agent's clock
    received_at   INTEGER NOT NULL,                      -- the appliance's wall clock
    clock_skewed  INTEGER NOT NULL DEFAULT 0,            -- 1: agent clock off by > max_clock_skew, or
                                                         --    received before a step of the appliance's clock
    cpu           REAL    NOT NULL,
    cores         TEXT    NOT NULL,
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
    extras        TEXT,
    sync_state    INTEGER NOT NULL DEFAULT 0,            -- 0 unsynced, 1 synced, 2 quarantined, 3 collided
    synced_at     INTEGER,
    received_mono INTEGER,                               -- the buffer's monotonic clock at receipt, ms
    UNIQUE (host_id, seq)
);
INSERT INTO samples_4 (id, host_id, seq, collected_at, received_at, clock_skewed, cpu, cores,
                       mem_used, mem_total, swap_used, swap_total, uptime_s, boot_time_s,
                       load1, load5, load15, hostname, os, kernel, extras, sync_state, synced_at)
    SELECT id, host_id, seq, collected_at, received_at, clock_skewed, cpu, cores,
           mem_used, mem_total, swap_used, swap_total, uptime_s, boot_time_s,
           load1, load5, load15, hostname, os, kernel, extras, sync_state, synced_at
    FROM samples;
DROP TABLE samples;
ALTER TABLE samples_4 RENAME TO samples;
CREATE INDEX samples_unsynced ON samples (id) WHERE sync_state = 0;
CREATE INDEX samples_host_time ON samples (host_id, received_at);

INSERT INTO quarantine (sample_id, at, reason) SELECT sample_id, at, reason FROM temp.quarantine_kept;
DROP TABLE temp.quarantine_kept;
