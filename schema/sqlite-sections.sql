-- edgemon local buffer (SQLite), migration "sections" (issue 22): each sample's metric family
-- sections (filesystems, interfaces, devices, system, units, processes), stored compactly.
-- Applied by edgemon itself after the previous migration, in one transaction with the version
-- bump. Never edit this file once shipped: append a migration.

-- The sample's sections in the varint form of src/buffer/sections.rs, written against its host's
-- base (section_bases); NULL when the report carried none (an agent of report format 1.0).
-- Member keys and text values are ids into `dictionary`.
ALTER TABLE samples ADD COLUMN sections BLOB;

-- Member keys and text values (mount points, interface names, fs types, unit names), each
-- once: a name repeated in every sample costs the sample one or two bytes. Never deleted, ids
-- never reused (the blobs refer to them).
CREATE TABLE dictionary (
    id    INTEGER PRIMARY KEY,
    text  TEXT NOT NULL UNIQUE
);

-- Per host, copies of one sample's sections that the following samples are written against
-- (only what differs costs bytes). A base serves the host's samples from first_seq up to the
-- next base; retention deletes the bases no remaining sample needs.
CREATE TABLE section_bases (
    host_id    INTEGER NOT NULL REFERENCES hosts(id),
    first_seq  INTEGER NOT NULL,
    sections   BLOB    NOT NULL,
    PRIMARY KEY (host_id, first_seq)
) WITHOUT ROWID;
