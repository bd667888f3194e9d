//! Per-host sample counts kept as bookkeeping rows, so that `edgemon status`, `/api/status`
//! and `/metrics` read O(hosts) rows instead of scanning `samples` (0.6 s per 2M rows warm,
//! far more cold on an SD card: a reader that long used to hold the WAL against the round).
//!
//! `sample_counts` holds, per host, the samples held and how many are unsynced; triggers on
//! `samples` keep it exact inside the very transaction that inserts, marks or deletes a row.
//! The table and triggers are derived state, not a migration: [`ensure`] (run by every
//! writer at open, after the migrations) checks they exist and, when any is missing — a new
//! build, or a future migration that rebuilt `samples` and so dropped its triggers — creates
//! them and recounts from `samples` once. A reader of a buffer no writer of this build has
//! opened yet falls back to the scan ([`read`]).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// The triggers, versioned by name: a changed definition gets a new name, so [`ensure`]
/// replaces the old set.
const TRIGGERS: [&str; 3] = [
    "sample_counts_insert_v1",
    "sample_counts_delete_v1",
    "sample_counts_mark_v1",
];

const DEFINITION: &str = "
CREATE TABLE IF NOT EXISTS sample_counts (
    host_id   INTEGER PRIMARY KEY,
    samples   INTEGER NOT NULL DEFAULT 0,
    unsynced  INTEGER NOT NULL DEFAULT 0
);
DROP TRIGGER IF EXISTS sample_counts_insert_v1;
DROP TRIGGER IF EXISTS sample_counts_delete_v1;
DROP TRIGGER IF EXISTS sample_counts_mark_v1;
CREATE TRIGGER sample_counts_insert_v1 AFTER INSERT ON samples BEGIN
    INSERT OR IGNORE INTO sample_counts (host_id) VALUES (NEW.host_id);
    UPDATE sample_counts SET samples = samples + 1, unsynced = unsynced + (NEW.sync_state = 0)
    WHERE host_id = NEW.host_id;
END;
CREATE TRIGGER sample_counts_delete_v1 AFTER DELETE ON samples BEGIN
    UPDATE sample_counts SET samples = samples - 1, unsynced = unsynced - (OLD.sync_state = 0)
    WHERE host_id = OLD.host_id;
END;
CREATE TRIGGER sample_counts_mark_v1 AFTER UPDATE OF sync_state ON samples
WHEN (OLD.sync_state = 0) <> (NEW.sync_state = 0) BEGIN
    UPDATE sample_counts SET unsynced = unsynced + (NEW.sync_state = 0) - (OLD.sync_state = 0)
    WHERE host_id = NEW.host_id;
END;
DELETE FROM sample_counts;
INSERT INTO sample_counts (host_id, samples, unsynced)
    SELECT host_id, COUNT(*), COALESCE(SUM(sync_state = 0), 0) FROM samples GROUP BY host_id;
";

/// True when the table and every trigger of this build exist.
fn present(conn: &Connection) -> rusqlite::Result<bool> {
    let mut found = 0;
    let mut stmt = conn.prepare_cached(
        "SELECT name FROM sqlite_master WHERE (type = 'trigger' AND tbl_name = 'samples')
                                          OR (type = 'table' AND name = 'sample_counts')",
    )?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    for name in names {
        let name = name?;
        if name == "sample_counts" || TRIGGERS.contains(&name.as_str()) {
            found += 1;
        }
    }
    Ok(found == TRIGGERS.len() + 1)
}

/// Creates the bookkeeping when it is missing and recounts; a no-op (one read of
/// `sqlite_master`) once it is in place. Returns true when it (re)built the counts.
pub(crate) fn ensure(conn: &mut Connection) -> rusqlite::Result<bool> {
    if present(conn)? {
        return Ok(false);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if present(&tx)? {
        return Ok(false);
    }
    tx.execute_batch(DEFINITION)?;
    tx.commit()?;
    Ok(true)
}

/// Samples held and unsynced, all hosts, and the receive time of the oldest unsynced one
/// (the first in queue order, through the `samples_unsynced` index): O(hosts).
pub(crate) fn read(conn: &Connection) -> rusqlite::Result<(i64, i64, Option<i64>)> {
    let kept: bool = conn
        .query_row(
            "SELECT COUNT(*) = 1 FROM sqlite_master WHERE type = 'table' AND name = 'sample_counts'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(false);
    let (samples, unsynced) = if kept {
        conn.query_row(
            "SELECT COALESCE(SUM(samples), 0), COALESCE(SUM(unsynced), 0) FROM sample_counts",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
    } else {
        conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(sync_state = 0), 0) FROM samples",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
    };
    let oldest = conn
        .query_row(
            "SELECT received_at FROM samples WHERE sync_state = 0 ORDER BY id LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok((samples, unsynced, oldest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_inserts_marks_and_deletes_and_are_rebuilt_when_missing() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrations::migrate(&mut conn).unwrap();
        conn.execute_batch(
            "INSERT INTO hosts (id, name, address) VALUES (1, 'a', 'a'), (2, 'b', 'b');
             INSERT INTO samples (host_id, seq, collected_at, received_at, cpu, cores, mem_used,
                                  mem_total, swap_used, swap_total, uptime_s)
             VALUES (1, 1, 0, 10, 1, '', 1, 1, 0, 0, 1);",
        )
        .unwrap();
        assert!(ensure(&mut conn).unwrap(), "first open builds the counts");
        assert!(!ensure(&mut conn).unwrap(), "then it is a no-op");
        assert_eq!(read(&conn).unwrap(), (1, 1, Some(10)));
        conn.execute_batch(
            "INSERT INTO samples (host_id, seq, collected_at, received_at, cpu, cores, mem_used,
                                  mem_total, swap_used, swap_total, uptime_s)
             VALUES (1, 2, 0, 20, 1, '', 1, 1, 0, 0, 1), (2, 1, 0, 30, 1, '', 1, 1, 0, 0, 1);
             UPDATE samples SET sync_state = 1 WHERE seq = 1 AND host_id = 1;
             UPDATE samples SET sync_state = 2 WHERE host_id = 2;",
        )
        .unwrap();
        assert_eq!(read(&conn).unwrap(), (3, 1, Some(20)));
        conn.execute_batch("DELETE FROM samples WHERE host_id = 1 AND seq = 1;")
            .unwrap();
        assert_eq!(read(&conn).unwrap(), (2, 1, Some(20)));
        conn.execute_batch(
            "DROP TRIGGER sample_counts_delete_v1; DELETE FROM samples WHERE host_id = 2;",
        )
        .unwrap();
        assert!(ensure(&mut conn).unwrap(), "a missing trigger rebuilds");
        assert_eq!(read(&conn).unwrap(), (1, 1, Some(20)));
    }
}
