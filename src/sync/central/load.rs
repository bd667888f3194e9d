//! The bulk path's transport: whether a connection may use `LOAD DATA LOCAL INFILE`, and a
//! batch's absent rows loaded from memory (the files `bulk.rs` writes) behind a savepoint,
//! falling back to INSERT on any warning.

use std::io::Write;

use mysql::LocalInfileHandler;
use mysql::prelude::Queryable;

use super::super::{bulk, sql};
use super::Central;
use super::batch::TxError;

impl Central {
    /// Whether this connection sends batches as `LOAD DATA LOCAL INFILE` (asked once per
    /// connection): the server allows `local_infile`, and is not a Galera node that splits
    /// `LOAD DATA` into several commits (`wsrep_load_data_splitting`), which would break "one
    /// batch, one transaction". The driver always offers the client capability
    /// (`CLIENT_LOCAL_FILES`) and answers only with the batch in memory, never with a file.
    /// A failed question means no (the INSERT path), asked again with the next batch.
    pub(super) fn bulk_allowed(&mut self) -> bool {
        if let Some(bulk) = self.bulk.allowed {
            return bulk;
        }
        let found: Result<Vec<(String, String)>, _> = self.conn.query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('local_infile', 'wsrep_load_data_splitting')",
        );
        let Ok(found) = found else {
            return false;
        };
        let on = |name: &str| {
            found
                .iter()
                .any(|(n, v)| n == name && (v == "ON" || v == "1"))
        };
        let bulk = on("local_infile") && !on("wsrep_load_data_splitting");
        tracing::debug!(server = %self.server, bulk, "sync sends batches as LOAD DATA LOCAL INFILE when bulk is true, INSERT statements otherwise");
        self.bulk.allowed = Some(bulk);
        bulk
    }
}

/// MySQL refused `LOAD DATA LOCAL INFILE` itself: 1148 (command not allowed), 4166
/// (MariaDB: local infile capability disabled), 3948 (MySQL: loading local data disabled).
const LOCAL_INFILE_REFUSED: &[u16] = &[1148, 3948, 4166];

/// `LOAD DATA LOCAL INFILE` of the absent samples, their cores and their family child rows,
/// streamed from memory,
/// behind a savepoint; the samples inserted. With `LOCAL` the server cannot stop the
/// transfer, so it treats every row error as `IGNORE` would: a duplicate key or a value it
/// refuses (too long, out of range, NULL in a NOT NULL column, invalid JSON) becomes a
/// warning and the row is skipped or adjusted. So any warning, or a per-core count short of
/// what was sent, rolls back to the savepoint and returns `None`: the caller sends the batch
/// as INSERT, which reports the refusal as the error it is (split, quarantined) or the race
/// as a short count. A server that refuses the command clears `bulk` and returns `None`.
pub(super) fn load_samples(
    tx: &mut mysql::Transaction<'_>,
    appliance: u32,
    epoch: i64,
    new: &[&sql::PreparedSample<'_>],
    bulk: &mut bool,
) -> Result<Option<u64>, TxError> {
    let files = bulk::samples(appliance, epoch, new);
    tx.query_drop("SAVEPOINT edgemon_bulk")?;
    let samples = match load(tx, "samples", bulk::SAMPLE_COLUMNS, files.samples) {
        Err(mysql::Error::MySqlError(m)) if LOCAL_INFILE_REFUSED.contains(&m.code) => {
            *bulk = false;
            tx.query_drop("ROLLBACK TO SAVEPOINT edgemon_bulk")?;
            return Ok(None);
        }
        other => other?,
    };
    let cores = match (samples.warnings, files.core_rows) {
        (0, 0) => Loaded::default(),
        (0, _) => load(tx, "sample_cores", bulk::CORE_COLUMNS, files.cores)?,
        _ => Loaded::default(),
    };
    // The family child tables (sample_sections, sample_<family>): each must load every line
    // it was sent without a warning, like the cores.
    let mut children_clean = true;
    if samples.warnings == 0 && cores.warnings == 0 && cores.affected == files.core_rows {
        for child in files.children {
            let loaded = load(tx, &child.table, &child.columns, child.data)?;
            if loaded.warnings > 0 || loaded.affected != child.rows {
                tracing::debug!(table = %child.table, warnings = loaded.warnings,
                    affected = loaded.affected, sent = child.rows, "LOAD DATA of a child table fell short");
                children_clean = false;
                break;
            }
        }
    }
    if samples.warnings == 0
        && cores.warnings == 0
        && cores.affected == files.core_rows
        && children_clean
    {
        return Ok(Some(samples.affected));
    }
    let warning: Option<(String, u32, String)> = tx.query_first("SHOW WARNINGS LIMIT 1")?;
    tracing::debug!(
        warning = ?warning,
        samples_warnings = samples.warnings,
        cores_warnings = cores.warnings,
        "LOAD DATA of a batch raised warnings; sending it as INSERT statements instead"
    );
    tx.query_drop("ROLLBACK TO SAVEPOINT edgemon_bulk")?;
    Ok(None)
}

/// What one `LOAD DATA` reported.
#[derive(Debug, Default, Clone, Copy)]
struct Loaded {
    affected: u64,
    warnings: u16,
}

/// Streams `data` as `LOAD DATA LOCAL INFILE` into `table`'s `columns`. The handler answers
/// the server's request with `data`, whatever file name it asks for, and is removed after.
fn load(
    tx: &mut mysql::Transaction<'_>,
    table: &str,
    columns: &str,
    data: Vec<u8>,
) -> Result<Loaded, mysql::Error> {
    let mut data = Some(data);
    tx.set_local_infile_handler(Some(LocalInfileHandler::new(move |_, out| {
        match data.take() {
            Some(data) => out.write_all(&data),
            None => Ok(()),
        }
    })));
    let result = tx.query_drop(bulk::load_statement(table, columns));
    tx.set_local_infile_handler(None);
    result?;
    Ok(Loaded {
        affected: tx.affected_rows(),
        warnings: tx.warnings(),
    })
}
