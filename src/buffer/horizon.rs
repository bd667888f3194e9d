//! Time-to-first-loss: how long, from now, until retention would have to shed
//! an unsynced sample if nothing synced from now on.
//!
//! Three bounds, the first reached wins: `max_unsynced_age` (the oldest
//! unsynced sample, or a new one, ages out), `max_size` (unsynced samples
//! alone fill the buffer: synced ones are shed first) and `min_free` (the
//! filesystem's free space, plus what shedding synced samples gives back,
//! runs down to `min_free`). Growth is the round's samples per second times
//! the bytes a sample takes in this buffer (its used pages over its samples).
//! The round writer computes it each round and keeps it in the kv table
//! ([`TTFL_KEY`]), where `status`, the metrics and the status page read it.

use super::{Result, Round};
use crate::config::BufferConfig;

/// kv key of the last computed time-to-first-loss, seconds.
pub const TTFL_KEY: &str = super::state::key::TIME_TO_FIRST_LOSS;

/// Fewest samples before bytes per sample is estimated (an empty file is all overhead).
const MIN_SAMPLES: i64 = 100;

/// What the estimate reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HorizonInput {
    /// Now, Unix ms.
    pub now: i64,
    /// Bytes in use by the database (pages minus free pages).
    pub used_bytes: u64,
    /// Samples held.
    pub samples: i64,
    /// Samples not yet synced.
    pub unsynced: i64,
    /// Receive time of the oldest unsynced sample.
    pub oldest_unsynced_at: Option<i64>,
    /// Samples stored per second (this round's samples over the round interval).
    pub samples_per_s: f64,
    /// `buffer.max_size`.
    pub max_size: u64,
    /// `buffer.max_unsynced_age`, ms.
    pub max_unsynced_age_ms: i64,
    /// Free space of the filesystem, when known.
    pub avail: Option<u64>,
    /// `buffer.min_free` in bytes.
    pub min_free: u64,
}

/// Seconds until the first unsynced sample would be shed (0: already at a bound).
pub fn time_to_first_loss(i: &HorizonInput) -> i64 {
    let oldest = i.oldest_unsynced_at.unwrap_or(i.now);
    let mut seconds = ((oldest + i.max_unsynced_age_ms - i.now) / 1000).max(0);
    if i.samples >= MIN_SAMPLES && i.samples_per_s > 0.0 {
        let per_sample = i.used_bytes as f64 / i.samples as f64;
        let growth = per_sample * i.samples_per_s;
        let unsynced = per_sample * i.unsynced.max(0) as f64;
        let synced = per_sample * (i.samples - i.unsynced).max(0) as f64;
        let size_room = (i.max_size as f64 - unsynced).max(0.0);
        seconds = seconds.min((size_room / growth) as i64);
        if let Some(avail) = i.avail {
            let disk_room = (avail as f64 + synced - i.min_free as f64).max(0.0);
            seconds = seconds.min((disk_room / growth) as i64);
        }
    }
    seconds
}

impl Round<'_> {
    /// Computes time-to-first-loss after this round's samples and stores it in the kv table;
    /// `samples_per_s` is this round's stored samples over the collection interval.
    pub fn store_loss_horizon(
        &mut self,
        config: &BufferConfig,
        samples_per_s: f64,
        now: i64,
    ) -> Result<i64> {
        let tx = self.tx();
        let e = tx.err("estimating time-to-first-loss");
        let page: i64 = tx
            .tx()
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(&e)?;
        let pages: i64 = tx
            .tx()
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(&e)?;
        let free: i64 = tx
            .tx()
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .map_err(&e)?;
        let (samples, unsynced, oldest_unsynced_at): (i64, i64, Option<i64>) = tx
            .tx()
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(sync_state = 0), 0),
                        MIN(CASE WHEN sync_state = 0 THEN received_at END) FROM samples",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(&e)?;
        let space = self.disk_space();
        let input = HorizonInput {
            now,
            used_bytes: ((pages - free).max(0) * page) as u64,
            samples,
            unsynced,
            oldest_unsynced_at,
            samples_per_s,
            max_size: config.max_size,
            max_unsynced_age_ms: config.max_unsynced_age.as_millis() as i64,
            avail: space.map(|s| s.avail),
            min_free: space.map_or(0, |s| config.min_free.bytes(s.total)),
        };
        let seconds = time_to_first_loss(&input);
        self.tx().kv_set(TTFL_KEY, Some(&seconds.to_string()))?;
        Ok(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;
    const DAY_MS: i64 = 86_400_000;

    fn input() -> HorizonInput {
        HorizonInput {
            now: NOW,
            used_bytes: 1000 * 1000,
            samples: 1000,
            unsynced: 0,
            oldest_unsynced_at: None,
            samples_per_s: 1.0,
            max_size: 1 << 40,
            max_unsynced_age_ms: 30 * DAY_MS,
            avail: None,
            min_free: 0,
        }
    }

    #[test]
    fn each_bound_can_be_the_first() {
        let cases: [(&str, HorizonInput, i64); 6] = [
            ("age, nothing unsynced", input(), 30 * 86_400),
            (
                "age of the oldest unsynced sample",
                HorizonInput {
                    unsynced: 10,
                    oldest_unsynced_at: Some(NOW - 29 * DAY_MS),
                    ..input()
                },
                86_400,
            ),
            (
                // 1000 bytes per sample, 1 sample/s: 1 MB of room is 1000 s.
                "max_size counts unsynced samples only",
                HorizonInput {
                    max_size: 2_000_000,
                    unsynced: 1000,
                    oldest_unsynced_at: Some(NOW),
                    ..input()
                },
                1000,
            ),
            (
                "min_free, with synced samples to shed first",
                HorizonInput {
                    avail: Some(600_000),
                    min_free: 500_000,
                    ..input()
                },
                1100,
            ),
            (
                "past a bound",
                HorizonInput {
                    avail: Some(100),
                    min_free: 500_000_000,
                    ..input()
                },
                0,
            ),
            (
                "too few samples to know their size: age only",
                HorizonInput {
                    samples: 5,
                    avail: Some(100),
                    min_free: 500_000_000,
                    ..input()
                },
                30 * 86_400,
            ),
        ];
        for (name, i, expected) in cases {
            assert_eq!(time_to_first_loss(&i), expected, "{name}");
        }
    }
}
