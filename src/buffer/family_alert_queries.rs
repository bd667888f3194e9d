//! The SQL behind the alert rules of the metric families (migration 6): the filling-up
//! prediction's least-squares buckets and the previous values of counters, read once
//! per host in the round's snapshot and written by the round's alert plan, in the
//! round's transaction. What the numbers mean is `alert::families`' business.

use rusqlite::params;

use super::{Result, RoundTx};

/// One `fill_buckets` row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FillBucketRow {
    /// Mount point.
    pub mount: String,
    /// Bucket start, Unix ms.
    pub start: i64,
    /// Samples.
    pub n: f64,
    /// Σu (seconds after `start`).
    pub su: f64,
    /// Σy (available bytes).
    pub sy: f64,
    /// Σu².
    pub suu: f64,
    /// Σuy.
    pub suy: f64,
}

impl RoundTx<'_> {
    /// The host's filling-up buckets, by mount and start.
    pub fn fill_buckets(&self, host_id: i64) -> Result<Vec<FillBucketRow>> {
        let e = self.err("loading fill buckets");
        let mut stmt = self
            .tx()
            .prepare_cached(
                "SELECT mount, start, n, su, sy, suu, suy FROM fill_buckets
                 WHERE host_id = ?1 ORDER BY mount, start",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map([host_id], |r| {
                Ok(FillBucketRow {
                    mount: r.get(0)?,
                    start: r.get(1)?,
                    n: r.get(2)?,
                    su: r.get(3)?,
                    sy: r.get(4)?,
                    suu: r.get(5)?,
                    suy: r.get(6)?,
                })
            })
            .map_err(&e)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&e)
    }

    /// Inserts or replaces one bucket.
    pub fn save_fill_bucket(&self, host_id: i64, b: &FillBucketRow) -> Result<()> {
        self.tx()
            .prepare_cached(
                "INSERT OR REPLACE INTO fill_buckets (host_id, mount, start, n, su, sy, suu, suy)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    host_id, b.mount, b.start, b.n, b.su, b.sy, b.suu, b.suy
                ])
            })
            .map(drop)
            .map_err(self.err("saving a fill bucket"))
    }

    /// Deletes the host's buckets that start before `before` (Unix ms).
    pub fn prune_fill_buckets(&self, host_id: i64, before: i64) -> Result<()> {
        self.tx()
            .prepare_cached("DELETE FROM fill_buckets WHERE host_id = ?1 AND start < ?2")
            .and_then(|mut s| s.execute(params![host_id, before]))
            .map(drop)
            .map_err(self.err("pruning fill buckets"))
    }

    /// The host's stored counters: series and value.
    pub fn alert_counters(&self, host_id: i64) -> Result<Vec<(String, f64)>> {
        let e = self.err("loading alert counters");
        let mut stmt = self
            .tx()
            .prepare_cached("SELECT series, value FROM alert_counters WHERE host_id = ?1")
            .map_err(&e)?;
        let rows = stmt
            .query_map([host_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&e)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&e)
    }

    /// Stores a counter's value.
    pub fn save_alert_counter(&self, host_id: i64, series: &str, value: f64) -> Result<()> {
        self.tx()
            .prepare_cached(
                "INSERT INTO alert_counters (host_id, series, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (host_id, series) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute(params![host_id, series, value]))
            .map(drop)
            .map_err(self.err("saving an alert counter"))
    }

    /// Forgets a counter.
    pub fn delete_alert_counter(&self, host_id: i64, series: &str) -> Result<()> {
        self.tx()
            .prepare_cached("DELETE FROM alert_counters WHERE host_id = ?1 AND series = ?2")
            .and_then(|mut s| s.execute(params![host_id, series]))
            .map(drop)
            .map_err(self.err("deleting an alert counter"))
    }

    /// Deletes an alert state row (a family alert whose member is gone and whose state is
    /// back to nothing), so members that come and go leave no rows behind.
    pub fn delete_alert_state(&self, host_id: i64, rule: &str) -> Result<()> {
        self.tx()
            .prepare_cached("DELETE FROM alert_state WHERE host_id = ?1 AND rule = ?2")
            .and_then(|mut s| s.execute(params![host_id, rule]))
            .map(drop)
            .map_err(self.err("deleting alert state"))
    }
}
