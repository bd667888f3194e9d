//! Central retention: `edgemon central prune --older-than 90d` and the daemon's daily pass
//! (`central.retention`).
//!
//! Batched deletes along the primary keys, never a scan by time: per (appliance, epoch, host)
//! series, the oldest samples are read in `seq` order, a batch at a time, and the run of them
//! received (the appliance's clock, `received_at`, which grows with `seq`) before the cutoff
//! is deleted with its per-core values in one small transaction (at most `--batch` rows, per-core
//! values included: Galera certifies a transaction's whole write set). The same transaction
//! raises the series' prune horizon (`watermarks.pruned_through_seq`, `samples_pruned`), so the
//! `completeness` and `sequence_gaps` views count everything up to it as explained, and the
//! appliance's sync never sends those rows again (`requeue_missing` reads [`horizons`]). The
//! series stops at its first sample newer than the cutoff, unless that sample is stamped in the
//! future (more than [`FUTURE_SLACK_MIN`] minutes past the server's clock: the appliance's
//! clock was ahead and stepped back): such a row was received before every row after it, so
//! it goes when an older-than-cutoff row follows it (read ahead up to [`LOOKAHEAD_MAX`] rows),
//! and a step back never stalls the series. Journals (collection errors, alert
//! events) go the same way along (appliance, epoch, local_id), recording their horizon in
//! `prune_horizons`; a drop record is deleted only once its whole sequence range is below its
//! host's horizon, so no gap it explains is left unexplained.
//!
//! Each batch commits on its own: Ctrl-C ends the run after the batch in flight, and running
//! again resumes where it stopped (there is no other state than the rows). Deadlocks and lock
//! waits (a certification conflict on Galera) retry the batch. The cutoff is the server's
//! clock minus the age. A late sample older than the cutoff that the appliance sends after a
//! long outage is inserted like any other (sync knows nothing of retention, so nothing is
//! marked synced that MySQL does not hold); the next prune deletes it.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use mysql::TxOpts;
use mysql::prelude::Queryable;

use super::central::{Central, Error, classify, conflict_pause, is_conflict};
use crate::config::secret::Secret;
use crate::config::{Config, SyncConfig};

/// Rows per transaction unless told otherwise (samples and their per-core values together).
pub const DEFAULT_BATCH_ROWS: usize = 10_000;

/// The shortest age prune accepts: anything younger is live data (the key table's bound of
/// `central.retention`).
pub const MIN_AGE: Duration = crate::config::PRUNE_MIN_AGE;

/// Rows read by the first batch of a series or journal (see `samples_of`).
const FIRST_READ: usize = 128;

/// A sample stamped this many minutes past the server's clock was stamped under a clock that
/// was ahead; its time says nothing about its age.
pub const FUTURE_SLACK_MIN: i64 = 10;
/// The most rows a series is read ahead past samples stamped in the future.
pub const LOOKAHEAD_MAX: usize = 100_000;

/// Attempts of a batch that keeps losing conflicts (deadlock, also a Galera certification
/// conflict, or lock wait timeout: `central::is_conflict`).
const ATTEMPTS: u32 = 5;

/// The journal tables, in the order they are pruned (drops last: they follow the samples).
const JOURNALS: [&str; 3] = ["collection_errors", "alert_events", "drops"];

/// The central servers prune may use: the nodes of `sync.urls`, tried in order.
pub fn central_urls(sync: &SyncConfig) -> &[Secret] {
    &sync.urls
}

/// The first server of `urls` that accepts a maintenance session; an unreachable or not-ready
/// one is logged and the next tried; any other error ends the search.
fn connect_first(
    urls: &[Secret],
    timeout: Duration,
    appliance: &str,
) -> Result<(Central, Option<u32>), Error> {
    let mut last = None;
    for url in urls {
        match Central::connect_maintenance(url, timeout, appliance) {
            Ok(found) => return Ok(found),
            Err(err) if err.is_unavailable() => {
                tracing::warn!(error = %err, "central server unavailable for prune; trying the next one listed");
                last = Some(err);
            }
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| Error::Url("no sync URL configured".into())))
}

/// What to prune and how.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Rows received longer ago than this (by the server's clock) are deleted.
    pub older_than: Duration,
    /// Most rows deleted per transaction.
    pub batch_rows: usize,
    /// Count only; change nothing.
    pub dry_run: bool,
    /// Every appliance's rows, not only this appliance's.
    pub all_appliances: bool,
}

/// What a prune did (or, dry, would do).
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// `host:port/database`.
    pub server: String,
    /// The cutoff, UTC, as the server computed it.
    pub cutoff: String,
    /// Nothing was changed.
    pub dry_run: bool,
    /// (appliance, epoch, host) series looked at.
    pub series: u64,
    /// Series done so far.
    pub series_done: u64,
    /// Samples deleted.
    pub samples: u64,
    /// Per-core values deleted with them.
    pub cores: u64,
    /// Metric family rows (`sample_sections`, `sample_<family>`) deleted with them.
    pub family_rows: u64,
    /// Collection errors deleted.
    pub collection_errors: u64,
    /// Alert events deleted.
    pub alert_events: u64,
    /// Drop records deleted.
    pub drops: u64,
    /// Transactions committed.
    pub transactions: u64,
    /// Most rows one transaction deleted.
    pub largest_transaction: u64,
    /// Longest transaction, from its first statement to its COMMIT.
    pub longest_transaction: Duration,
    /// A signal ended the run after the batch in flight.
    pub stopped: bool,
    /// Wall time.
    pub elapsed: Duration,
}

impl PruneReport {
    /// Every row deleted.
    pub fn rows(&self) -> u64 {
        self.samples
            + self.cores
            + self.family_rows
            + self.collection_errors
            + self.alert_events
            + self.drops
    }
}

/// The prune horizons of one appliance and epoch, for the sync's re-queue.
#[derive(Debug, Clone, Default)]
pub struct Horizons {
    /// Per host name (trailing spaces removed), the newest seq pruned.
    pub samples: HashMap<String, i64>,
    /// Per journal table, the newest local id pruned.
    pub journals: HashMap<String, i64>,
}

/// The prune horizons of the appliance and epoch `central` writes under: rows at or below them
/// are gone on purpose and must not be sent again.
pub fn horizons(central: &mut Central) -> Result<Horizons, Error> {
    let (appliance, epoch) = central.identity();
    let server = central.server().to_string();
    let e = |err| classify(&server, err);
    let samples: Vec<(String, i64)> = central
        .conn()
        .query(format!(
            "SELECT CAST(h.name AS CHAR), w.pruned_through_seq FROM watermarks w JOIN hosts h ON h.id = w.host_id
             WHERE w.appliance_id = {appliance} AND w.epoch = {epoch} AND w.pruned_through_seq > 0"
        ))
        .map_err(e)?;
    let journals: Vec<(String, i64)> = central
        .conn()
        .query(format!(
            "SELECT CAST(table_name AS CHAR), pruned_through_id FROM prune_horizons
             WHERE appliance_id = {appliance} AND epoch = {epoch}"
        ))
        .map_err(e)?;
    Ok(Horizons {
        samples: samples
            .into_iter()
            .map(|(name, seq)| (name.trim_end_matches(' ').to_string(), seq))
            .collect(),
        journals: journals.into_iter().collect(),
    })
}

/// Connects to the first of `urls` that is reachable and ready (the nodes of one cluster, in
/// order) and prunes: this appliance's rows (`appliance`, as `appliance.id` resolves), or every
/// appliance's. Calls `progress` after each batch.
pub fn prune(
    urls: &[Secret],
    timeout: Duration,
    appliance: &str,
    options: &PruneOptions,
    stop: &AtomicBool,
    progress: &mut dyn FnMut(&PruneReport),
) -> Result<PruneReport, Error> {
    let started = Instant::now();
    let (mut central, id) = connect_first(urls, timeout, appliance)?;
    let mut pruner = Pruner {
        server: central.server().to_string(),
        report: PruneReport {
            server: central.server().to_string(),
            dry_run: options.dry_run,
            ..PruneReport::default()
        },
        central: &mut central,
        options,
        scope: if options.all_appliances {
            String::new()
        } else {
            // An appliance that never synced here has nothing to prune: id 0 matches no row.
            format!(" AND appliance_id = {}", id.unwrap_or(0))
        },
        per_sample: 9.0,
        horizons: HashMap::new(),
    };
    let result = pruner.run(stop, progress);
    let mut report = pruner.report;
    report.elapsed = started.elapsed();
    result.map(|()| report)
}

struct Pruner<'a> {
    central: &'a mut Central,
    server: String,
    options: &'a PruneOptions,
    /// ` AND appliance_id = N`, or empty for every appliance.
    scope: String,
    report: PruneReport,
    /// Rows per sample (the sample, its per-core values and family rows) seen so far, to size
    /// batches.
    per_sample: f64,
    /// Each series' horizon as this run leaves it (also in a dry run, for the drops' count).
    horizons: HashMap<(u32, i64, u32), i64>,
}

impl Pruner<'_> {
    fn run(
        &mut self,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(&PruneReport),
    ) -> Result<(), Error> {
        let micros = self.options.older_than.as_micros().min(i64::MAX as u128) as i64;
        let cutoff: Option<String> = self.query_first(format!(
            "SELECT CAST(UTC_TIMESTAMP(3) - INTERVAL {micros} MICROSECOND AS CHAR)"
        ))?;
        self.report.cutoff = cutoff.unwrap_or_default();
        let series: Vec<(u32, i64, u32, i64)> = self.query(format!(
            "SELECT appliance_id, epoch, host_id, pruned_through_seq FROM watermarks WHERE 1 = 1{}
             ORDER BY appliance_id, epoch, host_id",
            self.scope
        ))?;
        let buffers: Vec<(u32, i64)> = self.query(format!(
            "SELECT appliance_id, epoch FROM buffers WHERE 1 = 1{} ORDER BY appliance_id, epoch",
            self.scope
        ))?;
        self.report.series = series.len() as u64;
        for &(appliance, epoch, host, horizon) in &series {
            self.horizons.insert((appliance, epoch, host), horizon);
        }
        for (appliance, epoch, host, _) in series {
            if !self.samples_of(appliance, epoch, host, stop, progress)? {
                return Ok(());
            }
            self.report.series_done += 1;
            progress(&self.report);
        }
        for table in JOURNALS {
            for &(appliance, epoch) in &buffers {
                if !self.journal_of(table, appliance, epoch, stop, progress)? {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Prunes one series; false when `stop` ended the run.
    fn samples_of(
        &mut self,
        appliance: u32,
        epoch: i64,
        host: u32,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(&PruneReport),
    ) -> Result<bool, Error> {
        let cutoff = self.report.cutoff.clone();
        let key = format!("appliance_id = {appliance} AND epoch = {epoch} AND host_id = {host}");
        let mut after = i64::MIN;
        // The first read of a series is short: most series have nothing old (a daily run
        // deletes one day of each), and the first row tells.
        let mut first = true;
        loop {
            if stop.load(Ordering::Relaxed) {
                self.report.stopped = true;
                return Ok(false);
            }
            let budget = self.options.batch_rows.max(1);
            let mut want = ((budget as f64 / self.per_sample).floor() as usize).clamp(1, budget);
            if std::mem::take(&mut first) {
                want = want.min(FIRST_READ);
            }
            // Until one sample was deleted, how many rows one takes with it (cores, family
            // members) is unknown: the first transaction of a run deletes one sample.
            if self.report.samples == 0 {
                want = 1;
            }
            // 1: older than the cutoff; 2: stamped in the future; 0: newer.
            let mut read = want;
            let (rows, end, newer_at) = loop {
                let rows: Vec<(i64, u8)> = self.query(format!(
                    "SELECT seq, CASE WHEN received_at < '{cutoff}' THEN 1
                                      WHEN received_at > UTC_TIMESTAMP(3) + INTERVAL {FUTURE_SLACK_MIN} MINUTE THEN 2
                                      ELSE 0 END
                     FROM samples WHERE {key} AND seq > {after} ORDER BY seq LIMIT {read}"
                ))?;
                let newer_at = rows.iter().position(|(_, s)| *s == 0).unwrap_or(rows.len());
                // Up to the last old row before the first newer one: future rows before it go.
                let end = rows[..newer_at]
                    .iter()
                    .rposition(|(_, s)| *s == 1)
                    .map_or(0, |i| i + 1);
                let only_future = end == 0 && newer_at == rows.len() && !rows.is_empty();
                if only_future && rows.len() == read && read < LOOKAHEAD_MAX {
                    read = (read * 4).min(LOOKAHEAD_MAX);
                    continue;
                }
                break (rows, end, newer_at);
            };
            let take = end.min(want);
            let old: Vec<i64> = rows[..take].iter().map(|(seq, _)| *seq).collect();
            let last = take == end && (newer_at < rows.len() || rows.len() < read);
            let (Some(&lo), Some(&hi)) = (old.first(), old.last()) else {
                return Ok(true);
            };
            let list = join(&old);
            let (samples, cores, family_rows) = if self.options.dry_run {
                let cores: Option<i64> = self.query_first(format!(
                    "SELECT COUNT(*) FROM sample_cores WHERE {key} AND seq BETWEEN {lo} AND {hi}"
                ))?;
                let mut count = String::from("SELECT 0");
                for table in super::families::tables() {
                    count.push_str(&format!(
                        " + (SELECT COUNT(*) FROM {table} WHERE {key} AND seq BETWEEN {lo} AND {hi})"
                    ));
                }
                let family_rows: Option<i64> = self.query_first(count)?;
                (
                    old.len() as u64,
                    cores.unwrap_or(0).max(0) as u64,
                    family_rows.unwrap_or(0).max(0) as u64,
                )
            } else {
                self.transaction(|tx| {
                    tx.query_drop(format!(
                        "DELETE FROM sample_cores WHERE {key} AND seq IN ({list})"
                    ))?;
                    let cores = tx.affected_rows();
                    let mut family_rows = 0;
                    for table in super::families::tables() {
                        tx.query_drop(format!("DELETE FROM {table} WHERE {key} AND seq IN ({list})"))?;
                        family_rows += tx.affected_rows();
                    }
                    tx.query_drop(format!("DELETE FROM samples WHERE {key} AND seq IN ({list})"))?;
                    let samples = tx.affected_rows();
                    tx.query_drop(format!(
                        "UPDATE watermarks SET pruned_through_seq = GREATEST(pruned_through_seq, {hi}),
                                samples_pruned = samples_pruned + {samples}
                          WHERE {key}"
                    ))?;
                    Ok((samples, cores, family_rows))
                })?
            };
            self.report.samples += samples;
            self.report.cores += cores;
            self.report.family_rows += family_rows;
            let deleted = samples + cores + family_rows;
            self.report.largest_transaction = self.report.largest_transaction.max(deleted);
            if samples > 0 {
                let seen = deleted as f64 / samples as f64;
                self.per_sample = self.per_sample.max(seen);
            }
            let horizon = self.horizons.entry((appliance, epoch, host)).or_default();
            *horizon = (*horizon).max(hi);
            after = hi;
            progress(&self.report);
            if last {
                return Ok(true);
            }
        }
    }

    /// Prunes one journal table of one buffer; false when `stop` ended the run.
    fn journal_of(
        &mut self,
        table: &str,
        appliance: u32,
        epoch: i64,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(&PruneReport),
    ) -> Result<bool, Error> {
        let cutoff = self.report.cutoff.clone();
        let key = format!("appliance_id = {appliance} AND epoch = {epoch}");
        let mut after = i64::MIN;
        let mut first = true;
        loop {
            if stop.load(Ordering::Relaxed) {
                self.report.stopped = true;
                return Ok(false);
            }
            let mut want = self.options.batch_rows.max(1);
            if std::mem::take(&mut first) {
                want = want.min(FIRST_READ);
            }
            // (local id, older than the cutoff, host, newest seq it covers)
            let rows: Vec<(i64, bool, u32, i64)> = if table == "drops" {
                self.query(format!(
                    "SELECT local_id, at < '{cutoff}', host_id, last_seq FROM drops WHERE {key} AND local_id > {after}
                     ORDER BY local_id LIMIT {want}"
                ))?
            } else {
                self.query(format!(
                    "SELECT local_id, at < '{cutoff}', host_id, 0 FROM {table} WHERE {key} AND local_id > {after}
                     ORDER BY local_id LIMIT {want}"
                ))?
            };
            let old = rows.iter().take_while(|r| r.1);
            let last = old.clone().count() < rows.len() || rows.len() < want;
            let Some(newest) = old.clone().last().map(|r| r.0) else {
                return Ok(true);
            };
            // A drop record goes only once its whole range is below its host's horizon.
            let ids: Vec<i64> = old
                .filter(|r| {
                    r.3 <= self
                        .horizons
                        .get(&(appliance, epoch, r.2))
                        .copied()
                        .unwrap_or(0)
                })
                .map(|r| r.0)
                .collect();
            after = newest;
            if let Some(&through) = ids.last() {
                let deleted = if self.options.dry_run {
                    ids.len() as u64
                } else {
                    let list = join(&ids);
                    self.transaction(|tx| {
                        tx.query_drop(format!("DELETE FROM {table} WHERE {key} AND local_id IN ({list})"))?;
                        let deleted = tx.affected_rows();
                        tx.query_drop(format!(
                            "INSERT INTO prune_horizons (appliance_id, epoch, table_name, pruned_through_id, rows_pruned)
                             VALUES ({appliance}, {epoch}, '{table}', {through}, {deleted})
                             ON DUPLICATE KEY UPDATE pruned_through_id = GREATEST(pruned_through_id, VALUES(pruned_through_id)),
                                 rows_pruned = rows_pruned + VALUES(rows_pruned), pruned_at = CURRENT_TIMESTAMP(3)"
                        ))?;
                        Ok(deleted)
                    })?
                };
                match table {
                    "collection_errors" => self.report.collection_errors += deleted,
                    "alert_events" => self.report.alert_events += deleted,
                    _ => self.report.drops += deleted,
                }
                self.report.largest_transaction = self.report.largest_transaction.max(deleted);
                progress(&self.report);
            }
            if last {
                return Ok(true);
            }
        }
    }

    /// Runs `body` in one transaction and commits, retrying after a deadlock or a lock wait
    /// timeout (a Galera certification conflict surfaces as a deadlock at COMMIT).
    fn transaction<T>(
        &mut self,
        mut body: impl FnMut(&mut mysql::Transaction<'_>) -> Result<T, mysql::Error>,
    ) -> Result<T, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = (|| {
                let mut tx = self.central.conn().start_transaction(TxOpts::default())?;
                let out = body(&mut tx)?;
                tx.commit()?;
                Ok(out)
            })();
            match result {
                Ok(out) => {
                    self.report.transactions += 1;
                    self.report.longest_transaction =
                        self.report.longest_transaction.max(started.elapsed());
                    return Ok(out);
                }
                Err(err) if is_conflict(&err) && attempt < ATTEMPTS => {
                    let pause = conflict_pause(attempt);
                    tracing::warn!(server = %self.server, error = %err, attempt, retry_in = ?pause,
                        "a prune batch met a conflicting writer; retrying it");
                    std::thread::sleep(pause);
                }
                Err(err) => return Err(classify(&self.server, err)),
            }
        }
    }

    fn query<T: mysql::prelude::FromRow>(&mut self, sql: String) -> Result<Vec<T>, Error> {
        let server = self.server.clone();
        self.central
            .conn()
            .query(sql)
            .map_err(|e| classify(&server, e))
    }

    fn query_first<T: mysql::prelude::FromRow>(&mut self, sql: String) -> Result<Option<T>, Error> {
        let server = self.server.clone();
        self.central
            .conn()
            .query_first(sql)
            .map_err(|e| classify(&server, e))
    }
}

fn join(ids: &[i64]) -> String {
    let mut out = String::with_capacity(ids.len() * 8);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out
}

/// Parses `--older-than` / `central.retention`: a humantime duration of at least [`MIN_AGE`].
pub fn parse_age(text: &str) -> anyhow::Result<Duration> {
    let age = humantime::parse_duration(text.trim()).with_context(|| {
        format!("--older-than {text:?} is not a duration like 90d, 12w or 2160h")
    })?;
    if age < MIN_AGE {
        anyhow::bail!(
            "--older-than {text:?} is below {}: that would prune live data",
            humantime::format_duration(MIN_AGE)
        );
    }
    Ok(age)
}

/// `edgemon central prune`: prunes with a progress line on a terminal, prints what it did.
/// Exit 0 when done, 1 on error or when a signal stopped it (run again to resume).
pub fn command(
    config: &Config,
    older_than: &str,
    options: PruneOptions,
) -> anyhow::Result<ExitCode> {
    let options = PruneOptions {
        older_than: parse_age(older_than)?,
        ..options
    };
    let appliance = crate::identity::appliance_id(&config.appliance)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(200));
    let verb = if options.dry_run {
        "would prune"
    } else {
        "pruned"
    };
    let result = prune(
        central_urls(&config.sync),
        config.sync.timeout,
        &appliance,
        &options,
        &stop,
        &mut |r| {
            bar.set_message(format!(
                "{verb} {} rows; series {}/{}",
                r.rows(),
                r.series_done,
                r.series
            ))
        },
    );
    bar.finish_and_clear();
    let whose = if options.all_appliances {
        "every appliance".to_string()
    } else {
        format!("appliance '{appliance}'")
    };
    let report = result.with_context(|| {
        format!(
            "central prune of {whose} older than {older_than} failed (what was committed stays pruned; run again to resume)"
        )
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}{verb} rows of {whose} received before {} UTC (older than {older_than}) on {}",
        if report.dry_run { "dry run: " } else { "" },
        report.cutoff,
        report.server
    )?;
    writeln!(
        out,
        "samples: {} (per-core values: {}, family rows: {}) over {} host series; collection_errors: {}; alert_events: {}; drops: {}",
        report.samples,
        report.cores,
        report.family_rows,
        report.series,
        report.collection_errors,
        report.alert_events,
        report.drops
    )?;
    if report.dry_run {
        writeln!(out, "nothing was changed")?;
    } else {
        writeln!(
            out,
            "{} transactions, the largest {} rows, the longest {} ms; {:.1} s in all",
            report.transactions,
            report.largest_transaction,
            report.longest_transaction.as_millis(),
            report.elapsed.as_secs_f64()
        )?;
    }
    if report.stopped {
        writeln!(
            out,
            "stopped by a signal after the batch in flight; run again to resume"
        )?;
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_parse_as_durations_and_live_data_is_refused() {
        assert_eq!(
            parse_age("90d").expect("90d"),
            Duration::from_secs(90 * 86_400)
        );
        assert_eq!(
            parse_age(" 12w ").expect("12w"),
            Duration::from_secs(84 * 86_400)
        );
        let short = parse_age("10m").expect_err("10m").to_string();
        assert!(short.contains("below 1h"), "{short}");
        let bad = parse_age("ninety days").expect_err("text").to_string();
        assert!(bad.contains("not a duration like 90d"), "{bad}");
    }

    #[test]
    fn the_v3_upgrade_alters_only_the_watermarks() {
        let statements: Vec<&str> = crate::schema::MYSQL_V2_TO_V3
            .lines()
            .filter(|l| !l.trim_start().starts_with("--") && !l.trim().is_empty())
            .collect();
        assert!(statements[0].starts_with("ALTER TABLE watermarks"));
        assert!(statements.iter().all(|l| !l.contains("TABLE samples")));
        assert_eq!(join(&[3, -1, 7]), "3,-1,7");
    }
}
