-- edgemon central schema: upgrade of a version 2 database to version 3, in place.
--
-- Run by edgemon under the lock 'edgemon.schema' when it finds version 2 (shipped as
-- /usr/share/edgemon/schema/mysql-v3.sql). Version 3 adds retention (`edgemon central prune`):
-- the per-host prune horizon in watermarks, and table prune_horizons (created by
-- schema/mysql.sql). The ALTER touches only watermarks (one row per host and buffer, never the
-- samples), and is skipped when the column is already there, so an upgrade cut short resumes.
-- Then schema/mysql.sql runs (the new table, the views that read the horizons), then version 3
-- is recorded. Never edit this file once shipped.

ALTER TABLE watermarks
    ADD COLUMN pruned_through_seq BIGINT NOT NULL DEFAULT 0 COMMENT 'newest seq `edgemon central prune` deleted: everything up to it is explained',
    ADD COLUMN samples_pruned BIGINT NOT NULL DEFAULT 0 COMMENT 'samples `edgemon central prune` deleted';
