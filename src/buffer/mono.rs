//! The buffer's monotonic clock, and steps of the wall clock.
//!
//! Ages in the buffer (retention's `buffer.max_unsynced_age` and `buffer.keep_synced`, the
//! age warning) are measured on a clock that does not step: `CLOCK_BOOTTIME` plus an offset
//! kept in `kv` per boot. On the first open in a new boot the offset is chosen so that the
//! clock carries on from the newest sample's reading: time the appliance was off does not
//! count, so an age is never overstated and nothing is shed for a clock that jumped. Each
//! sample stores its reading (`samples.received_mono`) beside its wall time (`received_at`).
//!
//! Steps: `kv` keeps the wall clock's distance to the monotonic one. A change of more than
//! [`STEP_MS`] is a step (NTP fixing a board that booted in the past, an operator's `date`):
//! it is logged once, by whichever connection sees it first, and the unsynced samples
//! received since the previous step (or this boot's start) are flagged `clock_skewed`, since
//! their wall times were stamped under the clock the step corrected. They are kept and sent
//! like any other. Smaller changes (NTP slewing) re-base quietly.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::state::key;
use super::{Buffer, Result};
use crate::clock;

/// A change of the wall clock's distance to the monotonic clock beyond this is a step.
pub const STEP_MS: i64 = 2_000;
/// Below this a change is noise and nothing is written; between this and [`STEP_MS`], slewing.
const SLEW_MS: i64 = 250;

/// A step of the wall clock that [`Buffer::check_clock`] detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockStep {
    /// How far the wall clock moved, ms (negative: back).
    pub step_ms: i64,
    /// Unsynced samples flagged `clock_skewed` for it.
    pub flagged: u64,
}

fn kv_int(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT CAST(value AS INTEGER) FROM kv WHERE key = ?1",
        [key],
        |r| r.get(0),
    )
    .optional()
}

fn put(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map(|_| ())
}

/// The buffer's monotonic clock now, ms, as `conn` sees the offset of this boot.
pub(crate) fn now(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(clock::boot_ms() + kv_int(conn, key::CLOCK_OFFSET)?.unwrap_or(0))
}

/// At open: in a boot the buffer has not seen, sets the offset so that the monotonic clock
/// carries on from its newest reading. Writes only then; a failure (a full disk) is logged and
/// the clock runs on the previous offset, which can only understate ages.
pub(crate) fn start(conn: &mut Connection, path: &std::path::Path) {
    let boot = clock::boot_id().unwrap_or_default();
    let result = (|| -> rusqlite::Result<Option<i64>> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let stored: Option<String> = tx
            .query_row(
                "SELECT value FROM kv WHERE key = ?1",
                [key::CLOCK_BOOT_ID],
                |r| r.get(0),
            )
            .optional()?;
        if !boot.is_empty() && stored.as_deref() == Some(boot.as_str()) {
            return Ok(None);
        }
        let newest: Option<i64> = tx
            .query_row(
                "SELECT received_mono FROM samples ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let previous = kv_int(&tx, key::CLOCK_OFFSET)?.unwrap_or(0);
        let high = newest.unwrap_or(0).max(previous).max(0);
        let offset = high - clock::boot_ms();
        put(&tx, key::CLOCK_BOOT_ID, &boot)?;
        put(&tx, key::CLOCK_OFFSET, &offset.to_string())?;
        put(
            &tx,
            key::CLOCK_WALL_OFFSET,
            &(clock::now_ms() - high).to_string(),
        )?;
        put(&tx, key::CLOCK_SINCE, &high.to_string())?;
        tx.commit()?;
        Ok(Some(high))
    })();
    match result {
        Ok(Some(high)) => {
            tracing::debug!(buffer = %path.display(), mono_ms = high, "buffer clock started for this boot")
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(buffer = %path.display(), %error,
            "cannot record the buffer's monotonic clock for this boot; ages are understated until it can"),
    }
}

impl Buffer {
    /// The buffer's monotonic clock now, ms (see the module doc): what ages are measured on.
    pub fn mono_now(&self) -> Result<i64> {
        now(self.conn()).map_err(self.err("reading the buffer's clock"))
    }

    /// Compares the wall clock `wall_now` with the monotonic clock: after a step, logs it,
    /// flags the unsynced samples received since the previous step and re-bases. Called
    /// before each round and each retention pass.
    pub fn check_clock(&mut self, wall_now: i64) -> Result<Option<ClockStep>> {
        let (mono, base) = {
            let e = self.err("checking the wall clock");
            let mono = now(self.conn()).map_err(&e)?;
            (
                mono,
                kv_int(self.conn(), key::CLOCK_WALL_OFFSET).map_err(&e)?,
            )
        };
        let Some(base) = base else {
            return Ok(None);
        };
        if (wall_now - mono - base).abs() < SLEW_MS {
            return Ok(None);
        }
        let path = self.path().to_path_buf();
        let e = move |source| super::classify(&path, "recording a step of the wall clock", source);
        let tx = self
            .conn_mut()
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        // Again inside the write lock: another connection may have handled it meanwhile.
        let base = kv_int(&tx, key::CLOCK_WALL_OFFSET)
            .map_err(&e)?
            .unwrap_or(0);
        let step = wall_now - mono - base;
        if step.abs() < SLEW_MS {
            return Ok(None);
        }
        put(&tx, key::CLOCK_WALL_OFFSET, &(wall_now - mono).to_string()).map_err(&e)?;
        if step.abs() < STEP_MS {
            tx.commit().map_err(&e)?;
            return Ok(None);
        }
        let since = kv_int(&tx, key::CLOCK_SINCE).map_err(&e)?.unwrap_or(0);
        let flagged = tx
            .execute(
                "UPDATE samples SET clock_skewed = 1
                 WHERE sync_state = 0 AND clock_skewed = 0 AND received_mono >= ?1",
                [since],
            )
            .map_err(&e)? as u64;
        put(&tx, key::CLOCK_SINCE, &mono.to_string()).map_err(&e)?;
        tx.commit().map_err(&e)?;
        tracing::warn!(
            buffer = %self.path().display(),
            step_ms = step,
            step = %format_step(step),
            flagged,
            "the wall clock stepped; ages are measured on the boot clock, so nothing is shed for it; \
             unsynced samples received before the step are flagged clock_skewed"
        );
        Ok(Some(ClockStep {
            step_ms: step,
            flagged,
        }))
    }
}

/// `+3y 2months` / `-2h`: the step for a log line.
fn format_step(step_ms: i64) -> String {
    let sign = if step_ms < 0 { '-' } else { '+' };
    let secs = step_ms.unsigned_abs() / 1000;
    format!(
        "{sign}{}",
        humantime::format_duration(std::time::Duration::from_secs(secs))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_detected_once_flags_unsynced_samples_and_slewing_is_not_a_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        let mut other = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        let now = clock::now_ms();
        let outcomes: Vec<_> = ["a", "b"]
            .iter()
            .map(|h| crate::collect::outcome::HostOutcome {
                host: h.to_string(),
                address: format!("{h}:22"),
                started_at_ms: now,
                duration: std::time::Duration::ZERO,
                result: Ok(crate::buffer::tests::report(5.0, now)),
            })
            .collect();
        buffer
            .record_round(
                &outcomes,
                std::time::Duration::from_secs(300),
                |_, _| Ok(()),
            )
            .unwrap();
        assert_eq!(buffer.check_clock(now).unwrap(), None);
        assert_eq!(buffer.check_clock(now + 1_000).unwrap(), None, "slewing");
        let year = 365 * 86_400_000;
        let step = buffer.check_clock(now + year).unwrap().unwrap();
        assert_eq!(step.flagged, 2);
        assert!((step.step_ms - year).abs() < 2_000, "{step:?}");
        assert_eq!(other.check_clock(now + year).unwrap(), None, "logged once");
        let back = other.check_clock(now - 3_600_000).unwrap().unwrap();
        assert_eq!(back.flagged, 0, "nothing new since the last step");
        assert!(buffer.mono_now().unwrap() >= 0);
    }
}
