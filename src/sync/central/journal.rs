//! Journal batches (collection errors, alert events, drops): what the central database holds,
//! and writing one kind's rows with the drops' watermarks.

use std::collections::HashMap;

use mysql::prelude::Queryable;

use super::super::sql;
use super::batch::{TxError, check_inserted, host_id, watermark_seed};
use super::{Central, Collision, Error, HostMark, Written, classify};
use crate::buffer::{JournalFields, JournalRow};

impl Central {
    /// The newest local id `table` holds for this appliance and epoch (0: none).
    pub fn present_journal(&mut self, table: &str) -> Result<i64, Error> {
        let server = self.server.clone();
        let max: Option<Option<i64>> = self
            .conn
            .query_first(format!(
                "SELECT MAX(local_id) FROM {table} WHERE appliance_id = {} AND epoch = {}",
                self.appliance, self.epoch
            ))
            .map_err(|e| classify(&server, e))?;
        Ok(max.flatten().unwrap_or(0))
    }

    /// Writes journal rows of one kind in one transaction and commits, like
    /// [`Central::write_samples`]; inserted drops add to their hosts' watermarks.
    pub fn write_journal(
        &mut self,
        rows: &[JournalRow],
        marks: &HashMap<String, HostMark>,
    ) -> Result<Written, Error> {
        let hosts: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.host.as_str(), r.address.as_str()))
            .collect();
        let (appliance, epoch) = (self.appliance, self.epoch);
        self.transaction(&hosts, |tx, ids| {
            let Some(first) = rows.first() else {
                return Ok(Written::default());
            };
            let table = sql::journal_table(&first.fields);
            let prepared: Vec<sql::PreparedJournal<'_>> = rows
                .iter()
                .map(|r| Ok(sql::PreparedJournal::new(r, host_id(ids, &r.host)?)))
                .collect::<Result<_, TxError>>()?;
            let found: Vec<(i64, Option<u64>)> =
                tx.query(sql::existing_journal(table, appliance, epoch, &prepared))?;
            let existing: HashMap<i64, Option<u64>> = found.into_iter().collect();
            let mut written = Written::default();
            let mut new = Vec::with_capacity(prepared.len());
            let mut deltas: HashMap<u32, sql::WatermarkDelta> = HashMap::new();
            for p in &prepared {
                match existing.get(&p.row.id) {
                    None => {
                        if let JournalFields::Drop {
                            count, last_seq, ..
                        } = &p.row.fields
                        {
                            let delta = deltas
                                .entry(p.host_id)
                                .or_insert_with(|| watermark_seed(marks, &p.row.host));
                            delta.dropped += count;
                            delta.last_seq = delta.last_seq.max(*last_seq);
                        }
                        written.inserted.push(p.row.id);
                        new.push(p);
                    }
                    Some(central) if central.is_none_or(|c| c == p.checksum) => {
                        written.identical.push(p.row.id);
                    }
                    Some(central) => written.collisions.push(Collision {
                        local_id: p.row.id,
                        host: p.row.host.clone(),
                        seq: None,
                        local_checksum: p.checksum,
                        central_checksum: *central,
                    }),
                }
            }
            let mut inserted = 0;
            for statement in sql::journal_inserts(appliance, epoch, &new) {
                tx.query_drop(statement)?;
                inserted += tx.affected_rows();
            }
            check_inserted(inserted, new.len(), &format!("{table} rows"), epoch)?;
            for statement in sql::watermark_upserts(appliance, epoch, &deltas) {
                tx.query_drop(statement)?;
            }
            Ok(written)
        })
    }
}
