//! Retention: keeps the buffer within `buffer.keep_synced`, `buffer.max_size`
//! and `buffer.max_unsynced_age`.
//!
//! Order of shedding: synced data older than `keep_synced` always goes; when a
//! bound is exceeded, synced data goes first (oldest first), and only then the
//! oldest unsynced samples. Every unsynced sample shed is recorded in `drops`
//! (host, sequence range, count, reason), which is synced like any other row,
//! so the central gap view explains it: edgemon never loses a sample without a
//! record. At 80% of a bound, before unsynced data is at risk, an operator
//! warning is queued in kv `buffer.warning` and logged.
//!
//! It does not decide when to run (the sync task calls it every cycle).

use std::time::Duration;

use rusqlite::{TransactionBehavior, params};

use super::{Buffer, Result};
use crate::config::BufferConfig;

/// The kv key of the operator warning; empty when no bound is near.
pub const WARNING_KEY: &str = "buffer.warning";

/// The share of a bound at which operators are warned.
const WARN_AT: f64 = 0.8;

/// Rows deleted per statement while shedding for size.
const SHED_CHUNK: u64 = 2_000;

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Synced (and quarantined) samples deleted, by age or for size.
    pub synced_deleted: u64,
    /// Unsynced samples dropped (each recorded in `drops`).
    pub unsynced_dropped: u64,
    /// The operator warning in force after the pass, if any.
    pub warning: Option<String>,
}

impl Buffer {
    /// Runs one retention pass against `config` at time `now_ms`.
    pub fn enforce_retention(
        &mut self,
        config: &BufferConfig,
        now_ms: i64,
    ) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        let keep_before = now_ms - ms(config.keep_synced);
        report.synced_deleted += self.delete_synced(Some(keep_before), i64::MAX)?;

        let age_limit = now_ms - ms(config.max_unsynced_age);
        let reason = format!(
            "unsynced for longer than buffer.max_unsynced_age ({})",
            humantime::format_duration(config.max_unsynced_age)
        );
        report.unsynced_dropped +=
            self.drop_unsynced(Some(age_limit), i64::MAX, &reason, now_ms)?;

        let max_size = config.max_size;
        let reason = format!("buffer over buffer.max_size ({max_size} bytes)");
        // Synced first, oldest first, in chunks; then the oldest unsynced.
        let mut rounds = 0;
        loop {
            let used = self.used_bytes()?;
            if used <= max_size || rounds >= 10_000 {
                break;
            }
            rounds += 1;
            // Aim at the excess (rows times their average size), so little more than
            // necessary is shed; freed pages come back unevenly, hence the loop.
            let samples = self.sample_count()?.max(1) as u64;
            let chunk = ((used - max_size) / (used / samples).max(1) + 1).min(SHED_CHUNK) as i64;
            let deleted = self.delete_synced(None, chunk)?;
            report.synced_deleted += deleted;
            if deleted == 0 {
                let dropped = self.drop_unsynced(None, chunk, &reason, now_ms)?;
                report.unsynced_dropped += dropped;
                if dropped == 0 {
                    break;
                }
            }
        }
        report.warning = self.update_warning(config, now_ms)?;
        if report.unsynced_dropped > 0 {
            tracing::error!(
                dropped = report.unsynced_dropped,
                buffer = %self.path().display(),
                "retention dropped unsynced samples (recorded in drops)"
            );
        }
        Ok(report)
    }

    /// Bytes the database pages in use hold (the file does not shrink without VACUUM).
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
    /// oldest first, at most `limit`, and synced journal rows of the same age.
    fn delete_synced(&mut self, before: Option<i64>, limit: i64) -> Result<u64> {
        let path = self.path().to_path_buf();
        let e = move |source| super::classify(&path, "deleting synced data", source);
        let before = before.unwrap_or(i64::MAX);
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
                 WHERE sync_state IN (1, 2) AND received_at < ?1 ORDER BY id LIMIT ?2",
                params![before, limit],
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
        for table in ["collection_errors", "drops", "alert_events"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE sync_state IN (1, 2) AND at < ?1"),
                params![before],
            )
            .map_err(&e)?;
        }
        tx.commit().map_err(&e)?;
        Ok(n as u64)
    }

    /// Drops unsynced samples received before `before` (all when `None`), oldest first, at
    /// most `limit`, recording one `drops` row per host and contiguous sequence range.
    fn drop_unsynced(
        &mut self,
        before: Option<i64>,
        limit: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<u64> {
        let path = self.path().to_path_buf();
        let e = move |source| super::classify(&path, "dropping unsynced samples", source);
        let before = before.unwrap_or(i64::MAX);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        let victims: Vec<(i64, i64, i64)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT id, host_id, seq FROM samples WHERE sync_state = 0 AND received_at < ?1
                     ORDER BY id LIMIT ?2",
                )
                .map_err(&e)?;
            stmt.query_map(params![before, limit], |r| {
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
    fn update_warning(&mut self, config: &BufferConfig, now_ms: i64) -> Result<Option<String>> {
        let (unsynced, oldest) = self.unsynced_depth()?;
        let total = self.sample_count()?;
        let used = self.used_bytes()?;
        // Synced rows can be shed at no loss, so only the unsynced share counts.
        let unsynced_bytes = if total > 0 {
            used as f64 * unsynced as f64 / total as f64
        } else {
            0.0
        };
        let mut reasons = Vec::new();
        if unsynced_bytes >= WARN_AT * config.max_size as f64 {
            reasons.push(format!(
                "unsynced samples fill {:.0}% of buffer.max_size ({} bytes)",
                unsynced_bytes * 100.0 / config.max_size.max(1) as f64,
                config.max_size
            ));
        }
        if let Some(oldest) = oldest {
            let age = (now_ms - oldest).max(0) as f64;
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
        let previous = self.get_kv(WARNING_KEY)?.unwrap_or_default();
        match &warning {
            Some(text) => {
                if previous.is_empty() {
                    tracing::error!(unsynced, "{text}");
                }
                self.set_kv(WARNING_KEY, text)?;
            }
            None if !previous.is_empty() => self.set_kv(WARNING_KEY, "")?,
            None => {}
        }
        Ok(warning)
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

    use super::*;
    use crate::buffer::now_ms;
    use crate::collect::outcome::HostOutcome;

    const HOUR: i64 = 3_600_000;

    fn config(max_size: u64) -> BufferConfig {
        BufferConfig {
            path: "unused".into(),
            max_size,
            max_unsynced_age: Duration::from_secs(10 * 3600),
            keep_synced: Duration::from_secs(3600),
        }
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
        }
    }

    fn sync_all(buffer: &mut Buffer) {
        let ids: Vec<i64> = buffer
            .unsynced_samples(usize::MAX >> 1)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        buffer.mark_samples_synced(&ids, now_ms()).unwrap();
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
        let status = buffer.status().unwrap();
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
        assert_eq!(buffer.status().unwrap().unsynced, 2);
        assert_eq!(buffer.status().unwrap().dropped, 6);
        // The drop records are themselves queued for the central database.
        let queued = buffer
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
        let status = buffer.status().unwrap();
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
        assert_eq!(buffer.get_kv(WARNING_KEY).unwrap(), Some(warning));
        assert_eq!(report.unsynced_dropped, 0);
        sync_all(&mut buffer);
        let report = buffer
            .enforce_retention(&config(u64::MAX), now_ms())
            .unwrap();
        assert_eq!(report.warning, None);
        assert_eq!(buffer.get_kv(WARNING_KEY).unwrap().as_deref(), Some(""));
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
