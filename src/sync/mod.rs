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
//! - Connection and server errors end the pass; the loop backs off
//!   exponentially with jitter up to `sync.max_backoff`.
//!
//! The task opens its own connection to the buffer file (SQLite WAL), beside
//! the collector's. MySQL itself is known only to [`central`].

mod backoff;
mod bisect;
mod bulk;
pub mod central;
mod command;
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
}

/// The sync loop of one appliance.
pub struct SyncTask {
    sync: SyncConfig,
    buffer: BufferConfig,
    appliance: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    buffer: Option<SyncQueue>,
    central: Option<Central>,
}

impl SyncTask {
    /// A task syncing the buffer of `buffer` as appliance `appliance_id`; opens nothing yet.
    pub fn new(sync: &SyncConfig, buffer: &BufferConfig, appliance_id: &str) -> SyncTask {
        SyncTask {
            sync: sync.clone(),
            buffer: buffer.clone(),
            appliance: appliance_id.to_string(),
            state: Mutex::new(State::default()),
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
                    self.sync.interval
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
                }
                Err(err.to_string())
            }
        };
        if let Some(buffer) = state.buffer.as_ref() {
            let noted =
                buffer.note_pass(outcome.as_ref().map(drop).map_err(String::as_str), now_ms());
            if let Err(err) = noted {
                tracing::warn!(error = %err, "could not record the sync outcome in the buffer");
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
        let fresh = state.central.is_none();
        if fresh {
            state.central = Some(Central::connect(
                &self.sync.url,
                self.sync.timeout,
                &self.appliance,
                epoch,
            )?);
        }
        let (Some(buffer), Some(central)) = (state.buffer.as_mut(), state.central.as_mut()) else {
            unreachable!("both opened above");
        };
        if fresh && let Err(err) = requeue_missing(central, buffer, &self.appliance) {
            // Runs once per connection: whatever failed (MySQL or the buffer), the next pass
            // must connect afresh and run it again, or rows MySQL lost stay marked synced.
            state.central = None;
            return Err(err);
        }
        let batch_size = self.sync.batch_size.max(1);
        // Counted once and then decremented: counting per batch would rescan the backlog
        // every time (quadratic over a large drain).
        let mut remaining = buffer.unsynced_depth()?.0;
        loop {
            if stop.load(Ordering::Relaxed) {
                report.stopped = true;
                break;
            }
            let rows = buffer.unsynced_samples(batch_size)?;
            if rows.is_empty() {
                break;
            }
            let fetched = rows.len();
            let (good, unreadable): (Vec<_>, Vec<_>) =
                rows.into_iter().partition(|r| r.cores.is_ok());
            let unreadable: Vec<(i64, String)> = unreadable
                .into_iter()
                .map(|r| (r.id, r.cores.err().unwrap_or_default()))
                .collect();
            if !unreadable.is_empty() {
                buffer.with_reserve(|b| b.quarantine_samples(&unreadable, now_ms()))?;
                report.quarantined += unreadable.len() as u64;
            }
            let marks = marks(buffer)?;
            let (done, counts) = samples_batch(central, buffer, &good, &marks, epoch)?;
            report.samples += (done.committed - counts.collisions) as u64;
            report.already_present += counts.identical as u64;
            report.collisions += counts.collisions as u64;
            report.quarantined += done.rejected as u64;
            remaining = if fetched < batch_size {
                buffer.unsynced_depth()?.0
            } else {
                remaining.saturating_sub(fetched as u64)
            };
            report.remaining = remaining;
            progress(Progress {
                done: report.samples + report.quarantined,
                remaining,
            });
        }
        for journal in Journal::ALL {
            loop {
                if stop.load(Ordering::Relaxed) {
                    report.stopped = true;
                    return Ok(());
                }
                let rows = buffer.unsynced_journal(journal, batch_size)?;
                if rows.is_empty() {
                    break;
                }
                let marks = marks(buffer)?;
                let (done, counts) = journal_batch(central, buffer, journal, &rows, &marks, epoch)?;
                report.journal_rows += (done.committed - counts.collisions) as u64;
                report.collisions += counts.collisions as u64;
                report.journal_rejected += done.rejected as u64;
            }
        }
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

/// On a new connection: whatever the buffer marked synced but MySQL no longer holds (the newest
/// rows of a host, or all of them: a restore from an older backup, a deleted host) goes back
/// to the queue while the buffer still keeps it, so it is sent again rather than lost.
fn requeue_missing(
    central: &mut Central,
    buffer: &mut SyncQueue,
    appliance: &str,
) -> Result<(), Error> {
    let present = central.present_samples()?;
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
    for journal in Journal::ALL {
        let present = central.present_journal(journal.table())?;
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
            settle(&mut buffer.borrow_mut(), None, &written, epoch, &mut counts)
                .map_err(Attempt::Fatal)
        },
        &mut |row, message| {
            tracing::error!(host = %row.host, seq = row.seq, reason = %message, "MySQL refused a sample; quarantined");
            Ok(buffer
                .borrow_mut()
                .with_reserve(|b| b.quarantine_samples(&[(row.id, message.clone())], now_ms()))?)
        },
    )?;
    Ok((done, counts))
}

/// After a COMMIT: marks what is now central synced, records and logs the collisions.
/// `journal` is `None` for samples.
fn settle(
    buffer: &mut SyncQueue,
    journal: Option<Journal>,
    written: &central::Written,
    epoch: i64,
    counts: &mut Counts,
) -> Result<(), Error> {
    let stored: Vec<i64> = written.stored().collect();
    let table = match journal {
        None => {
            // Through the disk reserve: rows committed centrally must be marked, full disk or not.
            buffer.with_reserve(|b| b.mark_samples_synced(&stored, now_ms()))?;
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
