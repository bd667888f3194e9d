-- edgemon local buffer (SQLite), migration 5 (issue 22): each sample's metric family
-- sections (filesystems, interfaces, devices, system, units, processes), stored compactly.
-- Applied by edgemon itself after the previous migration, in one transaction with the version
-- bump. Never edit this file once shipped: append a migration.

-- The sample's sections in the varint form of src/buffer/sections.rs; NULL when the report
-- carried none (an agent of report format 1.0). Member keys and text values are ids into
-- `dictionary`.
ALTER TABLE samples ADD COLUMN sections BLOB;

-- Member keys and text values (mount points, interface names, fs types, unit names), each
-- once: a name repeated in every sample costs the sample one or two bytes. Never deleted, ids
-- never reused (the blobs refer to them).
CREATE TABLE dictionary (
    id    INTEGER PRIMARY KEY,
    text  TEXT NOT NULL UNIQUE
);
