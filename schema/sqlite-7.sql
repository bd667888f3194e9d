-- edgemon local buffer (SQLite), migration 7 (issue 22): per-host bases of the family sections.
-- Applied by edgemon itself after migration 6, in one transaction with the version bump.
-- Never edit this file once shipped: append a migration.

-- Per host, copies of one sample's sections that the following samples are written against
-- (only what differs costs bytes; src/buffer/sections.rs). A base serves the host's samples
-- from first_seq up to the next base; retention deletes the bases no remaining sample needs.
-- Blobs written before this migration stay readable (they carry no base).
CREATE TABLE section_bases (
    host_id    INTEGER NOT NULL REFERENCES hosts(id),
    first_seq  INTEGER NOT NULL,
    sections   BLOB    NOT NULL,
    PRIMARY KEY (host_id, first_seq)
) WITHOUT ROWID;
