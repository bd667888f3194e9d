//! The batch transaction every write runs in: hosts looked up and re-registered inside it,
//! conflicts (1213, 1205) retried whole with jitter, a vanished host (1452) retried once; and
//! the helpers the sample and journal writers share (host ids, watermark deltas, the
//! affected-row check).

use std::collections::HashMap;

use mysql::TxOpts;
use mysql::prelude::Queryable;

use super::super::sql;
use super::errors::{CONFLICT_ATTEMPTS, CONFLICT_CODES, FOREIGN_KEY_CODE};
use super::{Central, Error, HostMark, classify, conflict_pause};

impl Central {
    /// Records the end of a successful pass: the appliance's and the buffer's last sync, and
    /// the watermark of every host of the buffer (so a host whose samples never arrive shows
    /// in the completeness view).
    pub fn touch(
        &mut self,
        hosts: &[(String, String)],
        marks: &HashMap<String, HostMark>,
    ) -> Result<(), Error> {
        let refs: Vec<(&str, &str)> = hosts
            .iter()
            .map(|(h, a)| (h.as_str(), a.as_str()))
            .collect();
        let (appliance, epoch) = (self.appliance, self.epoch);
        self.transaction(&refs, |tx, ids| {
            let mut deltas = HashMap::new();
            for (name, _) in hosts {
                deltas.insert(host_id(ids, name)?, watermark_seed(marks, name));
            }
            for statement in sql::watermark_upserts(appliance, epoch, &deltas) {
                tx.query_drop(statement)?;
            }
            tx.query_drop(format!(
                "UPDATE appliances SET last_sync_at = CURRENT_TIMESTAMP(3) WHERE id = {appliance}"
            ))?;
            tx.query_drop(format!(
                "UPDATE buffers SET last_sync_at = CURRENT_TIMESTAMP(3) WHERE appliance_id = {appliance} AND epoch = {epoch}"
            ))?;
            Ok(())
        })
    }

    /// Runs `body` in one transaction after making sure every host of `hosts` has a central
    /// row (looked up in the same transaction, registered when missing: a central host row
    /// deleted by hand or lost in a restore is registered again, never an id 0). A foreign-key
    /// failure (error 1452: a host row vanished during the batch) retries the whole
    /// transaction once; if it fails again it is a server error, retried after backoff, never
    /// a content error that would quarantine the rows. A conflict (1213: a Galera certification
    /// conflict or brute-force abort, at COMMIT or at any statement; 1205: lock wait timeout)
    /// rolls back and retries the whole transaction after a short pause with jitter, up to
    /// [`CONFLICT_ATTEMPTS`] times; then it is a server error. Nothing of a rolled-back attempt
    /// is returned, so nothing of it is marked synced.
    pub(super) fn transaction<T>(
        &mut self,
        hosts: &[(&str, &str)],
        mut body: impl FnMut(&mut mysql::Transaction<'_>, &HashMap<String, u32>) -> Result<T, TxError>,
    ) -> Result<T, Error> {
        let server = self.server.clone();
        let mut wanted: Vec<(&str, &str)> = hosts.to_vec();
        wanted.sort_unstable();
        wanted.dedup_by_key(|(h, _)| *h);
        let mut host_retried = false;
        let mut conflicts = 0u32;
        loop {
            let result = (|| -> Result<T, TxError> {
                let mut tx = self.conn.start_transaction(TxOpts::default())?;
                let ids = ensure_hosts(&mut tx, self.appliance, &wanted)?;
                let out = body(&mut tx, &ids)?;
                tx.commit()?;
                Ok(out)
            })();
            match result {
                Ok(out) => return Ok(out),
                Err(TxError::Mysql(mysql::Error::MySqlError(m)))
                    if CONFLICT_CODES.contains(&m.code) && conflicts + 1 < CONFLICT_ATTEMPTS =>
                {
                    conflicts += 1;
                    self.conflict_retries += 1;
                    let pause = conflict_pause(conflicts);
                    tracing::info!(server = %server, code = m.code, attempt = conflicts, retry_in = ?pause,
                        "a conflicting write elsewhere in the cluster rolled back the batch; retrying it whole");
                    std::thread::sleep(pause);
                }
                Err(TxError::Mysql(mysql::Error::MySqlError(m)))
                    if CONFLICT_CODES.contains(&m.code) =>
                {
                    return Err(Error::Server {
                        server,
                        message: format!(
                            "ERROR {} ({}): {}; the batch lost {CONFLICT_ATTEMPTS} conflicts in a row and was rolled back",
                            m.code, m.state, m.message
                        ),
                    });
                }
                Err(TxError::Mysql(mysql::Error::MySqlError(m)))
                    if m.code == FOREIGN_KEY_CODE && !host_retried =>
                {
                    host_retried = true;
                    tracing::warn!(server = %server, error = %m.message,
                        "a central host row vanished during a batch; registering the hosts again and retrying");
                }
                Err(TxError::Mysql(mysql::Error::MySqlError(m))) if m.code == FOREIGN_KEY_CODE => {
                    return Err(Error::Server {
                        server,
                        message: format!(
                            "ERROR {} ({}): {}; a central host row keeps vanishing under the batch",
                            m.code, m.state, m.message
                        ),
                    });
                }
                Err(TxError::Mysql(err)) => return Err(classify(&server, err)),
                Err(TxError::Raced(message)) => return Err(Error::Server { server, message }),
                Err(TxError::MissingHost(host)) => {
                    return Err(Error::Schema {
                        server,
                        message: format!(
                            "host '{host}' has no row in table hosts right after registering it"
                        ),
                    });
                }
            }
        }
    }
}

/// Failures inside one write transaction.
pub(super) enum TxError {
    Mysql(mysql::Error),
    /// Fewer rows inserted than were absent: someone else wrote under this epoch meanwhile.
    Raced(String),
    /// A host had no id after registration (never expected).
    MissingHost(String),
}

impl From<mysql::Error> for TxError {
    fn from(err: mysql::Error) -> TxError {
        TxError::Mysql(err)
    }
}

pub(super) fn host_id(ids: &HashMap<String, u32>, host: &str) -> Result<u32, TxError> {
    ids.get(pad_key(host))
        .copied()
        .ok_or_else(|| TxError::MissingHost(host.to_string()))
}

/// A host name as the central `utf8mb4_bin` (PAD SPACE) compares it: trailing spaces do not
/// count, so `'box '` (a name version 1 stored untrimmed) is the row of `'box'`.
pub(super) fn pad_key(name: &str) -> &str {
    name.trim_end_matches(' ')
}

/// The central ids of `hosts` (sorted, unique), registering the ones that have no row; keyed
/// by [`pad_key`].
fn ensure_hosts(
    tx: &mut mysql::Transaction<'_>,
    appliance: u32,
    hosts: &[(&str, &str)],
) -> Result<HashMap<String, u32>, TxError> {
    let select = |names: &[(&str, &str)]| {
        let mut select = format!(
            "SELECT id, CAST(name AS CHAR) FROM hosts WHERE appliance_id = {appliance} AND name IN ("
        );
        for (i, (name, _)) in names.iter().enumerate() {
            if i > 0 {
                select.push(',');
            }
            sql::push_str(&mut select, name);
        }
        select.push(')');
        select
    };
    let mut ids: HashMap<String, u32> = HashMap::new();
    if hosts.is_empty() {
        return Ok(ids);
    }
    let found: Vec<(u32, String)> = tx.query(select(hosts))?;
    ids.extend(
        found
            .into_iter()
            .map(|(id, name)| (pad_key(&name).to_string(), id)),
    );
    let missing: Vec<(&str, &str)> = hosts
        .iter()
        .copied()
        .filter(|(h, _)| !ids.contains_key(pad_key(h)))
        .collect();
    if !missing.is_empty() {
        for statement in sql::hosts_upsert(appliance, &missing) {
            tx.query_drop(statement)?;
        }
        let found: Vec<(u32, String)> = tx.query(select(&missing))?;
        ids.extend(
            found
                .into_iter()
                .map(|(id, name)| (pad_key(&name).to_string(), id)),
        );
    }
    Ok(ids)
}

/// A host's watermark change for one transaction, starting from what the buffer holds for it.
pub(super) fn watermark_seed(marks: &HashMap<String, HostMark>, host: &str) -> sql::WatermarkDelta {
    let mark = marks.get(host).copied().unwrap_or_default();
    sql::WatermarkDelta {
        first_seq: mark.first_seq.max(1),
        last_seq: mark.last_seq,
        ..Default::default()
    }
}

/// The batch inserted every row it found absent, or another writer raced it under this epoch.
pub(super) fn check_inserted(
    inserted: u64,
    new: usize,
    what: &str,
    epoch: i64,
) -> Result<(), TxError> {
    if inserted == new as u64 {
        return Ok(());
    }
    Err(TxError::Raced(format!(
        "inserted {inserted} of {new} new {what}: another writer holds this appliance's epoch {epoch}; \
         the batch was rolled back"
    )))
}
