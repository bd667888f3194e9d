//! Sample batches: what the central database holds of a host's samples, and writing a batch
//! of samples with their cores and watermarks, over one connection or, for a large batch on
//! the bulk path, split by host over [`BULK_CONNECTIONS`] connections at once.

use std::collections::HashMap;

use mysql::Conn;
use mysql::prelude::Queryable;

use super::super::sql;
use super::batch::{TxError, check_inserted, host_id, pad_key, watermark_seed};
use super::load::load_samples;
use super::{
    BULK_CONNECTIONS, BULK_SPLIT_MIN_ROWS, Bulk, Central, Collision, Error, HostMark, Written,
    classify,
};
use crate::buffer::SyncSample;

impl Central {
    /// The newest sequence number present per host name (trailing spaces removed, as the
    /// central collation compares), for this appliance and epoch (hosts without rows are
    /// absent). One index dive per host.
    pub fn present_samples(&mut self) -> Result<HashMap<String, i64>, Error> {
        let server = self.server.clone();
        let rows: Vec<(String, Option<i64>)> = self
            .conn
            .query(format!(
                "SELECT CAST(h.name AS CHAR),
                        (SELECT s.seq FROM samples s
                          WHERE s.appliance_id = {a} AND s.epoch = {e} AND s.host_id = h.id
                          ORDER BY s.seq DESC LIMIT 1)
                 FROM hosts h WHERE h.appliance_id = {a}",
                a = self.appliance,
                e = self.epoch
            ))
            .map_err(|e| classify(&server, e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, seq)| seq.map(|s| (pad_key(&name).to_string(), s)))
            .collect())
    }

    /// The newest sequence number of `host` in `from..below` (this appliance and epoch), if
    /// any: one index dive on the primary key. The re-queue reads it per stream of a host's
    /// samples (see `SyncQueue::stream_splits`).
    pub fn present_between(
        &mut self,
        host: &str,
        from: i64,
        below: i64,
    ) -> Result<Option<i64>, Error> {
        let server = self.server.clone();
        let max: Option<Option<i64>> = self
            .conn
            .exec_first(
                "SELECT MAX(s.seq) FROM samples s JOIN hosts h ON h.id = s.host_id
                 WHERE h.appliance_id = ? AND h.name = ? AND s.appliance_id = ? AND s.epoch = ?
                   AND s.seq >= ? AND s.seq < ?",
                (
                    self.appliance,
                    host,
                    self.appliance,
                    self.epoch,
                    from,
                    below,
                ),
            )
            .map_err(|e| classify(&server, e))?;
        Ok(max.flatten())
    }

    /// Writes samples (with per-core values and the hosts' watermarks) and commits. Rows
    /// already there with the same values are skipped (a re-send); rows whose identity holds
    /// different values are returned as collisions, not written.
    ///
    /// On the bulk path a large batch is split by host into up to [`BULK_CONNECTIONS`] parts
    /// written at once, each in its own transaction on its own connection (this one and
    /// siblings). Nothing is returned, so nothing is marked, unless every part committed; a
    /// part that committed beside one that failed is found there identical when re-sent.
    pub fn write_samples(
        &mut self,
        rows: &[SyncSample],
        marks: &HashMap<String, HostMark>,
    ) -> Result<Written, Error> {
        let parts = if rows.len() >= BULK_SPLIT_MIN_ROWS && self.bulk_allowed() {
            self.open_siblings(BULK_CONNECTIONS - 1);
            split_by_host(rows, self.bulk.siblings.len() + 1)
        } else {
            vec![rows.iter().collect()]
        };
        let Some((mine, theirs)) = parts.split_first() else {
            return Ok(Written::default());
        };
        if theirs.is_empty() {
            return self.write_samples_one(mine, marks);
        }
        let mut siblings = std::mem::take(&mut self.bulk.siblings);
        let (own, others) = std::thread::scope(|scope| {
            let others: Vec<_> = siblings
                .iter_mut()
                .zip(theirs)
                .map(|(sibling, part)| scope.spawn(move || sibling.write_samples_one(part, marks)))
                .collect();
            let own = self.write_samples_one(mine, marks);
            let others: Vec<Result<Written, Error>> = others
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Server {
                            server: self.server.clone(),
                            message: "a sibling connection's writer panicked".into(),
                        })
                    })
                })
                .collect();
            (own, others)
        });
        // A connection or server error outranks a content error: the caller drops the
        // connection (the parts that failed for their content are bisected next time).
        let mut written = Written::default();
        let (mut fatal, mut content) = (None, None);
        for result in std::iter::once(own).chain(others) {
            match result {
                Ok(part) => {
                    written.inserted.extend(part.inserted);
                    written.identical.extend(part.identical);
                    written.collisions.extend(part.collisions);
                }
                Err(err @ Error::Content(_)) => {
                    content.get_or_insert(err);
                }
                Err(err) => {
                    fatal.get_or_insert(err);
                }
            }
        }
        for sibling in &mut siblings {
            self.conflict_retries += sibling.take_conflict_retries();
        }
        if fatal.is_none() {
            self.bulk.siblings = siblings;
        }
        match fatal.or(content) {
            Some(err) => Err(err),
            None => Ok(written),
        }
    }

    /// Opens sibling connections up to `wanted` with this connection's options; one that
    /// cannot be opened is done without (logged).
    fn open_siblings(&mut self, wanted: usize) {
        let Some(opts) = self.bulk.opts.clone() else {
            return;
        };
        while self.bulk.siblings.len() < wanted {
            let mut sibling = match Conn::new(opts.clone()) {
                Ok(mut conn) => Central {
                    session: super::orphans::start(&mut conn, &self.server),
                    conn,
                    server: self.server.clone(),
                    appliance: self.appliance,
                    epoch: self.epoch,
                    conflict_retries: 0,
                    bulk: Bulk {
                        allowed: Some(true),
                        opts: None,
                        siblings: Vec::new(),
                    },
                },
                Err(err) => {
                    tracing::warn!(server = %self.server, error = %err,
                        "cannot open a second connection for parallel batches; writing over one");
                    return;
                }
            };
            // The same checks and session as this connection: on a Galera node, reads that
            // wait for what the cluster committed (the identity read after a failover).
            let server = self.server.clone();
            if let Err(err) = sibling.check_ready(&server) {
                tracing::warn!(server = %self.server, error = %err,
                    "a second connection for parallel batches is not ready; writing over one");
                return;
            }
            self.bulk.siblings.push(sibling);
        }
    }

    /// [`Central::write_samples`] in one transaction on this connection.
    fn write_samples_one(
        &mut self,
        rows: &[&SyncSample],
        marks: &HashMap<String, HostMark>,
    ) -> Result<Written, Error> {
        let hosts: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.host.as_str(), r.address.as_str()))
            .collect();
        let (appliance, epoch) = (self.appliance, self.epoch);
        let mut bulk = self.bulk_allowed();
        let result = self.transaction(&hosts, |tx, ids| {
            let prepared: Vec<sql::PreparedSample<'_>> = rows
                .iter()
                .map(|r| Ok(sql::PreparedSample::new(r, host_id(ids, &r.host)?)))
                .collect::<Result<_, TxError>>()?;
            let existing: HashMap<(u32, i64), Option<u64>> = if prepared.is_empty() {
                HashMap::new()
            } else {
                let found: Vec<(u32, i64, Option<u64>)> =
                    tx.query(sql::existing_samples(appliance, epoch, &prepared))?;
                found
                    .into_iter()
                    .map(|(h, seq, sum)| ((h, seq), sum))
                    .collect()
            };
            let mut written = Written::default();
            let mut new = Vec::with_capacity(prepared.len());
            let mut deltas: HashMap<u32, sql::WatermarkDelta> = HashMap::new();
            for p in &prepared {
                let delta = deltas
                    .entry(p.host_id)
                    .or_insert_with(|| watermark_seed(marks, &p.row.host));
                delta.last_seq = delta.last_seq.max(p.row.seq);
                match existing.get(&(p.host_id, p.row.seq)) {
                    None => {
                        delta.stored += 1;
                        delta.stored_last_seq = delta.stored_last_seq.max(p.row.seq);
                        written.inserted.push(p.row.id);
                        new.push(p);
                    }
                    // A row of schema version 1 has no checksum; it cannot share an epoch with
                    // a buffer, so this is only reachable by hand: treat it as the same row.
                    Some(central) if central.is_none_or(|c| c == p.checksum) => {
                        written.identical.push(p.row.id);
                    }
                    Some(central) => written.collisions.push(Collision {
                        local_id: p.row.id,
                        host: p.row.host.clone(),
                        seq: Some(p.row.seq),
                        local_checksum: p.checksum,
                        central_checksum: *central,
                    }),
                }
            }
            let loaded = if bulk && !new.is_empty() {
                load_samples(tx, appliance, epoch, &new, &mut bulk)?
            } else {
                None
            };
            let inserted = match loaded {
                Some(inserted) => inserted,
                None => insert_samples(tx, appliance, epoch, &new)?,
            };
            check_inserted(inserted, new.len(), "samples", epoch)?;
            for statement in sql::watermark_upserts(appliance, epoch, &deltas) {
                tx.query_drop(statement)?;
            }
            Ok(written)
        });
        if !bulk && self.bulk.allowed == Some(true) {
            tracing::warn!(server = %self.server,
                "MySQL refused LOAD DATA LOCAL INFILE (local_infile turned off?); this connection sends INSERT statements");
            self.bulk.allowed = Some(false);
        }
        result
    }
}

/// `rows` cut into at most `parts` groups of whole hosts (in name order) of about equal size.
fn split_by_host(rows: &[SyncSample], parts: usize) -> Vec<Vec<&SyncSample>> {
    let mut by_host: std::collections::BTreeMap<&str, Vec<&SyncSample>> = Default::default();
    for row in rows {
        by_host.entry(pad_key(&row.host)).or_default().push(row);
    }
    // Each host goes to the part its middle row falls in: parts of whole hosts, in name
    // order, of about rows.len() / parts rows each.
    let parts = parts.max(1);
    let mut out: Vec<Vec<&SyncSample>> = vec![Vec::new(); parts];
    let mut before = 0;
    for (_, host_rows) in by_host {
        let middle = before + host_rows.len() / 2;
        let part = (middle * parts / rows.len().max(1)).min(parts - 1);
        before += host_rows.len();
        out[part].extend(host_rows);
    }
    out.retain(|part| !part.is_empty());
    out
}

/// Multi-row INSERT of the absent samples and their cores; the samples inserted.
fn insert_samples(
    tx: &mut mysql::Transaction<'_>,
    appliance: u32,
    epoch: i64,
    new: &[&sql::PreparedSample<'_>],
) -> Result<u64, TxError> {
    let statements = sql::sample_inserts(appliance, epoch, new);
    let samples_statements = statements
        .iter()
        .filter(|s| s.starts_with("INSERT INTO samples"))
        .count();
    let mut inserted = 0;
    for (i, statement) in statements.iter().enumerate() {
        tx.query_drop(statement)?;
        if i < samples_statements {
            inserted += tx.affected_rows();
        }
    }
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_splits_into_parts_of_whole_hosts_of_about_equal_size() {
        let row = |host: &str, seq: i64| SyncSample {
            id: seq,
            host: host.into(),
            address: "a".into(),
            seq,
            collected_at: 0,
            received_at: 0,
            clock_skewed: false,
            cpu: 0.0,
            cores: Ok(Vec::new()),
            mem_used: 0,
            mem_total: 0,
            swap_used: 0,
            swap_total: 0,
            uptime_s: 0,
            boot_time_s: None,
            load: [None; 3],
            hostname: None,
            os: None,
            kernel: None,
            extras: None,
            sections: Vec::new(),
        };
        // Arrival order interleaves the hosts; "c " is host "c" as the central collation sees it.
        let mut rows = Vec::new();
        for seq in 0..10 {
            for host in ["a", "b", "c", "d"] {
                rows.push(row(host, seq));
            }
        }
        rows.push(row("c ", 10));
        let parts = split_by_host(&rows, 2);
        assert_eq!(parts.len(), 2);
        fn hosts(part: &[&SyncSample]) -> Vec<String> {
            let mut h: Vec<String> = part.iter().map(|r| pad_key(&r.host).to_string()).collect();
            h.dedup();
            h
        }
        assert_eq!(hosts(&parts[0]), ["a", "b"]);
        assert_eq!(hosts(&parts[1]), ["c", "d"]);
        assert_eq!(parts[0].len() + parts[1].len(), rows.len());
        assert_eq!(split_by_host(&rows[..1], 2).len(), 1, "one host: one part");
        assert_eq!(
            split_by_host(&rows, 8).len(),
            4,
            "never more parts than hosts"
        );
    }
}
