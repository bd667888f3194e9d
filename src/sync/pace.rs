//! Pacing of the backfill: the batch size adapts to commit latency (AIMD) and an optional
//! rate cap (`sync.rate_limit`) spaces batches out. Pure logic; the sync loop feeds it the
//! latency of each COMMIT and sleeps for the delays it returns.
//!
//! AIMD, as TCP's congestion window: while commits are fast (below [`Aimd::target`]) the
//! batch grows by a fixed step (additive increase); a slow commit halves it, a failed one
//! quarters it (multiplicative decrease), never below [`Aimd::min`] nor above `sync.batch_size`
//! (the maximum; no key of its own). A server that recovers from an outage thus sees small
//! batches first and more only while it keeps up, instead of `sync.batch_size` rows at once.

use std::time::Duration;

/// The adaptive batch size of the backfill.
#[derive(Debug, Clone)]
pub struct Aimd {
    batch: usize,
    min: usize,
    max: usize,
    step: usize,
    target: Duration,
}

impl Aimd {
    /// A pace between a small floor and `max` rows (`sync.batch_size`), starting at an eighth
    /// of `max`; a commit is slow when it takes longer than `target`.
    pub fn new(max: usize, target: Duration) -> Aimd {
        let max = max.max(1);
        let min = (max / 50).max(1);
        Aimd {
            batch: (max / 8).max(min),
            min,
            max,
            step: (max / 16).max(1),
            target,
        }
    }

    /// The commit latency above which a commit counts as slow: a tenth of `sync.timeout`,
    /// between 250 ms and 5 s.
    pub fn target_for(timeout: Duration) -> Duration {
        (timeout / 10).clamp(Duration::from_millis(250), Duration::from_secs(5))
    }

    /// Rows in the next backfill batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The smallest batch.
    pub fn min(&self) -> usize {
        self.min
    }

    /// The latency that separates a fast commit from a slow one.
    pub fn target(&self) -> Duration {
        self.target
    }

    /// A batch committed after `latency`: grow by one step when fast, halve when slow.
    pub fn committed(&mut self, latency: Duration) {
        self.batch = if latency <= self.target {
            (self.batch + self.step).min(self.max)
        } else {
            (self.batch / 2).max(self.min)
        };
    }

    /// A batch failed (connection lost, server error): quarter the batch.
    pub fn failed(&mut self) {
        self.batch = (self.batch / 4).max(self.min);
    }
}

/// What `sync.rate_limit` caps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateLimit {
    /// No cap (the default).
    Off,
    /// Samples per second.
    Rows(f64),
    /// Bytes of sample payload per second (the values as sent, estimated per row).
    Bytes(f64),
}

impl RateLimit {
    /// Parses `"off"`, `"2000 rows/s"` or a size per second such as `"256KiB/s"`.
    pub fn parse(text: &str) -> Result<RateLimit, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("off") || t.is_empty() {
            return Ok(RateLimit::Off);
        }
        let Some(per) = t.strip_suffix("/s") else {
            return Err(format!(
                "{text:?}: expected \"off\", rows per second (\"2000 rows/s\") or bytes per second (\"256KiB/s\")"
            ));
        };
        let per = per.trim();
        if let Some(rows) = per.strip_suffix("rows").or_else(|| per.strip_suffix("row")) {
            return match rows.trim().parse::<f64>() {
                Ok(n) if n.is_finite() && n >= 1.0 => Ok(RateLimit::Rows(n)),
                _ => Err(format!(
                    "{text:?}: the row rate must be a number of at least 1 (\"2000 rows/s\")"
                )),
            };
        }
        match crate::config::units::parse_size(per) {
            Ok(bytes) if bytes >= 1024 => Ok(RateLimit::Bytes(bytes as f64)),
            Ok(_) => Err(format!(
                "{text:?}: a byte rate below 1KiB/s is too small to send one batch"
            )),
            Err(err) => Err(format!("{text:?}: {err}")),
        }
    }

    /// The most rows one batch may hold under the cap, one second's worth (at least one),
    /// given the estimated bytes of a row.
    pub fn batch_cap(self, row_bytes: usize) -> usize {
        match self {
            RateLimit::Off => usize::MAX,
            RateLimit::Rows(n) => (n as usize).max(1),
            RateLimit::Bytes(b) => ((b / row_bytes.max(1) as f64) as usize).max(1),
        }
    }

    /// How long to wait before the next batch, after `rows` rows of `bytes` bytes were sent
    /// since the drain began `elapsed` ago, so the average stays at or under the cap.
    pub fn delay(self, rows: u64, bytes: u64, elapsed: Duration) -> Duration {
        let due = match self {
            RateLimit::Off => return Duration::ZERO,
            RateLimit::Rows(n) => rows as f64 / n,
            RateLimit::Bytes(b) => bytes as f64 / b,
        };
        Duration::from_secs_f64(due).saturating_sub(elapsed)
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RateLimit::Off => write!(f, "off"),
            RateLimit::Rows(n) => write!(f, "{n} rows/s"),
            RateLimit::Bytes(b) => write!(f, "{b} bytes/s"),
        }
    }
}

/// Rows per second over a drain, smoothed, and the time left at that rate.
#[derive(Debug, Clone, Copy, Default)]
pub struct DrainRate {
    rows_per_s: Option<f64>,
}

impl DrainRate {
    /// Adds one batch of `rows` that took `took` (exponentially weighted, 1/4 per batch).
    pub fn add(&mut self, rows: usize, took: Duration) {
        let secs = took.as_secs_f64().max(1e-3);
        let rate = rows as f64 / secs;
        self.rows_per_s = Some(match self.rows_per_s {
            None => rate,
            Some(old) => old * 0.75 + rate * 0.25,
        });
    }

    /// The smoothed rate, rows per second.
    pub fn rows_per_s(&self) -> Option<f64> {
        self.rows_per_s
    }

    /// Time to send `remaining` rows at this rate.
    pub fn eta(&self, remaining: u64) -> Option<Duration> {
        eta(self.rows_per_s?, remaining)
    }
}

/// Time to send `remaining` rows at `rows_per_s`; `None` for a rate of zero.
pub fn eta(rows_per_s: f64, remaining: u64) -> Option<Duration> {
    (rows_per_s > 0.0 && rows_per_s.is_finite())
        .then(|| Duration::from_secs_f64(remaining as f64 / rows_per_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn fast_commits_grow_the_batch_by_steps_up_to_the_maximum() {
        let mut pace = Aimd::new(800, 300 * MS);
        assert_eq!(pace.batch(), 100);
        pace.committed(20 * MS);
        assert_eq!(pace.batch(), 150);
        for _ in 0..100 {
            pace.committed(20 * MS);
        }
        assert_eq!(pace.batch(), 800, "never above sync.batch_size");
    }

    #[test]
    fn a_slow_commit_halves_and_a_failure_quarters_never_below_the_floor() {
        let mut pace = Aimd::new(1000, 300 * MS);
        for _ in 0..100 {
            pace.committed(MS);
        }
        assert_eq!(pace.batch(), 1000);
        pace.committed(301 * MS);
        assert_eq!(pace.batch(), 500);
        pace.failed();
        assert_eq!(pace.batch(), 125);
        for _ in 0..20 {
            pace.committed(2000 * MS);
        }
        assert_eq!(pace.batch(), pace.min());
        assert_eq!(pace.min(), 20);
    }

    #[test]
    fn a_server_slow_beyond_a_size_settles_around_it() {
        // A fake server: a commit takes 1 ms per row; slow above the 300 ms target, i.e. above 300 rows.
        let mut pace = Aimd::new(2000, 300 * MS);
        let mut seen = Vec::new();
        for _ in 0..200 {
            let rows = pace.batch();
            seen.push(rows);
            pace.committed(rows as u32 * MS);
        }
        let tail = &seen[100..];
        assert!(tail.iter().all(|&b| b <= 300 + 125), "{tail:?}");
        assert!(tail.iter().any(|&b| b >= 250), "{tail:?}");
        // The sawtooth: never flattened to the floor by one slow commit.
        assert!(tail.iter().all(|&b| b >= 150 / 2), "{tail:?}");
    }

    #[test]
    fn a_batch_size_of_one_stays_one() {
        let mut pace = Aimd::new(1, 300 * MS);
        pace.committed(MS);
        assert_eq!(pace.batch(), 1);
        pace.failed();
        assert_eq!(pace.batch(), 1);
    }

    #[test]
    fn the_target_follows_the_timeout_within_bounds() {
        assert_eq!(Aimd::target_for(Duration::from_secs(30)), 3000 * MS);
        assert_eq!(Aimd::target_for(Duration::from_secs(1)), 250 * MS);
        assert_eq!(Aimd::target_for(Duration::from_secs(600)), 5000 * MS);
    }

    #[test]
    fn rate_limits_parse_rows_and_bytes_and_refuse_garbage() {
        assert_eq!(RateLimit::parse("off"), Ok(RateLimit::Off));
        assert_eq!(RateLimit::parse("2000 rows/s"), Ok(RateLimit::Rows(2000.0)));
        assert_eq!(RateLimit::parse("1 row/s"), Ok(RateLimit::Rows(1.0)));
        assert_eq!(
            RateLimit::parse("256KiB/s"),
            Ok(RateLimit::Bytes(262_144.0))
        );
        assert_eq!(
            RateLimit::parse("1MiB/s"),
            Ok(RateLimit::Bytes(1_048_576.0))
        );
        for bad in [
            "2000",
            "0 rows/s",
            "x rows/s",
            "12/s",
            "lots/s",
            "-5 rows/s",
            "100B/s",
        ] {
            assert!(RateLimit::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_cap_bounds_the_batch_and_spaces_batches() {
        assert_eq!(RateLimit::Off.batch_cap(100), usize::MAX);
        assert_eq!(RateLimit::Rows(50.0).batch_cap(100), 50);
        assert_eq!(RateLimit::Bytes(10_240.0).batch_cap(100), 102);
        assert_eq!(RateLimit::Bytes(1024.0).batch_cap(4096), 1);
        let cap = RateLimit::Rows(100.0);
        // 300 rows after 1 s: 2 s to wait; after 4 s: none.
        assert_eq!(
            cap.delay(300, 0, Duration::from_secs(1)),
            Duration::from_secs(2)
        );
        assert_eq!(cap.delay(300, 0, Duration::from_secs(4)), Duration::ZERO);
        let cap = RateLimit::Bytes(1000.0);
        assert_eq!(
            cap.delay(1, 5000, Duration::from_secs(1)),
            Duration::from_secs(4)
        );
        assert_eq!(
            RateLimit::Off.delay(u64::MAX, u64::MAX, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn a_drain_simulated_under_a_cap_keeps_its_average() {
        // Batches as the loop sends them, on a fake clock: each commit takes 10 ms, then the loop
        // waits for the delay. The average rate never exceeds the cap by more than one batch.
        let cap = RateLimit::Rows(200.0);
        let batch = cap.batch_cap(100).min(500);
        let (mut rows, mut clock) = (0u64, Duration::ZERO);
        for _ in 0..50 {
            rows += batch as u64;
            clock += 10 * MS;
            clock += cap.delay(rows, 0, clock);
            assert!(rows as f64 / clock.as_secs_f64() <= 200.0 + 1e-6);
        }
        assert!(rows as f64 / clock.as_secs_f64() >= 190.0);
    }

    #[test]
    fn the_rate_is_smoothed_and_gives_an_eta() {
        let mut rate = DrainRate::default();
        assert_eq!(rate.eta(10), None);
        rate.add(1000, Duration::from_secs(1));
        assert_eq!(rate.rows_per_s(), Some(1000.0));
        assert_eq!(rate.eta(5000), Some(Duration::from_secs(5)));
        rate.add(200, Duration::from_secs(1));
        assert_eq!(rate.rows_per_s(), Some(800.0));
        assert_eq!(eta(0.0, 10), None);
    }
}
