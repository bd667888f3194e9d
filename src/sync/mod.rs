//! Sync: moves the buffer to the central MySQL database, exactly once.
//!
//! Invariants:
//! - The queue is the buffer's per-row `sync_state`, never a "last id sent"
//!   cursor, so a row committed locally after a higher id is never skipped.
//! - A batch (the oldest `sync.batch_size` unsynced samples, in buffer order)
//!   goes to MySQL in one transaction of multi-row inserts (or `LOAD DATA
//!   LOCAL INFILE`; a large one in one transaction per part of its hosts, over
//!   two connections), and is marked synced locally only after that COMMIT
//!   (every part's). A crash in between leaves it
//!   unsynced; it is sent again and the central primary keys make that a no-op.
//! - A batch refused for its content is bisected; the rows refused on their
//!   own are quarantined locally with MySQL's message (and recorded as drops,
//!   so the central gap view explains them). They never block the rest.
//! - Identity is (appliance, buffer epoch, host, seq) for samples and
//!   (appliance, epoch, local id) for journal rows. A re-sent row found
//!   centrally with the same checksum is a no-op; with another checksum it is a
//!   collision: never written over, kept in the buffer (state 3, `collisions`),
//!   logged with host and seq, counted in status and metrics.
//! - Each batch updates its hosts' central watermarks in its own transaction,
//!   so the completeness view needs no scan of the samples.
//! - On each new connection, rows of this epoch the buffer marked synced but
//!   MySQL no longer holds (a restore from an older backup, a deleted host)
//!   go back to the queue while the buffer keeps them.
//!   Rows at or below a host's prune horizon (`prune.rs`, retention) are not re-queued.
//! - Several central servers (`sync.urls`, the nodes of one cluster) are
//!   tried in order ([`endpoints`]); a server that fails under a batch is
//!   skipped for a backoff of its own and the pass goes on with the next one,
//!   sending the rows still unsynced (the unfinished batch was not marked).
//!   Each pass returns to the first server whose backoff is over.
//! - Other connection and server errors, and every server failing, end the
//!   pass; the loop backs off exponentially with jitter up to `sync.max_backoff`.
//! - Live first: when the backlog is older than [`BEHIND_INTERVALS`] intervals, a pass sends
//!   the rows of the last [`LIVE_INTERVALS`] intervals first, then backfill batches oldest
//!   first, and after each backfill batch the rows that arrived meanwhile. The backfill batch
//!   adapts to commit latency ([`pace::Aimd`], at most `sync.batch_size`). A live batch that
//!   jumps ahead of a host's backlog records a stream split in the buffer, so the re-queue on a
//!   new connection checks each stream's top, not only the newest row (see `requeue_missing`).
//!   The central watermarks count the backfill range as unsent until it arrives, never as loss.
//! - `sync.schedule`: outside a window nothing is sent (no connection either); a pass stops
//!   between batches when its window closes. `sync.rate_limit` caps rows or bytes per second.
//!
//! The task opens its own connection to the buffer file (SQLite WAL), beside
//! the collector's. MySQL itself is known only to [`central`].

mod backoff;
mod bisect;
mod bulk;
pub mod central;
mod command;
pub mod endpoints;
pub mod families;
pub mod pace;
pub mod prune;
pub mod schedule;
mod sql;

pub use backoff::Backoff;
pub use bisect::{Attempt, Isolated, commit_isolating};
pub use command::command;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::buffer::{self, Journal, RetentionReport, SyncQueue, now_ms};
use crate::config::{BufferConfig, SyncConfig};
use crate::shutdown::Shutdown;
use central::Central;
use endpoints::{EndpointHealth, Endpoints};

/// Why a pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The central database (unreachable, credentials, schema, server error).
    #[error(transparent)]
    Central(#[from] central::Error),
    /// The local buffer.
    #[error(transparent)]
    Buffer(#[from] buffer::Error),
}

/// A backlog whose oldest sample is older than this many sync intervals is drained live first.
pub const BEHIND_INTERVALS: u32 = 3;
/// The live rows a pass sends before the backfill: those received in the last this many sync
/// intervals.
pub const LIVE_INTERVALS: u32 = 2;

/// What one pass did.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    /// Samples committed centrally and marked synced (inserted, or found there identical).
    pub samples: u64,
    /// Of `samples`, those already in MySQL with the same values (re-sent after a crash
    /// between COMMIT and marking): a no-op.
    pub already_present: u64,
    /// Rows (samples and journal rows) whose central identity holds different values:
    /// not written, kept in the buffer's `collisions` table, logged and counted.
    pub collisions: u64,
    /// Samples quarantined (refused by MySQL for their content).
    pub quarantined: u64,
    /// Journal rows (collection errors, drops, alert events) committed.
    pub journal_rows: u64,
    /// Journal rows refused by MySQL for their content.
    pub journal_rejected: u64,
    /// Unsynced samples left (more arrived, or the pass was stopped).
    pub remaining: u64,
    /// The buffer's epoch.
    pub epoch: i64,
    /// The stop flag ended the pass between two batches.
    pub stopped: bool,
    /// The central server in use at the end of the pass (password masked), if connected.
    pub server: Option<String>,
    /// Every listed central server's health at the end of the pass, in the configured order.
    pub servers: Vec<EndpointHealth>,
    /// Times the pass left a server that failed under it for the next one.
    pub failovers: u64,
    /// Batch transactions tried again after losing a conflict (Galera certification, 1213).
    pub conflict_retries: u64,
    /// Of `samples`, those sent live first, ahead of an older backlog.
    pub live_samples: u64,
    /// Samples batches of this pass, and the largest (the pace and the rate cap bound it).
    pub batches: u64,
    /// The largest samples batch of this pass.
    pub largest_batch: u64,
    /// Samples per second over the pass's batches (`None`: nothing sent).
    pub rows_per_s: Option<f64>,
    /// `sync.schedule` held the pass (before it began or when its window closed): the next
    /// window opens at this time, Unix ms.
    pub paused_until: Option<i64>,
    /// The retention pass run before syncing (`run_once` only).
    pub retention: Option<RetentionReport>,
    /// Wall time of the pass.
    pub elapsed: Duration,
}

/// Progress of a drain, after each batch.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Samples handled so far in this pass (synced or quarantined).
    pub done: u64,
    /// Unsynced samples left.
    pub remaining: u64,
    /// Samples per second so far, smoothed over the last batches.
    pub rows_per_s: Option<f64>,
}

/// The sync loop of one appliance.
pub struct SyncTask {
    sync: SyncConfig,
    buffer: BufferConfig,
    appliance: String,
    ignore_schedule: bool,
    state: Mutex<State>,
}

struct State {
    buffer: Option<SyncQueue>,
    central: Option<Central>,
    /// The central servers and their health; which one `central` is connected to.
    endpoints: Endpoints,
    /// The backfill's batch size, kept across passes.
    pace: Option<pace::Aimd>,
}

impl SyncTask {
    /// A task syncing the buffer of `buffer` as appliance `appliance_id`; opens nothing yet.
    pub fn new(sync: &SyncConfig, buffer: &BufferConfig, appliance_id: &str) -> SyncTask {
        SyncTask {
            sync: sync.clone(),
            buffer: buffer.clone(),
            appliance: appliance_id.to_string(),
            ignore_schedule: false,
            state: Mutex::new(State {
                buffer: None,
                central: None,
                endpoints: Endpoints::new(&sync.urls, sync.interval, sync.max_backoff),
                pace: None,
            }),
        }
    }

    /// Sends whatever `sync.schedule` says (`edgemon sync --ignore-schedule`).
    pub fn ignoring_schedule(mut self, ignore: bool) -> SyncTask {
        self.ignore_schedule = ignore;
        self
    }

    /// When `sync.schedule` holds sync at `now_ms`: the time the next window opens (Unix ms).
    pub fn paused_until(&self, now_ms: i64) -> Option<i64> {
        if self.ignore_schedule || self.sync.schedule.is_always() {
            return None;
        }
        match self.sync.schedule.state(now_ms, &self.sync.timezone) {
            schedule::State::Open { .. } => None,
            schedule::State::Closed { opens_at } => Some(opens_at),
        }
    }

    /// Loops until `stop` fires: a retention pass and a sync pass every `sync.interval`,
    /// backing off after errors (MySQL absent, buffer unreadable), never giving up. A batch in
    /// flight when `stop` fires is finished before it returns; a wait ends at once.
    pub fn run(&self, stop: &Shutdown) {
        self.run_with(stop, |_| {});
    }

    /// [`SyncTask::run`], handing every pass's outcome to `on_pass` (for metrics).
    pub fn run_with(&self, stop: &Shutdown, mut on_pass: impl FnMut(Result<&PassReport, &Error>)) {
        let mut backoff = Backoff::new(Duration::from_secs(1), self.sync.max_backoff);
        while !stop.is_fired() {
            let result = self.run_once(stop.flag());
            on_pass(result.as_ref());
            let wait = match result {
                Ok(report) => {
                    backoff.reset();
                    tracing::debug!(
                        samples = report.samples,
                        remaining = report.remaining,
                        "sync pass done"
                    );
                    match report.paused_until {
                        // Held by the schedule: wake when the window opens, and at least every
                        // interval meanwhile (retention still runs, a reload is seen).
                        Some(at) => Duration::from_millis((at - now_ms()).max(0) as u64 + 10)
                            .min(self.sync.interval),
                        None => self.sync.interval,
                    }
                }
                Err(err) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(error = %err, failures = backoff.failures(), retry_in = ?wait, "sync failed");
                    wait
                }
            };
            stop.wait_timeout(wait);
        }
    }

    /// One cycle: retention, then drain the backlog (used by `edgemon run --once`).
    pub fn run_once(&self, stop: &AtomicBool) -> Result<PassReport, Error> {
        let retention = {
            let mut state = self.lock();
            let buffer = self.buffer_of(&mut state)?;
            buffer.enforce_retention(&self.buffer, now_ms())?
        };
        let mut report = self.drain(stop, &mut |_| {})?;
        report.retention = Some(retention);
        Ok(report)
    }

    /// Unsynced samples in the buffer now.
    pub fn backlog(&self) -> Result<u64, Error> {
        let mut state = self.lock();
        Ok(self.buffer_of(&mut state)?.unsynced_depth()?.0)
    }

    /// Drains every unsynced row now (or until `stop`), reporting progress after each batch.
    /// The outcome is recorded in the buffer ([`buffer::SyncStatus`]).
    pub fn drain(
        &self,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<PassReport, Error> {
        let started = Instant::now();
        let mut state = self.lock();
        let mut report = PassReport::default();
        let result = self.drain_locked(&mut state, stop, progress, &mut report);
        report.elapsed = started.elapsed();
        let outcome = match &result {
            Ok(()) => Ok(()),
            Err(err) => {
                if matches!(err, Error::Central(_)) {
                    // Whatever happened, the connection is in an unknown state: start afresh.
                    state.central = None;
                    state.endpoints.disconnected();
                }
                Err(err.to_string())
            }
        };
        report.server = state
            .endpoints
            .current()
            .map(|i| state.endpoints.shown(i).to_string());
        report.servers = state.endpoints.health(Instant::now());
        if let Some(buffer) = state.buffer.as_ref() {
            let noted =
                buffer.note_pass(outcome.as_ref().map(drop).map_err(String::as_str), now_ms());
            let noted = noted.and_then(|()| match (&result, report.rows_per_s) {
                (Ok(()), Some(rate)) => buffer.note_drain_rate(rate),
                _ => Ok(()),
            });
            let noted = noted.and_then(|()| match &result {
                Ok(()) => buffer.note_paused(report.paused_until),
                Err(_) => Ok(()),
            });
            if let Err(err) = noted {
                tracing::warn!(error = %err, "could not record the sync outcome in the buffer");
            }
            if report.servers.len() > 1 {
                let health: Vec<String> = report.servers.iter().map(|h| h.to_string()).collect();
                if let Err(err) = buffer.note_servers(&health.join("; ")) {
                    tracing::warn!(error = %err, "could not record the central servers' health in the buffer");
                }
            }
        }
        result.map(|()| report)
    }

    fn drain_locked(
        &self,
        state: &mut State,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(Progress),
        report: &mut PassReport,
    ) -> Result<(), Error> {
        let epoch = self.buffer_of(state)?.epoch()?;
        report.epoch = epoch;
        if let Some(opens_at) = self.paused_until(now_ms()) {
            // Outside every window: nothing is sent, not even a connection (an idle one would
            // only time out on the server before the window opens).
            state.central = None;
            state.endpoints.disconnected();
            report.paused_until = Some(opens_at);
            report.remaining = self.buffer_of(state)?.unsynced_depth()?.0;
            return Ok(());
        }
        if let Some(first) = state.endpoints.should_return(Instant::now()) {
            tracing::info!(
                from = state.endpoints.current().map(|i| state.endpoints.shown(i)),
                to = state.endpoints.shown(first),
                "returning to an earlier central server of the list, its backoff over"
            );
            state.central = None;
            state.endpoints.disconnected();
        }
        if let Some(central) = state.central.as_mut()
            && let Err(error) = central.recheck_ready()
        {
            // Made read-only (or out of the Galera primary) under this connection.
            if let Some(index) = state.endpoints.current() {
                let wait = state
                    .endpoints
                    .failed(index, Instant::now(), &error.to_string());
                tracing::warn!(server = %state.endpoints.shown(index), %error, skipped_for = ?wait,
                    "central server no longer ready; trying the next one listed");
            }
            state.central = None;
            state.endpoints.disconnected();
        }
        if state.central.is_none() {
            self.connect(state, epoch)?;
        }
        if state.pace.is_none() {
            state.pace = Some(pace::Aimd::new(
                self.sync.batch_size,
                pace::Aimd::target_for(self.sync.timeout),
            ));
        }
        let mut failovers = 0;
        let batch_size = self.sync.batch_size.max(1);
        // Counted once and then decremented: counting per batch would rescan the backlog
        // every time (quadratic over a large drain).
        let buffer = self.buffer_of(state)?;
        let (mut remaining, oldest) = buffer.unsynced_depth()?;
        let now = now_ms();
        let interval_ms = self.sync.interval.as_millis() as i64;
        // Behind: the live rows go first, the backfill follows at its adaptive pace.
        let behind = oldest.is_some_and(|at| now - at > interval_ms * BEHIND_INTERVALS as i64);
        let mut live_from = match behind {
            true => buffer.live_floor(now - interval_ms * LIVE_INTERVALS as i64)?,
            false => None,
        };
        let mut seen_top = buffer.newest_unsynced_id()?.unwrap_or(0);
        let cap = self.sync.rate_limit;
        let drain_started = Instant::now();
        let (mut sent_rows, mut sent_bytes) = (0u64, 0u64);
        let mut last_batch_end = drain_started;
        let mut row_bytes = 512usize;
        let mut rate = pace::DrainRate::default();
        loop {
            if stop.load(Ordering::Relaxed) {
                report.stopped = true;
                break;
            }
            if let Some(opens_at) = self.paused_until(now_ms()) {
                tracing::info!(
                    opens_at,
                    "sync window closed: the pass stops until the next one"
                );
                report.paused_until = Some(opens_at);
                break;
            }
            let wait = cap.delay(sent_rows, sent_bytes, drain_started.elapsed());
            if !wait.is_zero() {
                sleep_unless(stop, wait);
                continue;
            }
            let (buffer, central, pace) = parts(state);
            let cap_rows = cap.batch_cap(row_bytes);
            let (rows, live, requested) = match live_from {
                Some(from) => {
                    let size = batch_size.min(cap_rows);
                    // Claimed: retention sheds none of them while they are in flight.
                    let rows = buffer.with_reserve(|b| b.claim_unsynced(from, size))?;
                    if rows.is_empty() {
                        live_from = None;
                        continue;
                    }
                    (rows, true, size)
                }
                None => {
                    let size = if behind { pace.batch() } else { batch_size }.min(cap_rows);
                    let rows = buffer.with_reserve(|b| b.claim_unsynced(0, size))?;
                    if rows.is_empty() {
                        break;
                    }
                    (rows, false, size)
                }
            };
            let fetched = rows.len();
            let bytes: usize = rows.iter().map(approx_bytes).sum();
            if live {
                // Before sending: a live batch that jumps ahead of a host's backlog opens a new
                // stream of that host; the re-queue after a central restore needs to know.
                let mut firsts: HashMap<&str, i64> = HashMap::new();
                for r in &rows {
                    let seq = firsts.entry(r.host.as_str()).or_insert(r.seq);
                    *seq = (*seq).min(r.seq);
                }
                let mut splits = Vec::new();
                for (host, seq) in firsts {
                    if buffer.is_unsynced(host, seq - 1)? {
                        splits.push((host.to_string(), seq));
                    }
                }
                if !splits.is_empty() {
                    buffer.with_reserve(|b| b.add_stream_splits(&splits))?;
                }
            }
            let (good, unreadable): (Vec<_>, Vec<_>) =
                rows.into_iter().partition(|r| r.cores.is_ok());
            let unreadable: Vec<(String, i64, String)> = unreadable
                .into_iter()
                .map(|r| (r.host, r.seq, r.cores.err().unwrap_or_default()))
                .collect();
            if !unreadable.is_empty() {
                buffer.with_reserve(|b| b.quarantine_samples(&unreadable, now_ms()))?;
                report.quarantined += unreadable.len() as u64;
            }
            let marks = marks(buffer)?;
            let committing = Instant::now();
            let (done, counts) = match samples_batch(central, buffer, &good, &marks, epoch) {
                Ok(outcome) => outcome,
                Err(err) => {
                    if behind && !live {
                        pace.failed();
                    }
                    // Nothing of the batch was marked that the server did not commit: the
                    // next server gets the rows still unsynced.
                    self.fail_over(state, epoch, err, &mut failovers, report)?;
                    continue;
                }
            };
            if behind && !live {
                pace.committed(committing.elapsed());
            }
            report.conflict_retries += central.take_conflict_retries();
            let sent = (done.committed - counts.collisions) as u64;
            report.samples += sent;
            if live {
                report.live_samples += sent;
            }
            report.already_present += counts.identical as u64;
            report.collisions += counts.collisions as u64;
            report.quarantined += done.rejected as u64;
            report.batches += 1;
            report.largest_batch = report.largest_batch.max(fetched as u64);
            sent_rows += fetched as u64;
            sent_bytes += bytes as u64;
            row_bytes = (bytes / fetched.max(1)).max(1);
            // Since the previous batch ended: the rate-cap waits count.
            rate.add(fetched, last_batch_end.elapsed());
            last_batch_end = Instant::now();
            remaining = if !live && fetched < requested {
                buffer.unsynced_depth()?.0
            } else {
                remaining.saturating_sub(fetched as u64)
            };
            if behind && !live {
                // Rows that arrived during the backfill batch go next, ahead of the backlog.
                if let Some(newest) = buffer.newest_unsynced_id()?
                    && newest > seen_top
                {
                    live_from = Some(seen_top + 1);
                    remaining += (newest - seen_top) as u64;
                    seen_top = newest;
                }
            }
            report.remaining = remaining;
            progress(Progress {
                done: report.samples + report.quarantined,
                remaining,
                rows_per_s: rate.rows_per_s(),
            });
        }
        if sent_rows > 0 {
            let took = last_batch_end.duration_since(drain_started);
            report.rows_per_s = Some(sent_rows as f64 / took.as_secs_f64().max(1e-3));
        }
        if report.paused_until.is_some() {
            report.remaining = self.buffer_of(state)?.unsynced_depth()?.0;
            return Ok(());
        }
        for journal in Journal::ALL {
            loop {
                if stop.load(Ordering::Relaxed) {
                    report.stopped = true;
                    return Ok(());
                }
                let (buffer, central, _) = parts(state);
                let rows = buffer.unsynced_journal(journal, batch_size)?;
                if rows.is_empty() {
                    break;
                }
                let marks = marks(buffer)?;
                let (done, counts) =
                    match journal_batch(central, buffer, journal, &rows, &marks, epoch) {
                        Ok(done) => done,
                        Err(err) => {
                            self.fail_over(state, epoch, err, &mut failovers, report)?;
                            continue;
                        }
                    };
                report.conflict_retries += central.take_conflict_retries();
                report.journal_rows += (done.committed - counts.collisions) as u64;
                report.collisions += counts.collisions as u64;
                report.journal_rejected += done.rejected as u64;
            }
        }
        let (buffer, central, _) = parts(state);
        report.remaining = buffer.unsynced_depth()?.0;
        // Every host's watermark, even one with nothing to send: a host whose samples never
        // arrive then shows in the completeness view. Informative: the next pass tries again.
        let hosts = buffer.marked_hosts()?;
        let names: Vec<(String, String)> = hosts
            .iter()
            .map(|h| (h.name.clone(), h.address.clone()))
            .collect();
        let marks = hosts.into_iter().map(|h| (h.name, h.mark)).collect();
        if let Err(err) = central.touch(&names, &marks) {
            tracing::warn!(error = %err, "could not record the pass and the watermarks centrally");
        }
        Ok(())
    }

    /// Connects to the first server of [`Endpoints::order`] that accepts (and is ready), and
    /// requeues what it lacks; a server that fails is skipped for its backoff and the next one
    /// tried. Fails with the last server's error when none accepts, at once for a URL that
    /// does not parse.
    fn connect(&self, state: &mut State, epoch: i64) -> Result<(), Error> {
        let mut last: Option<Error> = None;
        for index in state.endpoints.order(Instant::now()) {
            let url = state.endpoints.url(index).clone();
            let shown = state.endpoints.shown(index).to_string();
            let idle = self.sync.interval.max(self.sync.max_backoff);
            let connected = Central::connect(&url, self.sync.timeout, idle, &self.appliance, epoch);
            let failed = match connected {
                Ok(mut central) => {
                    // Runs once per connection: if it fails, the next pass must connect afresh
                    // and run it again, or rows MySQL lost stay marked synced.
                    let buffer = self.buffer_of(state)?;
                    match requeue_missing(&mut central, buffer, &self.appliance) {
                        Ok(()) => {
                            state.endpoints.connected(index);
                            if last.is_some() {
                                tracing::warn!(server = %shown, "failed over to this central server");
                            } else {
                                tracing::info!(server = %shown, "connected to the central server");
                            }
                            state.central = Some(central);
                            return Ok(());
                        }
                        Err(Error::Central(err)) if err.is_unavailable() => err,
                        Err(err) => return Err(err),
                    }
                }
                Err(err @ central::Error::Url(_)) => return Err(err.into()),
                Err(err) => err,
            };
            let wait = state
                .endpoints
                .failed(index, Instant::now(), &failed.to_string());
            tracing::warn!(server = %shown, error = %failed, skipped_for = ?wait,
                servers = state.endpoints.len(), "central server unavailable; trying the next one listed");
            last = Some(failed.into());
        }
        Err(last.unwrap_or_else(|| {
            Error::Central(central::Error::Url("no sync URL configured".into()))
        }))
    }

    /// After a batch failed with `err`: when its server became unavailable (connection lost,
    /// node killed or no longer ready), marks it failed and connects to the next server
    /// listed, at most once per server and pass; the caller then sends the rows still
    /// unsynced there. Any other error ends the pass.
    fn fail_over(
        &self,
        state: &mut State,
        epoch: i64,
        err: Error,
        failovers: &mut usize,
        report: &mut PassReport,
    ) -> Result<(), Error> {
        let unavailable = matches!(&err, Error::Central(e) if e.is_unavailable());
        if !unavailable || *failovers >= state.endpoints.len() {
            return Err(err);
        }
        *failovers += 1;
        report.failovers += 1;
        if let Some(mut central) = state.central.take() {
            report.conflict_retries += central.take_conflict_retries();
        }
        if let Some(index) = state.endpoints.current() {
            let wait = state
                .endpoints
                .failed(index, Instant::now(), &err.to_string());
            tracing::warn!(server = %state.endpoints.shown(index), error = %err, skipped_for = ?wait,
                "central server failed during the pass; failing over, the unfinished batch is sent again");
        }
        self.connect(state, epoch)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves nothing half-done here (every step is a
        // transaction on either side), so a poisoned lock is safe to reuse.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn buffer_of<'s>(&self, state: &'s mut State) -> Result<&'s mut SyncQueue, Error> {
        if state.buffer.is_none() {
            state.buffer = Some(SyncQueue::open(&self.buffer.path)?);
        }
        Ok(state
            .buffer
            .as_mut()
            .unwrap_or_else(|| unreachable!("opened above")))
    }
}

/// The buffer and the connection of a pass (both opened by then).
fn parts(state: &mut State) -> (&mut SyncQueue, &mut Central, &mut pace::Aimd) {
    match (
        state.buffer.as_mut(),
        state.central.as_mut(),
        state.pace.as_mut(),
    ) {
        (Some(buffer), Some(central), Some(pace)) => (buffer, central, pace),
        _ => unreachable!("the buffer, the connection and the pace are set before any batch"),
    }
}

/// On a new connection: whatever the buffer marked synced but MySQL no longer holds (the newest
/// rows of a host, or all of them: a restore from an older backup, a deleted host) goes back
/// to the queue while the buffer still keeps it, so it is sent again rather than lost.
fn requeue_missing(
    central: &mut Central,
    buffer: &mut SyncQueue,
    appliance: &str,
) -> Result<(), Error> {
    // Rows at or below a prune horizon were deleted on purpose (`edgemon central prune`): a
    // host whose every central row was pruned must not get them all sent again.
    let horizons = prune::horizons(central)?;
    let mut present = central.present_samples()?;
    for (host, pruned) in &horizons.samples {
        let newest = present.entry(host.clone()).or_insert(0);
        *newest = (*newest).max(*pruned);
    }
    // Through the disk reserve: a full disk must not stop every pass here (see `drain_locked`).
    for (host, count) in buffer.with_reserve(|b| b.requeue_missing_samples(&present))? {
        tracing::warn!(
            appliance,
            host = %host,
            samples = count,
            server = central.server(),
            "MySQL lacks samples this buffer had synced (restored from an older backup, or deleted); sending them again"
        );
    }
    // A stream that a live batch opened ahead of a host's backlog reached MySQL in ascending
    // order, and so did the stream below it: after a restore, each lacks only its top.
    buffer.with_reserve(|b| b.prune_stream_splits())?;
    let splits = buffer.stream_splits()?;
    let firsts = marks(buffer)?;
    for (host, list) in &splits {
        // Nothing at or below the host's prune horizon is re-sent: those rows were deleted on
        // purpose, and sending them again would count them twice in the watermarks.
        let pruned = horizons
            .samples
            .get(host.trim_end_matches(' '))
            .copied()
            .unwrap_or(0);
        let mut from = firsts.get(host).map_or(1, |m| m.first_seq).max(pruned + 1);
        for &split in list {
            if split <= from {
                continue;
            }
            let above = central
                .present_between(host, from, split)?
                .unwrap_or(from - 1);
            let count = buffer.with_reserve(|b| b.requeue_missing_between(host, above, split))?;
            if count > 0 {
                tracing::warn!(
                    appliance,
                    host = %host,
                    samples = count,
                    below_seq = split,
                    server = central.server(),
                    "MySQL lacks samples this buffer had synced below a live stream (restored from an older backup?); sending them again"
                );
            }
            from = split;
        }
    }
    for journal in Journal::ALL {
        let pruned = horizons.journals.get(journal.table()).copied();
        let present = central
            .present_journal(journal.table())?
            .max(pruned.unwrap_or(0));
        let count = buffer.with_reserve(|b| b.requeue_missing_journal(journal, present))?;
        if count > 0 {
            tracing::warn!(
                appliance,
                table = journal.table(),
                rows = count,
                server = central.server(),
                "MySQL lacks journal rows this buffer had synced; sending them again"
            );
        }
    }
    Ok(())
}

/// Sleeps `wait`, waking early when `stop` is set.
fn sleep_unless(stop: &AtomicBool, wait: Duration) {
    let until = Instant::now() + wait;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// The bytes a sample weighs on the wire, estimated (fixed columns, text, per-core rows):
/// what a `sync.rate_limit` in bytes per second counts.
fn approx_bytes(s: &buffer::SyncSample) -> usize {
    let text = [&s.hostname, &s.os, &s.kernel, &s.extras]
        .iter()
        .map(|t| t.as_ref().map_or(4, String::len))
        .sum::<usize>();
    let cores = s.cores.as_ref().map_or(0, Vec::len);
    160 + s.host.len() + text + cores * 40
}

/// Rows of committed slices that were already there or collided.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    identical: usize,
    collisions: usize,
}

/// The buffer's hosts' sequence bounds, by name.
fn marks(buffer: &SyncQueue) -> Result<HashMap<String, buffer::HostMark>, Error> {
    Ok(buffer
        .marked_hosts()?
        .into_iter()
        .map(|h| (h.name, h.mark))
        .collect())
}

/// Commits one batch of samples, isolating refused rows; marks each committed slice synced
/// and records its collisions.
fn samples_batch(
    central: &mut Central,
    buffer: &mut SyncQueue,
    rows: &[buffer::SyncSample],
    marks: &HashMap<String, buffer::HostMark>,
    epoch: i64,
) -> Result<(Isolated, Counts), Error> {
    let buffer = std::cell::RefCell::new(buffer);
    let mut counts = Counts::default();
    let done = commit_isolating(
        rows,
        &mut |slice| {
            let written = central.write_samples(slice, marks).map_err(attempt)?;
            let keys: HashMap<i64, (&str, i64)> = slice
                .iter()
                .map(|r| (r.id, (r.host.as_str(), r.seq)))
                .collect();
            settle(
                &mut buffer.borrow_mut(),
                None,
                &written,
                epoch,
                &mut counts,
                &keys,
            )
            .map_err(Attempt::Fatal)
        },
        &mut |row, message| {
            tracing::error!(host = %row.host, seq = row.seq, reason = %message, "MySQL refused a sample; quarantined");
            Ok(buffer.borrow_mut().with_reserve(|b| {
                b.quarantine_samples(&[(row.host.as_str(), row.seq, message.clone())], now_ms())
            })?)
        },
    )?;
    Ok((done, counts))
}

/// After a COMMIT: marks what is now central synced, records and logs the collisions.
/// `journal` is `None` for samples, which are marked by identity: `keys` maps the batch's
/// row ids to (host, seq).
fn settle(
    buffer: &mut SyncQueue,
    journal: Option<Journal>,
    written: &central::Written,
    epoch: i64,
    counts: &mut Counts,
    keys: &HashMap<i64, (&str, i64)>,
) -> Result<(), Error> {
    let stored: Vec<i64> = written.stored().collect();
    let table = match journal {
        None => {
            let identities: Vec<(i64, &str, i64)> = stored
                .iter()
                .filter_map(|id| keys.get(id).map(|&(host, seq)| (*id, host, seq)))
                .collect();
            // Through the disk reserve: rows committed centrally must be marked, full disk or not.
            buffer.with_reserve(|b| b.mark_samples_synced(&identities, now_ms()))?;
            "samples"
        }
        Some(journal) => {
            buffer.with_reserve(|b| b.mark_journal_synced(journal, &stored))?;
            journal.table()
        }
    };
    for c in &written.collisions {
        tracing::warn!(
            table,
            host = %c.host,
            seq = ?c.seq,
            local_id = c.local_id,
            epoch,
            local_checksum = format!("{:016x}", c.local_checksum),
            central_checksum = ?c.central_checksum.map(|v| format!("{v:016x}")),
            "collision: MySQL already holds this identity with other values; the row is kept in the buffer's \
             collisions table and not written"
        );
    }
    if !written.collisions.is_empty() {
        buffer
            .with_reserve(|b| b.record_collisions(table, &written.collisions, epoch, now_ms()))?;
    }
    counts.identical += written.identical.len();
    counts.collisions += written.collisions.len();
    Ok(())
}

/// Commits one batch of journal rows, isolating refused rows.
fn journal_batch(
    central: &mut Central,
    buffer: &mut SyncQueue,
    journal: Journal,
    rows: &[buffer::JournalRow],
    marks: &HashMap<String, buffer::HostMark>,
    epoch: i64,
) -> Result<(Isolated, Counts), Error> {
    let buffer = std::cell::RefCell::new(buffer);
    let mut counts = Counts::default();
    let done = commit_isolating(
        rows,
        &mut |slice| {
            let written = central.write_journal(slice, marks).map_err(attempt)?;
            settle(
                &mut buffer.borrow_mut(),
                Some(journal),
                &written,
                epoch,
                &mut counts,
                &HashMap::new(),
            )
            .map_err(Attempt::Fatal)
        },
        &mut |row, message| {
            tracing::error!(table = journal.table(), id = row.id, host = %row.host, reason = %message,
                "MySQL refused a row; it stays only in the local buffer");
            Ok(buffer.borrow_mut().reject_journal(journal, &[row.id])?)
        },
    )?;
    Ok((done, counts))
}

fn attempt(err: central::Error) -> Attempt<Error> {
    match err {
        central::Error::Content(message) => Attempt::Content(message),
        other => Attempt::Fatal(other.into()),
    }
}
