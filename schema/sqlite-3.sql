-- edgemon local buffer (SQLite), migration 3 (issue 13): operator silences, acknowledgements,
-- and whether a firing alert's mail was withheld (so its RESOLVED is withheld too, and only then).
-- Applied by edgemon itself after migration 2, in one transaction with the version bump.
-- Never edit this file once shipped: append a migration.

-- Silences added with `edgemon silence add`: matching alerts are recorded, not mailed.
CREATE TABLE silences (
    id          INTEGER PRIMARY KEY,
    host        TEXT,                                    -- NULL = every host
    rules       TEXT    NOT NULL DEFAULT '',             -- comma separated; '' = every rule
    starts_at   INTEGER NOT NULL,
    ends_at     INTEGER NOT NULL,
    comment     TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX silences_ends ON silences (ends_at);

-- Acknowledged alerts (`edgemon ack`): no reminders until the alert resolves (row deleted then).
CREATE TABLE acks (
    host_id     INTEGER NOT NULL REFERENCES hosts(id),
    rule        TEXT    NOT NULL,
    acked_by    TEXT    NOT NULL,
    acked_at    INTEGER NOT NULL,
    comment     TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (host_id, rule)
);

-- 1 while the current episode's FIRING was not mailed (silenced, or held for a site alert).
ALTER TABLE alert_state ADD COLUMN unmailed INTEGER NOT NULL DEFAULT 0;
