//! Retention: keeps the buffer within `buffer.keep_synced`, `buffer.max_size`,
//! `buffer.max_unsynced_age` and `buffer.min_free`.
//!
//! Order of shedding: synced data older than `keep_synced` always goes (journal
//! rows and sent mail too); when a bound is exceeded, synced journal rows and
//! sent mail go first, then synced samples (oldest first), then collided
//! samples (never sendable, their drop already recorded; the `collisions` rows
//! stay), and only then the oldest unsynced samples. `max_size` counts every page of the database, the
//! journal tables and the outbox included. `min_free` turns the free space of
//! the buffer's filesystem into a size bound: the buffer may use what it holds
//! now plus the free space beyond `min_free` (the disk reserve counted as if in
//! place), whatever else fills the disk. Every unsynced sample shed is recorded
//! in `drops` (host, sequence range, count, reason), which is synced like any
//! other row, so the central gap view explains it: edgemon never loses a sample
//! without a record. At 80% of a bound, before unsynced data is at risk, an
//! operator warning is queued (the buffer warning of `state.rs`) and logged.
//!
//! On a (nearly) full filesystem retention first releases the disk reserve
//! (`disk.rs`), deletes in small chunks with a checkpoint after each, and gives
//! the freed pages back to the filesystem (`incremental_vacuum`, then a
//! truncating checkpoint), so that its own writes never need space the rounds
//! used up. It re-creates the reserve once there is room.
//!
//! It does not decide when to run: the sync task calls it every cycle, and the
//! collector before a round when the filesystem is below `min_free`.

use std::time::Duration;

use rusqlite::{TransactionBehavior, params};

use super::{Buffer, Result};
use crate::config::BufferConfig;

/// The share of a bound at which operators are warned.
const WARN_AT: f64 = 0.8;

/// Rows deleted per transaction while shedding.
const SHED_CHUNK: u64 = 2_000;
/// Rows deleted per transaction when the filesystem is nearly full: each transaction's
/// WAL frames must fit in the space the reserve gave back.
const TIGHT_CHUNK: u64 = 100;

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Synced (and quarantined) samples deleted, by age or for size, and collided samples
    /// deleted for size.
    pub synced_deleted: u64,
    /// Synced journal rows and sent mail deleted, by age or for size.
    pub journal_deleted: u64,
    /// Unsynced samples dropped (each recorded in `drops`).
    pub unsynced_dropped: u64,
    /// The disk reserve was released because the filesystem was (nearly) full.
    pub reserve_released: bool,
    /// The operator warning in force after the pass, if any.
    pub warning: Option<String>,
}

/// The size the buffer may reach now, and which bound sets it.
#[derive(Debug, Clone)]
struct SizeBound {
    bytes: u64,
    /// Once over `bytes`, shed down to this: below the free-space bound, half of `min_free`
    /// more, so that shedding (and its drop records) happens in a few larger steps rather
    /// than a little every round.
    target: u64,
    reason: String,
    /// What the warning says about the bound.
    name: String,
}

impl Buffer {
    /// Runs one retention pass against `config` at time `now_ms`.
    pub fn enforce_retention(
        &mut self,
        config: &BufferConfig,
        now_ms: i64,
    ) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        // A (nearly) full filesystem: give the reserve back first, so that deletes and drop
        // records have room; chunks stay small and each is checkpointed.
        let tight = self.disk.space().is_some_and(|s| self.disk.tight(s));
        if tight {
            report.reserve_released = self.disk.release_reserve();
            self.checkpoint();
        }
        let chunk = if tight { TIGHT_CHUNK } else { SHED_CHUNK } as i64;
        // Sample ages on the buffer's monotonic clock (`mono.rs`): a step of the wall clock
        // sheds nothing. Rows from before migration 4 have only their wall time.
        let mono = self.mono_now()?;
        let cutoff = |age: Duration| Cutoff {
            mono: mono - ms(age),
            wall: now_ms - ms(age),
        };

        let keep_before = now_ms - ms(config.keep_synced);
        report.journal_deleted += self.shed_loop(tight, |b| {
            b.delete_synced_journal(Some(keep_before), chunk, true)
        })?;
        let keep = cutoff(config.keep_synced);
        report.synced_deleted += self.shed_loop(tight, |b| b.delete_synced(Some(keep), chunk))?;

        let age_limit = cutoff(config.max_unsynced_age);
        let reason = format!(
            "unsynced for longer than buffer.max_unsynced_age ({})",
            humantime::format_duration(config.max_unsynced_age)
        );
        report.unsynced_dropped += self.shed_loop(tight, |b| {
            b.drop_unsynced(Some(age_limit), chunk, &reason, now_ms)
        })?;

        let bound = self.size_bound(config)?;
        // Journal rows and sent mail first, then synced samples, oldest first, in chunks;
        // then the oldest unsynced.
        let mut passes = 0;
        loop {
            let used = self.used_bytes()?;
            let limit = if passes == 0 {
                bound.bytes
            } else {
                bound.target
            };
            if used <= limit || passes >= 100_000 {
                break;
            }
            passes += 1;
            // Aim at the excess (rows times their average size), so little more than
            // necessary is shed; freed pages come back unevenly, hence the loop.
            let samples = self.sample_count()?.max(1) as u64;
            let aim = ((used - bound.target) / (used / samples).max(1) + 1).clamp(10, chunk as u64)
                as i64;
            let n = self.with_reserve(|b| b.delete_synced_journal(None, aim, false))?;
            report.journal_deleted += n;
            if n == 0 {
                let mut n = self.with_reserve(|b| b.delete_synced(None, aim))?;
                if n == 0 {
                    // Collided samples can never be sent and already have their drop record:
                    // they go before any sample that still can.
                    n = self.with_reserve(|b| b.delete_collided(aim))?;
                }
                report.synced_deleted += n;
                if n == 0 {
                    let n =
                        self.with_reserve(|b| b.drop_unsynced(None, aim, &bound.reason, now_ms))?;
                    report.unsynced_dropped += n;
                    if n == 0 {
                        break;
                    }
                }
            }
            if tight {
                self.checkpoint();
            }
        }
        let shed = report.synced_deleted + report.journal_deleted + report.unsynced_dropped;
        if shed > 0 || tight {
            self.release_free_pages(if tight { 16 } else { 0 });
        }
        self.disk.ensure_reserve(self.headroom(config));
        report.warning = self.update_warning(config, &bound, now_ms, mono)?;
        if report.unsynced_dropped > 0 {
            tracing::error!(
                dropped = report.unsynced_dropped,
                buffer = %self.path().display(),
                reason = %bound.reason,
                "retention dropped unsynced samples (recorded in drops)"
            );
        }
        Ok(report)
    }

    /// Runs `step` until it sheds nothing, through the reserve, checkpointing when `tight`.
    fn shed_loop(
        &mut self,
        tight: bool,
        mut step: impl FnMut(&mut Buffer) -> Result<u64>,
    ) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.with_reserve(&mut step)?;
            total += n;
            if tight {
                self.checkpoint();
            }
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// The smaller of `max_size` and the room `min_free` leaves on the filesystem.
    fn size_bound(&self, config: &BufferConfig) -> Result<SizeBound> {
        let by_size = SizeBound {
            bytes: config.max_size,
            target: config.max_size,
            reason: format!("buffer over buffer.max_size ({} bytes)", config.max_size),
            name: format!("buffer.max_size ({} bytes)", config.max_size),
        };
        let Some(space) = self.disk.space() else {
            return Ok(by_size);
        };
        let min_free = self.min_free_bytes(config, space.total);
        let free = self.disk.free_with_reserve(space);
        // After the freed pages go back, the main file holds about `used` bytes: the buffer
        // may grow to what that file takes now plus the free space beyond min_free. The WAL
        // is left out: it stays at about its size limit whatever retention does.
        let file = std::fs::metadata(self.path()).map_or(0, |m| m.len()) as i64;
        let room = (file + free - min_free as i64).max(0) as u64;
        if room >= config.max_size {
            return Ok(by_size);
        }
        Ok(SizeBound {
            bytes: room,
            target: room.saturating_sub(min_free / 2),
            reason: format!(
                "free space on the buffer's filesystem below buffer.min_free ({min_free} bytes)"
            ),
            name: format!(
                "the room buffer.min_free leaves on the filesystem ({room} bytes: {} free, min_free {min_free})",
                space.avail
            ),
        })
    }

    /// Bytes the database pages in use hold (freed pages go back at the end of retention).
    pub fn used_bytes(&self) -> Result<u64> {
        let e = self.err("measuring the buffer");
        let conn = self.conn();
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(&e)?;
        let free: i64 = conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .map_err(&e)?;
        let size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(&e)?;
        Ok(((pages - free).max(0) * size) as u64)
    }

    fn sample_count(&self) -> Result<i64> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM samples", [], |r| r.get(0))
            .map_err(self.err("counting samples"))
    }

    /// Deletes synced and quarantined samples received before `before` (all when `None`),
    /// oldest first, at most `limit`.
    fn delete_synced(&mut self, before: Option<Cutoff>, limit: i64) -> Result<u64> {
        let path = self.path().to_path_buf();
        let e = move |source| super::classify(&path, "deleting synced data", source);
        let before = before.unwrap_or(Cutoff::ALL);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        tx.execute(
            "CREATE TEMP TABLE IF NOT EXISTS shed (id INTEGER PRIMARY KEY)",
            [],
        )
        .map_err(&e)?;
        tx.execute("DELETE FROM temp.shed", []).map_err(&e)?;
        let n = tx
            .execute(
                "INSERT INTO temp.shed (id) SELECT id FROM samples
                 WHERE sync_state IN (1, 2)
                   AND CASE WHEN received_mono IS NULL THEN received_at < ?3 ELSE received_mono < ?1 END
                 ORDER BY id LIMIT ?2",
                params![before.mono, limit, before.wall],
            )
            .map_err(&e)?;
        tx.execute(
            "DELETE FROM quarantine WHERE sample_id IN (SELECT id FROM temp.shed)",
            [],
        )
        .map_err(&e)?;
        tx.execute(
            "DELETE FROM samples WHERE id IN (SELECT id FROM temp.shed)",
            [],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(n as u64)
    }

    /// Deletes collided samples (state 3: their drop record was written when the collision
    /// was), oldest first, at most `limit`; their `collisions` rows stay for inspection.
    fn delete_collided(&mut self, limit: i64) -> Result<u64> {
        let path = self.path().to_path_buf();
        let e = move |source| super::classify(&path, "deleting collided samples", source);
        let n = self
            .conn()
            .execute(
                "DELETE FROM samples WHERE id IN (SELECT id FROM samples
                 WHERE sync_state = 3 ORDER BY id LIMIT ?1)",
                [limit],
            )
            .map_err(&e)?;
        Ok(n as u64)
    }

    /// Deletes synced journal rows (collection errors, drops, alert events) and sent mail
    /// from before `before` (all when `None`), oldest first, at most `limit` of each table;
    /// `with_failed` also deletes mail refused for good (by age only: it is the record).
    fn delete_synced_journal(
        &mut self,
        before: Option<i64>,
        limit: i64,
        with_failed: bool,
    ) -> Result<u64> {
        let path = self.path().to_path_buf();
        let e = move |source| super::classify(&path, "deleting synced journal rows", source);
        let before = before.unwrap_or(i64::MAX);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        let mut n = 0;
        // The newest row of each table stays: the central key is the local id, and SQLite
        // (without AUTOINCREMENT) would hand the highest id out again once it is deleted.
        // A drop record MySQL refused (state 2) is the only record of that loss: it stays.
        for (table, states) in [
            ("collection_errors", "(1, 2)"),
            ("drops", "(1)"),
            ("alert_events", "(1, 2)"),
        ] {
            n += tx
                .execute(
                    &format!(
                        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table}
                         WHERE sync_state IN {states} AND at < ?1
                           AND id < (SELECT MAX(id) FROM {table})
                         ORDER BY id LIMIT ?2)"
                    ),
                    params![before, limit],
                )
                .map_err(&e)?;
        }
        let states = if with_failed {
            "('sent', 'failed')"
        } else {
            "('sent')"
        };
        n += tx
            .execute(
                &format!(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
                     WHERE state IN {states} AND created_at < ?1 ORDER BY id LIMIT ?2)"
                ),
                params![before, limit],
            )
            .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(n as u64)
    }

    /// Drops unsynced samples received before `before` (all when `None`), oldest first, at
    /// most `limit`, recording one `drops` row per host and contiguous sequence range. Rows of
    /// the batch sync has in flight (`SyncQueue::claim_unsynced`) are never dropped: MySQL may
    /// be committing them, and a drop record would count them twice.
    fn drop_unsynced(
        &mut self,
        before: Option<Cutoff>,
        limit: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<u64> {
        let path = self.path().to_path_buf();
        let e = move |source| super::classify(&path, "dropping unsynced samples", source);
        let before = before.unwrap_or(Cutoff::ALL);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        // Read inside the write lock: a claim is written under it too, so none slips between.
        let (lo, hi) = super::sync_queries::in_flight(&tx).map_err(&e)?;
        let victims: Vec<(i64, i64, i64)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT id, host_id, seq FROM samples
                     WHERE sync_state = 0 AND id NOT BETWEEN ?3 AND ?4
                       AND CASE WHEN received_mono IS NULL THEN received_at < ?5 ELSE received_mono < ?1 END
                     ORDER BY id LIMIT ?2",
                )
                .map_err(&e)?;
            stmt.query_map(params![before.mono, limit, lo, hi, before.wall], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(&e)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&e)?
        };
        let mut by_host: Vec<(i64, i64)> = victims.iter().map(|&(_, h, s)| (h, s)).collect();
        for (host_id, first, last) in seq_ranges(&mut by_host) {
            tx.execute(
                "INSERT INTO drops (host_id, first_seq, last_seq, count, reason, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![host_id, first, last, last - first + 1, reason, now_ms],
            )
            .map_err(&e)?;
        }
        {
            let mut del = tx
                .prepare_cached("DELETE FROM samples WHERE id = ?1")
                .map_err(&e)?;
            for (id, _, _) in &victims {
                del.execute([id]).map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)?;
        Ok(victims.len() as u64)
    }

    /// Sets or clears the operator warning; logs it when it first appears.
    fn update_warning(
        &mut self,
        config: &BufferConfig,
        bound: &SizeBound,
        now_ms: i64,
        mono: i64,
    ) -> Result<Option<String>> {
        let (unsynced, _) = self.unsynced_depth()?;
        let oldest = self.oldest_unsynced_age(now_ms, mono)?;
        let total = self.sample_count()?;
        let used = self.used_bytes()?;
        // Synced rows can be shed at no loss, so only the unsynced share counts.
        let unsynced_bytes = if total > 0 {
            used as f64 * unsynced as f64 / total as f64
        } else {
            0.0
        };
        let mut reasons = Vec::new();
        if unsynced_bytes >= WARN_AT * bound.bytes as f64 && unsynced > 0 {
            reasons.push(format!(
                "unsynced samples fill {:.0}% of {}",
                unsynced_bytes * 100.0 / bound.bytes.max(1) as f64,
                bound.name
            ));
        }
        if let Some(age) = oldest {
            let age = age.max(0) as f64;
            let limit = ms(config.max_unsynced_age).max(1) as f64;
            if age >= WARN_AT * limit {
                reasons.push(format!(
                    "the oldest unsynced sample is {} old, {:.0}% of buffer.max_unsynced_age ({})",
                    humantime::format_duration(Duration::from_secs((age / 1000.0) as u64)),
                    age * 100.0 / limit,
                    humantime::format_duration(config.max_unsynced_age)
                ));
            }
        }
        let warning = (!reasons.is_empty()).then(|| {
            format!(
                "buffer {}: {}; unsynced samples will be dropped (and recorded) unless sync catches up",
                self.path().display(),
                reasons.join("; ")
            )
        });
        let previous = self.buffer_warning()?;
        // The warning is informative: a full disk must not fail the pass over it.
        let noted = match &warning {
            Some(text) => {
                if previous.is_none() {
                    tracing::error!(unsynced, "{text}");
                }
                if previous.as_deref() != Some(text.as_str()) {
                    self.set_buffer_warning(Some(text))
                } else {
                    Ok(())
                }
            }
            None if previous.is_some() => self.set_buffer_warning(None),
            None => Ok(()),
        };
        match noted {
            Err(super::Error::DiskFull { .. }) => {
                tracing::debug!("disk full: the buffer warning is not stored this time")
            }
            other => other?,
        }
        Ok(warning)
    }
}

/// Samples received before this are old enough: `mono` on the buffer's monotonic clock, `wall`
/// for rows from before migration 4, which have no monotonic reading.
#[derive(Debug, Clone, Copy)]
struct Cutoff {
    mono: i64,
    wall: i64,
}

impl Cutoff {
    /// Every row.
    const ALL: Cutoff = Cutoff {
        mono: i64::MAX,
        wall: i64::MAX,
    };
}

impl Buffer {
    /// The age of the oldest unsynced sample, ms, on the monotonic clock (`mono` now) or, for
    /// rows without a monotonic reading, by the wall clock (`now_ms`).
    fn oldest_unsynced_age(&self, now_ms: i64, mono: i64) -> Result<Option<i64>> {
        let (oldest_mono, oldest_wall): (Option<i64>, Option<i64>) = self
            .conn()
            .query_row(
                "SELECT MIN(received_mono), MIN(CASE WHEN received_mono IS NULL THEN received_at END)
                 FROM samples WHERE sync_state = 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.err("reading the oldest unsynced sample"))?;
        Ok(
            match (
                oldest_mono.map(|m| mono - m),
                oldest_wall.map(|w| now_ms - w),
            ) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            },
        )
    }
}

/// Groups (host, seq) pairs into (host, first, last) runs of consecutive sequence numbers.
fn seq_ranges(pairs: &mut [(i64, i64)]) -> Vec<(i64, i64, i64)> {
    pairs.sort_unstable();
    let mut ranges: Vec<(i64, i64, i64)> = Vec::new();
    for &(host, seq) in pairs.iter() {
        match ranges.last_mut() {
            Some((h, _, last)) if *h == host && *last + 1 == seq => *last = seq,
            _ => ranges.push((host, seq, seq)),
        }
    }
    ranges
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rusqlite::OptionalExtension;

    use super::*;
    use crate::buffer::{WARNING_KEY, now_ms};
    use crate::collect::outcome::HostOutcome;

    const HOUR: i64 = 3_600_000;

    fn config(max_size: u64) -> BufferConfig {
        BufferConfig {
            path: "unused".into(),
            max_size,
            max_unsynced_age: Duration::from_secs(10 * 3600),
            keep_synced: Duration::from_secs(3600),
            min_free: crate::config::MinFree::Bytes(0),
        }
    }

    /// Queues `n` mails of `size` bytes each in one round, marked sent when `sent`.
    fn seed_mail(buffer: &mut Buffer, n: usize, size: usize, sent: bool) {
        let body = "m".repeat(size);
        let at = now_ms();
        let ids: Vec<String> = (0..n).map(|i| format!("<{at}.{i}.{sent}@test>")).collect();
        buffer
            .record_round(&[], Duration::from_secs(300), |tx, _| {
                for id in &ids {
                    tx.insert_outbox(&crate::buffer::NewMail {
                        message_id: id,
                        recipient: "ops@example.com",
                        subject: "s",
                        body: &body,
                        created_at: at,
                    })?;
                }
                Ok(())
            })
            .unwrap();
        if sent {
            let outbox = buffer.outbox();
            for row in outbox.due_outbox(at, usize::MAX >> 1).unwrap() {
                outbox.mark_outbox_sent(row.id, at).unwrap();
            }
        }
    }

    /// Records one failed attempt per host, `rounds` times, all marked synced.
    fn seed_synced_errors(buffer: &mut Buffer, hosts: &[&str], rounds: usize) {
        for _ in 0..rounds {
            let outcomes: Vec<HostOutcome> = hosts
                .iter()
                .map(|h| HostOutcome {
                    host: h.to_string(),
                    address: format!("{h}:22"),
                    started_at_ms: now_ms(),
                    duration: Duration::ZERO,
                    result: Err(crate::collect::outcome::CollectError {
                        class: crate::collect::outcome::ErrorClass::Timeout,
                        message: "x".repeat(2000),
                    }),
                })
                .collect();
            buffer
                .record_round(&outcomes, Duration::from_secs(300), |_, _| Ok(()))
                .unwrap();
        }
        let journal = super::super::Journal::CollectionErrors;
        let mut queue = buffer.sync_queue();
        let ids: Vec<i64> = queue
            .unsynced_journal(journal, usize::MAX >> 1)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        queue.mark_journal_synced(journal, &ids).unwrap();
    }

    /// The raw text of a kv key, as stored.
    fn kv(buffer: &Buffer, key: &str) -> Option<String> {
        buffer
            .conn()
            .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .unwrap()
    }

    fn count(buffer: &Buffer, sql: &str) -> i64 {
        buffer.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Records one sample per host in `hosts` per round, the rounds `ages_h` hours ago.
    fn seed(buffer: &mut Buffer, hosts: &[&str], ages_h: &[i64]) {
        let now = now_ms();
        for age in ages_h {
            let at = now - age * HOUR;
            let outcomes: Vec<HostOutcome> = hosts
                .iter()
                .map(|h| HostOutcome {
                    host: h.to_string(),
                    address: format!("{h}:22"),
                    started_at_ms: at,
                    duration: Duration::ZERO,
                    result: Ok(crate::buffer::tests::report(5.0, at)),
                })
                .collect();
            buffer
                .record_round(&outcomes, Duration::from_secs(300), |_, _| Ok(()))
                .unwrap();
            // As if received `age` hours ago on the monotonic clock too.
            buffer
                .conn()
                .execute(
                    "UPDATE samples SET received_mono = received_mono - ?1
                     WHERE id > (SELECT COALESCE(MAX(id), 0) FROM samples) - ?2",
                    rusqlite::params![age * HOUR, hosts.len() as i64],
                )
                .unwrap();
        }
    }

    fn sync_all(buffer: &mut Buffer) {
        let mut queue = buffer.sync_queue();
        let ids: Vec<(String, i64)> = queue
            .unsynced_samples(usize::MAX >> 1)
            .unwrap()
            .iter()
            .map(|s| (s.host.clone(), s.seq))
            .collect();
        queue.mark_samples_synced(&ids, now_ms()).unwrap();
    }

    fn drops(buffer: &Buffer) -> Vec<(String, i64, i64, i64, String)> {
        let mut stmt = buffer
            .conn()
            .prepare(
                "SELECT h.name, first_seq, last_seq, count, reason FROM drops d
                 JOIN hosts h ON h.id = d.host_id ORDER BY h.name, first_seq",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
    }

    /// A buffer over its bound that holds collided samples (never sendable, each with its drop
    /// record already) sheds those before any unsynced sample, which used to be dropped while
    /// the collided rows stayed forever.
    #[test]
    fn collided_samples_are_shed_before_unsynced_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        seed(&mut buffer, &["a", "b", "c", "d", "e"], &[0; 100]);
        {
            let mut queue = buffer.sync_queue();
            let epoch = queue.epoch().unwrap();
            let collided: Vec<super::super::Collision> = queue
                .unsynced_samples(usize::MAX >> 1)
                .unwrap()
                .into_iter()
                .map(|r| super::super::Collision {
                    local_id: r.id,
                    host: r.host,
                    seq: Some(r.seq),
                    local_checksum: 1,
                    central_checksum: Some(2),
                })
                .collect();
            queue
                .record_collisions("samples", &collided, epoch, now_ms())
                .unwrap();
        }
        seed(&mut buffer, &["a", "b", "c", "d", "e"], &[0; 10]);
        let drops_before = drops(&buffer).len();
        let used = buffer.used_bytes().unwrap();
        let report = buffer
            .enforce_retention(&config(used - 16 * 1024), now_ms())
            .unwrap();
        assert_eq!(report.unsynced_dropped, 0, "{report:?}");
        assert!(report.synced_deleted > 0, "{report:?}");
        assert_eq!(drops(&buffer).len(), drops_before);
        let status = buffer.reader().status().unwrap();
        assert_eq!(status.unsynced, 50);
    }

    #[test]
    fn synced_samples_older_than_keep_synced_go_and_unsynced_stay() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        seed(&mut buffer, &["a"], &[3, 2]);
        sync_all(&mut buffer);
        seed(&mut buffer, &["a"], &[2, 0]);
        let report = buffer
            .enforce_retention(&config(u64::MAX), now_ms())
            .unwrap();
        assert_eq!(report.synced_deleted, 2);
        assert_eq!(report.unsynced_dropped, 0);
        let status = buffer.reader().status().unwrap();
        assert_eq!((status.samples, status.unsynced), (2, 2));
        assert!(drops(&buffer).is_empty());
    }

    #[test]
    fn unsynced_samples_past_max_unsynced_age_are_dropped_with_a_record_per_range() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        seed(&mut buffer, &["a", "b"], &[13, 12, 11, 1]);
        let report = buffer
            .enforce_retention(&config(u64::MAX), now_ms())
            .unwrap();
        assert_eq!(report.unsynced_dropped, 6);
        let drops = drops(&buffer);
        assert_eq!(drops.len(), 2, "{drops:?}");
        assert_eq!(
            (drops[0].0.as_str(), drops[0].1, drops[0].2, drops[0].3),
            ("a", 1, 3, 3)
        );
        assert_eq!(
            (drops[1].0.as_str(), drops[1].1, drops[1].2, drops[1].3),
            ("b", 1, 3, 3)
        );
        assert!(drops[0].4.contains("max_unsynced_age"), "{}", drops[0].4);
        assert_eq!(buffer.reader().status().unwrap().unsynced, 2);
        assert_eq!(buffer.reader().status().unwrap().dropped, 6);
        // The drop records are themselves queued for the central database.
        let queued = buffer
            .sync_queue()
            .unsynced_journal(super::super::Journal::Drops, 10)
            .unwrap();
        assert_eq!(queued.len(), 2);
    }

    #[test]
    fn over_max_size_synced_goes_first_then_the_oldest_unsynced_with_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        let hosts: Vec<String> = (0..20).map(|i| format!("h{i}")).collect();
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        seed(&mut buffer, &hosts, &[0; 100]);
        sync_all(&mut buffer);
        seed(&mut buffer, &hosts, &[0; 100]);
        let full = buffer.used_bytes().unwrap();
        // Room for about 40% of what is there: all synced samples go, then some unsynced.
        let report = buffer
            .enforce_retention(&config(full * 2 / 5), now_ms())
            .unwrap();
        assert_eq!(report.synced_deleted, 2000);
        assert!(report.unsynced_dropped > 0, "{report:?}");
        assert!(buffer.used_bytes().unwrap() <= full * 2 / 5);
        let status = buffer.reader().status().unwrap();
        assert_eq!(status.samples, status.unsynced);
        let recorded: i64 = drops(&buffer).iter().map(|d| d.3).sum();
        assert_eq!(recorded as u64, report.unsynced_dropped);
        assert_eq!(status.samples as u64 + report.unsynced_dropped, 2000);
        // The oldest went: per host, the recorded ranges run on from seq 101 without a hole.
        let mut next: std::collections::HashMap<String, i64> = Default::default();
        for d in drops(&buffer) {
            let expected = next.entry(d.0.clone()).or_insert(101);
            assert_eq!(d.1, *expected, "{d:?}");
            *expected = d.2 + 1;
            assert!(d.4.contains("max_size"), "{}", d.4);
        }
        // Still above 80% of the bound with only unsynced data: operators are warned.
        assert!(report.warning.is_some());
    }

    #[test]
    fn an_operator_warning_is_queued_at_80_percent_of_the_age_bound_and_cleared_after() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        seed(&mut buffer, &["a"], &[9]);
        let report = buffer
            .enforce_retention(&config(u64::MAX), now_ms())
            .unwrap();
        let warning = report.warning.unwrap();
        assert!(warning.contains("max_unsynced_age"), "{warning}");
        assert_eq!(kv(&buffer, WARNING_KEY), Some(warning));
        assert_eq!(report.unsynced_dropped, 0);
        sync_all(&mut buffer);
        let report = buffer
            .enforce_retention(&config(u64::MAX), now_ms())
            .unwrap();
        assert_eq!(report.warning, None);
        assert_eq!(kv(&buffer, WARNING_KEY).as_deref(), Some(""));
    }

    #[test]
    fn over_max_size_synced_journal_rows_and_sent_mail_go_before_any_sample() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        seed(&mut buffer, &["a", "b"], &[0; 20]);
        sync_all(&mut buffer);
        let with_samples = buffer.used_bytes().unwrap();
        seed_synced_errors(&mut buffer, &["a", "b"], 100);
        seed_mail(&mut buffer, 100, 4000, true);
        seed_mail(&mut buffer, 3, 100, false);
        assert!(buffer.used_bytes().unwrap() > 3 * with_samples);
        // Room for the samples and a little more: the journal and the sent mail must go.
        let report = buffer
            .enforce_retention(&config(with_samples + 64 * 1024), now_ms())
            .unwrap();
        assert!(report.journal_deleted > 0, "{report:?}");
        assert_eq!((report.synced_deleted, report.unsynced_dropped), (0, 0));
        assert!(buffer.used_bytes().unwrap() <= with_samples + 64 * 1024);
        assert_eq!(buffer.reader().status().unwrap().samples, 40);
        // Pending mail is never shed.
        assert_eq!(
            count(
                &buffer,
                "SELECT COUNT(*) FROM outbox WHERE state = 'pending'"
            ),
            3
        );
    }

    #[test]
    fn r_rejected_drop_record_survives_retention() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        seed(&mut buffer, &["a"], &[0; 3]);
        let old = now_ms() - 30 * 24 * 3_600_000;
        for (state, seq) in [(2, 100), (1, 200), (1, 300)] {
            buffer
                .conn()
                .execute(
                    "INSERT INTO drops (host_id, first_seq, last_seq, count, reason, at, sync_state)
                     VALUES ((SELECT id FROM hosts WHERE name = 'a'), ?1, ?1, 1, 'test', ?2, ?3)",
                    rusqlite::params![seq, old, state],
                )
                .unwrap();
        }
        buffer
            .enforce_retention(&config(1 << 30), now_ms())
            .unwrap();
        // The refused record stays; of the synced ones only the newest row (id reuse) stays.
        assert_eq!(
            count(&buffer, "SELECT COUNT(*) FROM drops WHERE sync_state = 2"),
            1
        );
        assert_eq!(
            count(&buffer, "SELECT COUNT(*) FROM drops WHERE sync_state = 1"),
            1
        );
    }

    #[test]
    fn journal_rows_and_the_outbox_count_against_max_size_then_samples_go_with_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        let empty = buffer.used_bytes().unwrap();
        seed(&mut buffer, &["a"], &[0; 200]);
        let bound = empty + (buffer.used_bytes().unwrap() - empty) / 2;
        seed_mail(&mut buffer, 200, 4000, true);
        seed_synced_errors(&mut buffer, &["a"], 200);
        // The unsynced samples alone are over the bound once the journal and mail are gone.
        let report = buffer.enforce_retention(&config(bound), now_ms()).unwrap();
        assert_eq!(count(&buffer, "SELECT COUNT(*) FROM outbox"), 0);
        // All but the newest, whose id SQLite would otherwise hand out again.
        assert_eq!(
            count(
                &buffer,
                "SELECT COUNT(*) FROM collection_errors WHERE sync_state = 1"
            ),
            1
        );
        assert!(buffer.used_bytes().unwrap() <= bound, "{report:?}");
        assert!(report.unsynced_dropped > 0, "{report:?}");
        // Whatever samples had to go are recorded.
        let recorded: i64 = drops(&buffer).iter().map(|d| d.3).sum();
        assert_eq!(recorded as u64, report.unsynced_dropped);
        assert_eq!(
            buffer.reader().status().unwrap().samples as u64 + report.unsynced_dropped,
            200
        );
    }

    #[test]
    fn below_min_free_synced_goes_first_then_unsynced_with_a_min_free_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        seed(&mut buffer, &["a", "b"], &[0; 30]);
        sync_all(&mut buffer);
        seed(&mut buffer, &["a", "b"], &[0; 30]);
        let file_before = super::super::status::file_size(buffer.path());
        // A bound no filesystem can meet: everything sheddable goes, each unsynced one recorded.
        let mut cfg = config(u64::MAX);
        cfg.min_free = crate::config::MinFree::Percent(49.0);
        let space = buffer.disk.space().unwrap();
        if cfg.min_free.bytes(space.total) <= space.avail {
            cfg.min_free = crate::config::MinFree::Bytes(space.avail + (1 << 40));
        }
        let report = buffer.enforce_retention(&cfg, now_ms()).unwrap();
        assert_eq!(report.synced_deleted, 60, "{report:?}");
        assert_eq!(report.unsynced_dropped, 60, "{report:?}");
        let drops = drops(&buffer);
        assert!(
            drops.iter().all(|d| d.4.contains("buffer.min_free")),
            "{drops:?}"
        );
        assert_eq!(drops.iter().map(|d| d.3).sum::<i64>(), 60);
        // Freed pages went back to the filesystem.
        let file_after = super::super::status::file_size(buffer.path());
        assert!(file_after < file_before, "{file_after} >= {file_before}");
    }

    #[test]
    fn samples_a_round_could_not_store_become_drops_that_consume_their_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        seed(&mut buffer, &["a", "b"], &[0]);
        let lost = buffer.count_unstored(&["a", "b"], "disk full", true, now_ms());
        assert_eq!((lost.samples, lost.pending), (2, 2));
        buffer.count_unstored(&["a"], "disk full", true, now_ms());
        let status = buffer.reader().status().unwrap();
        assert!(status.disk.full);
        assert_eq!(status.disk.unstored_samples, 3);
        assert_eq!(status.hosts[0].unstored_samples, 2);
        // Another connection (`edgemon status`) sees it through the state file.
        let reader = buffer.reader();
        assert_eq!(reader.status().unwrap().disk.unstored_samples, 3);
        drop(reader);
        seed(&mut buffer, &["a", "b"], &[0]);
        let drops = drops(&buffer);
        assert_eq!(drops.len(), 2, "{drops:?}");
        assert_eq!((drops[0].0.as_str(), drops[0].1, drops[0].2), ("a", 2, 3));
        assert_eq!((drops[1].0.as_str(), drops[1].1, drops[1].2), ("b", 2, 2));
        assert!(drops[0].4.contains("full"), "{}", drops[0].4);
        let status = buffer.reader().status().unwrap();
        assert!(!status.disk.full);
        assert_eq!(status.disk.unstored_samples, 0);
        // The round's own samples come after the recorded ranges.
        let seqs: Vec<Option<i64>> = status.hosts.iter().map(|h| h.last_seq).collect();
        assert_eq!(seqs, vec![Some(4), Some(3)]);
        let reader = buffer.reader();
        assert!(!reader.status().unwrap().disk.full);
    }

    #[test]
    fn sequence_ranges_split_on_holes_and_hosts() {
        let mut pairs = vec![(1, 3), (1, 1), (1, 2), (2, 1), (1, 5)];
        assert_eq!(
            seq_ranges(&mut pairs),
            vec![(1, 1, 3), (1, 5, 5), (2, 1, 1)]
        );
    }
}
