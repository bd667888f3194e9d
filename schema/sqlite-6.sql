-- edgemon local buffer (SQLite), migration 6 (issue 22): what the alert rules of the metric
-- families keep between rounds, and the level of the alerts with two.
-- Applied by edgemon itself after migration 5, in one transaction with the version bump.
-- Never edit this file once shipped: append a migration.

-- The level of a firing alert with a warning and a critical level: 0 none, 1 warning, 2 critical.
ALTER TABLE alert_state ADD COLUMN level INTEGER NOT NULL DEFAULT 0;

-- The filling-up prediction's least-squares sums per host, mount and time bucket (the window
-- cut in 12): n, Σu, Σy, Σu², Σuy with u the seconds after `start` and y the available bytes.
-- Written in the round's transaction; buckets out of the window are deleted by the round.
CREATE TABLE fill_buckets (
    host_id  INTEGER NOT NULL REFERENCES hosts(id),
    mount    TEXT    NOT NULL,
    start    INTEGER NOT NULL,                           -- Unix ms
    n        REAL    NOT NULL,
    su       REAL    NOT NULL,
    sy       REAL    NOT NULL,
    suu      REAL    NOT NULL,
    suy      REAL    NOT NULL,
    PRIMARY KEY (host_id, mount, start)
) WITHOUT ROWID;

-- The previous value of the counters the rules take differences of, per host and series
-- (`oom_kills`, `if:eth0:errors`, `if:eth0:packets`), written in the round's transaction.
CREATE TABLE alert_counters (
    host_id  INTEGER NOT NULL REFERENCES hosts(id),
    series   TEXT    NOT NULL,
    value    REAL    NOT NULL,
    PRIMARY KEY (host_id, series)
) WITHOUT ROWID;
