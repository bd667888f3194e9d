-- edgemon local buffer (SQLite), migration 2: buffer identity, journal ids never reused, collisions.
-- Applied by edgemon itself after migration 1 (schema/sqlite.sql), in one transaction with the
-- version bump. Never edit this file once shipped: append a migration.

-- The identity of this buffer file: a random 64-bit epoch (never 0, which the central database
-- gives rows of schema version 1), made when the file is created or migrated. A sample's central
-- identity is (appliance, epoch, host, seq): a buffer deleted and recreated under the same
-- appliance id restarts its sequences under a new epoch, so its rows never equal the old ones.
-- The *_floor columns: in a migrated file, the newest journal row already synced under the legacy
-- epoch (0 in a new file); rows at or below it are never sent again under this epoch.
CREATE TABLE buffer_identity (
    id                       INTEGER PRIMARY KEY CHECK (id = 1),
    epoch                    INTEGER NOT NULL CHECK (epoch <> 0),
    created_at               INTEGER NOT NULL,
    collection_errors_floor  INTEGER NOT NULL DEFAULT 0,
    drops_floor              INTEGER NOT NULL DEFAULT 0,
    alert_events_floor       INTEGER NOT NULL DEFAULT 0
);
INSERT INTO buffer_identity (id, epoch, created_at, collection_errors_floor, drops_floor, alert_events_floor)
SELECT 1, CASE WHEN r = 0 THEN 1 ELSE r END,
       CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
       (SELECT COALESCE(MAX(id), 0) FROM collection_errors WHERE sync_state <> 0),
       (SELECT COALESCE(MAX(id), 0) FROM drops WHERE sync_state <> 0),
       (SELECT COALESCE(MAX(id), 0) FROM alert_events WHERE sync_state <> 0)
FROM (SELECT random() AS r);

-- The first sequence number of each host under this epoch: 1 in a new file; in a migrated file,
-- the oldest sample (or drop) not yet synced, since everything before it reached the central
-- database under the legacy epoch 0.
ALTER TABLE hosts ADD COLUMN epoch_first_seq INTEGER NOT NULL DEFAULT 1;
UPDATE hosts SET epoch_first_seq = MIN(
    next_seq,
    COALESCE((SELECT MIN(seq) FROM samples WHERE host_id = hosts.id AND sync_state = 0), next_seq),
    COALESCE((SELECT MIN(first_seq) FROM drops WHERE host_id = hosts.id AND sync_state = 0), next_seq));

-- Journal tables rebuilt with AUTOINCREMENT: retention deletes synced rows, and a plain rowid
-- table reuses ids once it empties, which the central key (appliance, epoch, local_id) would
-- swallow as re-sends. Rows and ids are kept.
CREATE TABLE collection_errors_2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id     INTEGER NOT NULL REFERENCES hosts(id),
    at          INTEGER NOT NULL,
    class       TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    sync_state  INTEGER NOT NULL DEFAULT 0               -- 0 unsynced, 1 synced, 2 rejected, 3 collided
);
INSERT INTO collection_errors_2 (id, host_id, at, class, message, sync_state)
    SELECT id, host_id, at, class, message, sync_state FROM collection_errors;
DROP TABLE collection_errors;
ALTER TABLE collection_errors_2 RENAME TO collection_errors;
CREATE INDEX collection_errors_unsynced ON collection_errors (id) WHERE sync_state = 0;

CREATE TABLE drops_2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id     INTEGER NOT NULL REFERENCES hosts(id),
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    count       INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    sync_state  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO drops_2 (id, host_id, first_seq, last_seq, count, reason, at, sync_state)
    SELECT id, host_id, first_seq, last_seq, count, reason, at, sync_state FROM drops;
DROP TABLE drops;
ALTER TABLE drops_2 RENAME TO drops;
CREATE INDEX drops_unsynced ON drops (id) WHERE sync_state = 0;

CREATE TABLE alert_events_2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id     INTEGER NOT NULL REFERENCES hosts(id),
    rule        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    value       REAL,
    threshold   REAL,
    at          INTEGER NOT NULL,
    message     TEXT    NOT NULL,
    sync_state  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO alert_events_2 (id, host_id, rule, kind, value, threshold, at, message, sync_state)
    SELECT id, host_id, rule, kind, value, threshold, at, message, sync_state FROM alert_events;
DROP TABLE alert_events;
ALTER TABLE alert_events_2 RENAME TO alert_events;
CREATE INDEX alert_events_unsynced ON alert_events (id) WHERE sync_state = 0;

-- Rows whose central identity already held different values (sync_state 3 on the row itself):
-- kept here for inspection, counted by `edgemon status` and /metrics, never overwritten centrally.
-- kind is the table (samples, collection_errors, drops, alert_events); local_id its row id.
CREATE TABLE collisions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    kind              TEXT    NOT NULL,
    local_id          INTEGER NOT NULL,
    host              TEXT    NOT NULL,
    seq               INTEGER,                           -- samples only
    at                INTEGER NOT NULL,
    local_checksum    TEXT    NOT NULL,
    central_checksum  TEXT,
    UNIQUE (kind, local_id)
);
