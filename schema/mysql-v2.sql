-- edgemon central schema: upgrade of a version 1 database to version 2, in place.
--
-- Run by edgemon under the lock 'edgemon.schema' when it finds version 1 (shipped as
-- /usr/share/edgemon/schema/mysql-v2.sql). Each ALTER rebuilds one table in one statement and is
-- skipped when the table already has its epoch column, so an upgrade cut short resumes where
-- it stopped. Every v1 row is kept and gets the legacy epoch 0 (no buffer draws 0). Then
-- schema/mysql.sql runs (new tables and views), then the statements after the marker below
-- (watermarks of the legacy rows), then version 2 is recorded.
-- Never edit this file once shipped.

ALTER TABLE samples
    ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0 COMMENT 'the buffer file''s epoch; 0 for rows of schema version 1' AFTER appliance_id,
    ADD COLUMN checksum BIGINT UNSIGNED NULL COMMENT 'FNV-1a of the values as sent; NULL for rows of schema version 1',
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (appliance_id, epoch, host_id, seq);

ALTER TABLE sample_cores
    ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0 AFTER appliance_id,
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (appliance_id, epoch, host_id, seq, core);

ALTER TABLE collection_errors
    ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0 AFTER appliance_id,
    ADD COLUMN checksum BIGINT UNSIGNED NULL,
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (appliance_id, epoch, local_id);

ALTER TABLE alert_events
    ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0 AFTER appliance_id,
    ADD COLUMN checksum BIGINT UNSIGNED NULL,
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (appliance_id, epoch, local_id);

ALTER TABLE drops
    ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0 AFTER appliance_id,
    ADD COLUMN checksum BIGINT UNSIGNED NULL,
    DROP PRIMARY KEY,
    ADD PRIMARY KEY (appliance_id, epoch, local_id),
    DROP KEY drops_host_seq,
    ADD KEY drops_host_seq (appliance_id, epoch, host_id, first_seq);

-- after: schema

-- Watermarks of the legacy rows, so the completeness view covers them: sequence numbers start
-- at 1, the newest present is the newest known, and the recorded drops explain what they cover.
INSERT IGNORE INTO watermarks (appliance_id, epoch, host_id, first_seq, last_seq, stored_last_seq, samples_stored)
SELECT appliance_id, 0, host_id, 1, MAX(seq), MAX(seq), COUNT(*)
  FROM samples WHERE epoch = 0 GROUP BY appliance_id, host_id;

UPDATE watermarks w
   SET w.samples_dropped = (SELECT COALESCE(SUM(d.count), 0) FROM drops d
                             WHERE d.appliance_id = w.appliance_id AND d.epoch = 0 AND d.host_id = w.host_id)
 WHERE w.epoch = 0;

INSERT IGNORE INTO buffers (appliance_id, epoch, first_seen_at, last_sync_at)
SELECT id, 0, first_seen_at, last_sync_at FROM appliances;
