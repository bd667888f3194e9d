//! Versioned migrations of the buffer schema. `PRAGMA user_version` holds the
//! version applied; each migration runs in its own transaction together with
//! the version bump, so a crash leaves the schema at a whole version.

use rusqlite::Connection;

/// Migrations in order; index + 1 is the version each one produces.
/// Never edit a shipped migration: append a new one.
const MIGRATIONS: &[&str] = &[include_str!("../../schema/sqlite.sql"), SILENCES_AND_ACKS];

/// Migration 2 (issue 13): operator silences, acknowledgements, and whether a firing
/// alert's mail was withheld (so its RESOLVED is withheld too, and only then).
/// Self-contained, so it can be renumbered when migrations of other branches land.
const SILENCES_AND_ACKS: &str = "
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
";

/// Every migration in order, as `edgemon schema sqlite` prints it.
pub fn full_schema() -> String {
    let mut out = String::new();
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        if index > 0 {
            out.push_str(&format!("\n-- Migration {}.\n", index + 1));
        }
        out.push_str(sql.trim_start_matches('\n'));
    }
    out
}

/// The schema version this build writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// Brings the schema of `conn` to [`LATEST`]. Refuses a database written by a newer edgemon.
pub fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > LATEST {
        return Err(MigrateError::TooNew {
            found: current,
            supported: LATEST,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|source| MigrateError::Step { version, source })?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The file was written by a newer edgemon.
    #[error(
        "buffer schema version {found} is newer than this edgemon supports ({supported}); upgrade edgemon"
    )]
    TooNew {
        /// Version found in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// One migration failed.
    #[error("migration to buffer schema version {version} failed: {source}")]
    Step {
        /// The version being applied.
        version: i64,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Reading or writing the version failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, LATEST);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(err.to_string().contains("newer than this edgemon"), "{err}");
    }
}
