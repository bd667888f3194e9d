//! Versioned migrations of the buffer schema. `PRAGMA user_version` holds the
//! version applied; each migration runs in its own transaction together with
//! the version bump, so a crash leaves the schema at a whole version.

use rusqlite::Connection;

/// Migrations in order; index + 1 is the version each one produces.
/// Never edit a shipped migration: append a new one.
const MIGRATIONS: &[&str] = &[
    include_str!("../../schema/sqlite.sql"),
    include_str!("../../schema/sqlite-2.sql"),
    include_str!("../../schema/sqlite-3.sql"),
    include_str!("../../schema/sqlite-4.sql"),
    include_str!("../../schema/sqlite-5.sql"),
];

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
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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

impl MigrateError {
    /// True when the migration failed for lack of space (SQLITE_FULL).
    pub fn is_disk_full(&self) -> bool {
        let source = match self {
            MigrateError::TooNew { .. } => return false,
            MigrateError::Step { source, .. } | MigrateError::Sqlite(source) => source,
        };
        source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
    }
}

/// True when a migration is still to be applied to `conn`.
pub fn pending(conn: &Connection) -> Result<bool, MigrateError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    Ok(current < LATEST)
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
    fn migration_2_keeps_rows_and_journal_ids_and_never_reuses_an_id() {
        let mut conn = Connection::open_in_memory().unwrap();
        let tx = conn.transaction().unwrap();
        tx.execute_batch(MIGRATIONS[0]).unwrap();
        tx.pragma_update(None, "user_version", 1).unwrap();
        tx.commit().unwrap();
        conn.execute_batch(
            "INSERT INTO hosts (id, name, address, next_seq) VALUES (1, 'a', 'a', 6);
             INSERT INTO samples (host_id, seq, collected_at, received_at, cpu, cores, mem_used, mem_total,
                                  swap_used, swap_total, uptime_s, sync_state)
             VALUES (1, 4, 0, 0, 1, '', 1, 1, 0, 0, 1, 1), (1, 5, 0, 0, 1, '', 1, 1, 0, 0, 1, 0);
             INSERT INTO collection_errors (id, host_id, at, class, message) VALUES (7, 1, 0, 'timeout', 'x');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let epoch: i64 = conn
            .query_row("SELECT epoch FROM buffer_identity", [], |r| r.get(0))
            .unwrap();
        assert_ne!(epoch, 0);
        let first: i64 = conn
            .query_row("SELECT epoch_first_seq FROM hosts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(first, 5, "the unsynced sample 5 starts the epoch");
        let kept: i64 = conn
            .query_row("SELECT id FROM collection_errors", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 7);
        conn.execute("DELETE FROM collection_errors", []).unwrap();
        conn.execute(
            "INSERT INTO collection_errors (host_id, at, class, message) VALUES (1, 0, 'timeout', 'y')",
            [],
        )
        .unwrap();
        assert_eq!(
            conn.last_insert_rowid(),
            8,
            "an emptied table does not reuse ids"
        );
    }

    #[test]
    fn a_migrated_buffer_never_resends_what_it_synced_under_the_legacy_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("buffer.sqlite");
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(MIGRATIONS[0]).unwrap();
            tx.pragma_update(None, "user_version", 1).unwrap();
            tx.commit().unwrap();
            conn.execute_batch(
                "INSERT INTO hosts (id, name, address, next_seq) VALUES (1, 'a', 'a', 6);
                 INSERT INTO samples (host_id, seq, collected_at, received_at, cpu, cores, mem_used, mem_total,
                                      swap_used, swap_total, uptime_s, sync_state)
                 SELECT 1, value, 0, 0, 1, '', 1, 1, 0, 0, 1, value < 5
                 FROM (SELECT 1 AS value UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5);
                 INSERT INTO collection_errors (host_id, at, class, message, sync_state)
                 VALUES (1, 0, 'timeout', 'x', 1), (1, 0, 'timeout', 'y', 0);",
            )
            .unwrap();
        }
        let mut buffer = crate::buffer::SyncQueue::open(&path).unwrap();
        // Nothing of this epoch is central yet: only rows of this epoch may go back to the queue.
        let requeued = buffer
            .requeue_missing_samples(&std::collections::HashMap::new())
            .unwrap();
        assert!(requeued.is_empty(), "{requeued:?}");
        let journal = buffer
            .requeue_missing_journal(crate::buffer::Journal::CollectionErrors, 0)
            .unwrap();
        assert_eq!(journal, 0);
        assert_eq!(buffer.unsynced_depth().unwrap().0, 1);
        // Seq 5 synced under the new epoch, then lost centrally: it goes back.
        buffer.mark_samples_synced(&[("a", 5)], 0).unwrap();
        let requeued = buffer
            .requeue_missing_samples(&std::collections::HashMap::new())
            .unwrap();
        assert_eq!(requeued, vec![("a".to_string(), 1)]);
    }

    #[test]
    fn every_new_buffer_gets_its_own_epoch() {
        let epoch = || {
            let mut conn = Connection::open_in_memory().unwrap();
            migrate(&mut conn).unwrap();
            conn.query_row("SELECT epoch FROM buffer_identity", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
        };
        assert_ne!(epoch(), epoch());
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
