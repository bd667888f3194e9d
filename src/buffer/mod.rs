//! The local SQLite buffer: the only module that knows SQLite.
//!
//! Invariant: a sample is committed here before anything downstream (sync,
//! alerts) sees it, and it is marked synced only after the central MySQL
//! COMMIT. A whole collection round — samples, errors, host bookkeeping and the
//! alert transitions and mail it causes — is written in one transaction
//! ([`Buffer::record_round`]), so a killed process leaves either all of a round
//! or none of it.
//!
//! The database runs in WAL mode with `synchronous = FULL`, so a committed
//! round survives a power cut, and readers (`edgemon status`) never block the
//! daemon. Schema and migrations: `schema/sqlite.sql`, `migrations.rs`.
//!
//! It does not decide anything: which rows to sync, which alerts fire and
//! what to shed are decided by `sync`, `alert` and `retention` and executed
//! through the queries here.
//!
//! Each loop holds the buffer in its own role, with its own connection on the
//! same WAL file: [`Buffer`] writes rounds, [`SyncQueue`] is the sync loop's
//! queue, [`Outbox`] the mailer's, and [`StatusReader`] reads read-only for
//! `edgemon status`, metrics and the status page. The loops' own state in the
//! `kv` table is typed (`state.rs`): no loop passes another a text key.

mod alert_queries;
mod counts;
mod damage;
mod disk;
mod family_queries;
mod horizon;
mod migrations;
pub mod mono;
mod outbox;
mod retention;
mod round;
mod sections;
mod silence_queries;
mod state;
mod status;
mod sync_queries;
mod web_queries;

pub use alert_queries::{AlertRow, NewAlertEvent, NewMail, SampleBrief};
pub use damage::{CHECK_AT_OPEN_MAX, Damage, QueuedMail};
pub use disk::{DiskFullState, FsSpace, Room, Unstored, fs_space, reserve_size};
pub use family_queries::{FamilyPoint, HostSections};
pub use horizon::{HorizonInput, TTFL_KEY, time_to_first_loss};
pub use migrations::LATEST as SCHEMA_VERSION;
pub use outbox::{Outbox, OutboxRow};
pub use retention::RetentionReport;
pub use round::Round;
pub use sections::{DecodeError, example_sections};
pub use silence_queries::{AckRow, NewSilence, SilenceRow};
pub(crate) use state::key as kv_key;
pub use state::{SyncStatus, WARNING_KEY};
pub use status::{BufferStatus, DiskStatus, HostStatus, OutboxStatus, StatusReader};
pub use sync_queries::{
    COLLIDED, Collision, HostMark, Journal, JournalFields, JournalRow, MarkedHost, SyncQueue,
    SyncSample,
};
pub use web_queries::{ActiveAlert, Series, SeriesPoint, WebHost};

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};

use crate::collect::outcome::HostOutcome;
use crate::report::Report;

/// Errors of the buffer; callers branch on [`Error::DiskFull`] (shed, alert) and [`Error::Busy`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or created.
    #[error("cannot open buffer {path}: {source}")]
    Open {
        /// The SQLite file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// Bringing the schema up to date failed.
    #[error("cannot migrate buffer {path}: {source}")]
    Migrate {
        /// The SQLite file.
        path: PathBuf,
        /// The cause.
        source: migrations::MigrateError,
    },
    /// The disk (or the database's size limit) is full; nothing of the transaction was written.
    #[error("buffer {path} is full (disk full?) while {doing}")]
    DiskFull {
        /// The SQLite file.
        path: PathBuf,
        /// What was being written.
        doing: &'static str,
    },
    /// Another process held the database locked for longer than the busy timeout.
    #[error("buffer {path} is locked by another process while {doing}")]
    Busy {
        /// The SQLite file.
        path: PathBuf,
        /// What was being done.
        doing: &'static str,
    },
    /// The file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB, or a failed check at open): the
    /// round writer sets it aside and carries on under a new buffer (`damage.rs`).
    #[error("buffer {path} is damaged ({doing}): {detail}")]
    Damaged {
        /// The SQLite file.
        path: PathBuf,
        /// What was being done.
        doing: &'static str,
        /// SQLite's error or the check's complaint.
        detail: String,
    },
    /// Any other SQLite failure.
    #[error("buffer {path}: {doing}: {source}")]
    Sql {
        /// The SQLite file.
        path: PathBuf,
        /// What was being done.
        doing: &'static str,
        /// SQLite's error.
        source: rusqlite::Error,
    },
}

impl Error {
    /// True when the error says the file itself is damaged, whatever was being done.
    pub fn is_damaged(&self) -> bool {
        match self {
            Error::Damaged { .. } => true,
            Error::Open { source, .. } | Error::Sql { source, .. } => damage::is_damage(source),
            Error::Migrate { source, .. } => match source {
                migrations::MigrateError::Step { source, .. }
                | migrations::MigrateError::Sqlite(source) => damage::is_damage(source),
                migrations::MigrateError::TooNew { .. } => false,
            },
            Error::DiskFull { .. } | Error::Busy { .. } => false,
        }
    }
}

/// Result of buffer operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a connection waits for another's lock before SQLITE_BUSY. Readers never hold a
/// lock a writer waits for (WAL), and checkpoints never wait (`disk.rs`), so only another
/// writer's transaction can make a writer wait, and those are short.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The current time as Unix milliseconds (the buffer's timestamps), from [`crate::clock`].
pub use crate::clock::now_ms;

/// An open buffer, as the round writer holds it (and the connection each role wraps).
///
/// The buffer's roles, each with its own connection on the same WAL file:
/// - [`Buffer`] — the round writer: [`Buffer::record_round`] (samples, errors, host state,
///   alert state, outbox inserts: one transaction), hosts, the disk reserve before a round.
/// - [`SyncQueue`] — the sync loop: unsynced rows in order, marked synced only after the
///   central COMMIT, quarantine, collisions, re-queue, retention, the sync status.
/// - [`Outbox`] — the mailer: due mail, marked sent only after the server accepted it.
/// - [`StatusReader`] — read-only: `edgemon status`, metrics, the status page.
pub struct Buffer {
    conn: Connection,
    path: PathBuf,
    disk: disk::Disk,
    /// Set when a write met a damaged file (see [`Buffer::note_damage`]).
    damaged: Option<String>,
    /// Cache of the `dictionary` table (member keys and text values of the sections).
    dict: std::sync::Mutex<sections::Dictionary>,
}

/// What [`Buffer::record_round`] stored for one host.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The host's row id.
    pub host_id: i64,
    /// The host's name.
    pub host: String,
    /// The sequence number given to its sample, or `None` when it failed.
    pub seq: Option<i64>,
    /// Consecutive failed rounds after this one (0 after a sample).
    pub consecutive_failures: i64,
}

/// Totals of one recorded round.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundTotals {
    /// Samples stored.
    pub samples: usize,
    /// Hosts that failed.
    pub failures: usize,
    /// Samples whose agent clock was outside the allowed skew.
    pub skewed: usize,
}

impl Buffer {
    /// Opens (creating if needed) the buffer at `path` for reading and writing and migrates it.
    pub fn open(path: &Path) -> Result<Buffer> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Open {
                path: path.to_path_buf(),
                source: rusqlite::Error::InvalidPath(PathBuf::from(format!(
                    "{}: {e}",
                    dir.display()
                ))),
            })?;
        }
        let disk = disk::Disk::new(path);
        let conn = match Self::connect(path, &disk) {
            // Opening needs a little space of its own (the WAL index `-shm`, the WAL, the
            // bookkeeping): on a full disk the reserve gives it, as it does to marking.
            Err(error) if disk.reserve_present() && disk.space().is_some_and(|s| disk.tight(s)) => {
                tracing::warn!(buffer = %path.display(), %error, "cannot open the buffer on a full disk; using the disk reserve");
                disk.release_reserve();
                Self::connect(path, &disk)?
            }
            other => other?,
        };
        let buffer = Buffer {
            conn,
            path: path.to_path_buf(),
            disk,
            damaged: None,
            dict: Default::default(),
        };
        buffer.convert_to_incremental_vacuum();
        Ok(buffer)
    }

    /// [`Buffer::open`] for the round writer at start: also checks every page of files up to
    /// [`CHECK_AT_OPEN_MAX`] (`PRAGMA quick_check`), so a damaged file is found before the
    /// first round rather than by it. [`Error::is_damaged`] tells the caller to set it aside.
    pub fn open_checked(path: &Path) -> Result<Buffer> {
        let buffer = Buffer::open(path)?;
        if std::fs::metadata(path).map_or(0, |m| m.len()) <= CHECK_AT_OPEN_MAX
            && let Err(detail) = damage::quick_check(&buffer.conn)
        {
            return Err(Error::Damaged {
                path: path.to_path_buf(),
                doing: "checking its pages at open",
                detail,
            });
        }
        Ok(buffer)
    }

    /// Sets the damaged buffer at `path` aside (renamed with a timestamp, never deleted),
    /// opens a new one in its place (a new epoch) and salvages into it what the damaged
    /// file still gives ([`Buffer::salvage`]); `mails` composes the operator mail.
    pub fn replace_damaged(
        path: &Path,
        error: &str,
        now_ms: i64,
        mails: impl FnOnce(&Damage) -> Vec<damage::QueuedMail>,
    ) -> Result<(Buffer, Damage)> {
        let aside = damage::set_aside(path, now_ms)?;
        let mut buffer = Buffer::open(path)?;
        let damage = buffer.salvage(&aside, error, now_ms, mails)?;
        Ok((buffer, damage))
    }

    /// The writer's connection on `path`: pragmas, then the schema brought up to date
    /// ([`disk::migrate_with_room`]).
    fn connect(path: &Path, disk: &disk::Disk) -> Result<Connection> {
        let open_err = |source| Error::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // Before the first table exists, so that a new buffer can give freed pages back to
        // the filesystem (retention's `buffer.min_free`); older files are converted below.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        // Checkpoint well before the WAL outgrows the reserve: a checkpoint must be able to
        // grow the main file out of the reserve on a full disk (see `disk.rs`).
        let wal_pages = (disk.reserve_size / 2 / disk::PAGE).clamp(32, 1000);
        conn.pragma_update(None, "wal_autocheckpoint", wal_pages as i64)
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_size_limit", (disk.reserve_size / 2) as i64)
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        disk::migrate_with_room(&mut conn, disk, path).map_err(|source| Error::Migrate {
            path: path.to_path_buf(),
            source,
        })?;
        mono::start(&mut conn, path);
        Ok(conn)
    }

    /// Buffers created before `auto_vacuum = INCREMENTAL` keep freed pages for reuse but never
    /// shrink; converting takes a VACUUM (twice the file in free space, and time), so it is
    /// done at open only for files up to 256 MiB when the filesystem has room for it.
    fn convert_to_incremental_vacuum(&self) {
        let mode: i64 = self
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .unwrap_or(2);
        if mode == 2 {
            return;
        }
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let room = self.disk.space().map_or(0, |s| s.avail);
        if size > 256 << 20 || room < 2 * size + self.disk.reserve_size {
            tracing::warn!(
                buffer = %self.path.display(),
                size,
                "buffer file cannot shrink (auto_vacuum off) and is too large to convert now; \
                 buffer.min_free can only stop its growth"
            );
            return;
        }
        let started = std::time::Instant::now();
        match self
            .conn
            .execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
        {
            Ok(()) => tracing::info!(
                buffer = %self.path.display(),
                ms = started.elapsed().as_millis() as u64,
                "buffer converted to incremental vacuum, so retention can give space back"
            ),
            Err(error) => {
                tracing::warn!(buffer = %self.path.display(), %error, "cannot convert the buffer to incremental vacuum")
            }
        }
    }

    /// Opens an existing buffer read-only (for [`StatusReader`]).
    pub(crate) fn open_read_only(path: &Path) -> Result<Buffer> {
        let open_err = |source| Error::Open {
            path: path.to_path_buf(),
            source,
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        Ok(Buffer {
            conn,
            path: path.to_path_buf(),
            disk: disk::Disk::new(path),
            damaged: None,
            dict: Default::default(),
        })
    }

    /// The SQLite file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Maps a rusqlite error to [`Error`], recognising a full disk and a lock timeout.
    pub(crate) fn err(&self, doing: &'static str) -> impl Fn(rusqlite::Error) -> Error + '_ {
        move |source| classify(&self.path, doing, source)
    }

    /// Makes sure every configured host has a row; updates addresses that changed.
    /// Writes nothing when nothing changed, so a daemon starts on a full disk.
    pub fn register_hosts<'a>(
        &mut self,
        hosts: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Result<()> {
        let hosts: Vec<(&str, String)> = hosts.into_iter().collect();
        self.with_reserve(|buffer| {
            let path = buffer.path.clone();
            let e = move |source| classify(&path, "registering hosts", source);
            let tx = buffer
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(&e)?;
            for (name, address) in &hosts {
                upsert_host(&tx, name, address).map_err(&e)?;
            }
            tx.commit().map_err(&e)
        })
    }

    /// Writes one round in a single transaction: a sample (with the next sequence number of
    /// its host) or a collection error per outcome, the hosts' bookkeeping, and whatever
    /// `also` writes through the [`RoundTx`]. Nothing of the round is stored unless all of
    /// it is. The explicit form is [`Buffer::begin_round`], which the alert step uses.
    pub fn record_round<T>(
        &mut self,
        outcomes: &[HostOutcome],
        max_clock_skew: Duration,
        also: impl FnOnce(&mut RoundTx<'_>, &[Recorded]) -> Result<T>,
    ) -> Result<(RoundTotals, T)> {
        let mut round = self.begin_round()?;
        let recorded = round.record(outcomes, max_clock_skew)?.to_vec();
        let extra = also(round.tx_mut(), &recorded)?;
        let totals = round.commit()?;
        Ok((totals, extra))
    }

    /// The underlying connection, for the query files of this module.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The underlying connection, mutably, for the query files of this module.
    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

/// The transaction of one round, handed to the alert step so that its state and its mail
/// commit together with the samples that caused them.
pub struct RoundTx<'a> {
    tx: Transaction<'a>,
    path: PathBuf,
    dict: &'a std::sync::Mutex<sections::Dictionary>,
}

impl RoundTx<'_> {
    /// The transaction, for the query files of this module.
    pub(crate) fn tx(&self) -> &Transaction<'_> {
        &self.tx
    }

    /// Maps a rusqlite error to [`Error`].
    pub(crate) fn err(&self, doing: &'static str) -> impl Fn(rusqlite::Error) -> Error + '_ {
        move |source| classify(&self.path, doing, source)
    }

    /// Records samples that could not be stored as drops, consuming their sequence numbers.
    fn record_unstored(
        &mut self,
        unstored: &std::collections::BTreeMap<String, u64>,
        reason: &str,
        outcomes: &[HostOutcome],
    ) -> Result<()> {
        let e = self.err("recording samples that could not be stored");
        let now = now_ms();
        for (host, &count) in unstored.iter().filter(|(_, n)| **n > 0) {
            let address = outcomes
                .iter()
                .find(|o| &o.host == host)
                .map(|o| o.address.clone());
            let row: Option<(i64, i64)> = self
                .tx
                .query_row(
                    "SELECT id, next_seq FROM hosts WHERE name = ?1",
                    [host],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(&e)?;
            let (host_id, first) = match (row, address) {
                (Some(row), _) => row,
                (None, Some(address)) => {
                    upsert_host(&self.tx, host, &address).map_err(&e)?;
                    self.tx
                        .query_row(
                            "SELECT id, next_seq FROM hosts WHERE name = ?1",
                            [host],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .map_err(&e)?
                }
                (None, None) => {
                    // Only the folded "(all hosts)" total of a state file too small for its
                    // fleet: no host to charge the drop to, so say it loudly at least.
                    tracing::error!(
                        entry = %host,
                        samples = count,
                        "samples a full disk kept from being stored cannot be recorded as drops: \
                         their hosts are unknown"
                    );
                    continue;
                }
            };
            let count = count as i64;
            self.tx
                .execute(
                    "INSERT INTO drops (host_id, first_seq, last_seq, count, reason, at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![host_id, first, first + count - 1, count, reason, now],
                )
                .map_err(&e)?;
            self.tx
                .execute(
                    "UPDATE hosts SET next_seq = next_seq + ?2 WHERE id = ?1",
                    params![host_id, count],
                )
                .map_err(&e)?;
        }
        Ok(())
    }

    fn record_outcome(
        &mut self,
        outcome: &HostOutcome,
        skew: Duration,
        totals: &mut RoundTotals,
    ) -> Result<Recorded> {
        let e = self.err("recording a round");
        upsert_host(&self.tx, &outcome.host, &outcome.address).map_err(&e)?;
        let (host_id, next_seq, failures): (i64, i64, i64) = self
            .tx
            .query_row(
                "SELECT id, next_seq, consecutive_failures FROM hosts WHERE name = ?1",
                [&outcome.host],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(&e)?;
        let received_at = outcome.started_at_ms + outcome.duration.as_millis() as i64;
        let duration_ms = outcome.duration.as_millis() as i64;
        match &outcome.result {
            Ok(report) => {
                let skewed =
                    (report.collected_at_ms - received_at).unsigned_abs() > skew.as_millis() as u64;
                let mono = mono::now(&self.tx).map_err(&e)?;
                let mut dict = self.dict.lock().unwrap_or_else(|p| p.into_inner());
                insert_sample(
                    &self.tx,
                    &mut dict,
                    host_id,
                    next_seq,
                    [received_at, mono],
                    skewed,
                    report,
                )
                .map_err(&e)?;
                drop(dict);
                self.tx
                    .execute(
                        "UPDATE hosts SET next_seq = ?2, last_sample_at = ?3, last_attempt_at = ?4,
                                          last_duration_ms = ?5, consecutive_failures = 0
                         WHERE id = ?1",
                        params![
                            host_id,
                            next_seq + 1,
                            received_at,
                            outcome.started_at_ms,
                            duration_ms
                        ],
                    )
                    .map_err(&e)?;
                totals.samples += 1;
                totals.skewed += usize::from(skewed);
                Ok(Recorded {
                    host_id,
                    host: outcome.host.clone(),
                    seq: Some(next_seq),
                    consecutive_failures: 0,
                })
            }
            Err(error) => {
                self.tx
                    .execute(
                        "INSERT INTO collection_errors (host_id, at, class, message) VALUES (?1, ?2, ?3, ?4)",
                        params![host_id, outcome.started_at_ms, error.class.as_str(), error.message],
                    )
                    .map_err(&e)?;
                self.tx
                    .execute(
                        "UPDATE hosts SET last_attempt_at = ?2, last_duration_ms = ?3, last_error_at = ?2,
                                          last_error_class = ?4, last_error = ?5,
                                          consecutive_failures = consecutive_failures + 1
                         WHERE id = ?1",
                        params![host_id, outcome.started_at_ms, duration_ms, error.class.as_str(), error.message],
                    )
                    .map_err(&e)?;
                totals.failures += 1;
                Ok(Recorded {
                    host_id,
                    host: outcome.host.clone(),
                    seq: None,
                    consecutive_failures: failures + 1,
                })
            }
        }
    }
}

/// Adds a host row, or updates the address of an existing one (its sequence is kept).
fn upsert_host(tx: &Transaction<'_>, name: &str, address: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO hosts (name, address) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET address = excluded.address
         WHERE address IS NOT excluded.address",
    )?
    .execute(params![name, address])
    .map(drop)
}

fn insert_sample(
    tx: &Transaction<'_>,
    dict: &mut sections::Dictionary,
    host_id: i64,
    seq: i64,
    [received_at, received_mono]: [i64; 2],
    skewed: bool,
    r: &Report,
) -> rusqlite::Result<()> {
    let cores = r
        .cores
        .iter()
        .map(|c| format!("{c:.2}"))
        .collect::<Vec<_>>()
        .join(",");
    let extras = if r.extras.is_empty() {
        None
    } else {
        let map: serde_json::Map<String, serde_json::Value> = r
            .extras
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        Some(serde_json::Value::Object(map).to_string())
    };
    let [load1, load5, load15] = r.load.map(|l| l.map(Some)).unwrap_or([None; 3]);
    let sections = sections::encode(&r.sections, |text| dict.intern(tx, text))?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO samples (host_id, seq, collected_at, received_at, clock_skewed, cpu, cores,
                              mem_used, mem_total, swap_used, swap_total, uptime_s, boot_time_s,
                              load1, load5, load15, hostname, os, kernel, extras, received_mono,
                              sections)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
    )?;
    stmt.execute(params![
        host_id,
        seq,
        r.collected_at_ms,
        received_at,
        skewed,
        r.cpu_percent,
        cores,
        r.mem_used as i64,
        r.mem_total as i64,
        r.swap_used as i64,
        r.swap_total as i64,
        r.uptime_s as i64,
        r.boot_time_s.map(|b| b as i64),
        load1,
        load5,
        load15,
        r.hostname,
        r.os,
        r.kernel,
        extras,
        received_mono,
        sections,
    ])?;
    Ok(())
}

fn classify(path: &Path, doing: &'static str, source: rusqlite::Error) -> Error {
    let path = path.to_path_buf();
    match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => Error::DiskFull { path, doing },
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            Error::Busy { path, doing }
        }
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            Error::Damaged {
                path,
                doing,
                detail: source.to_string(),
            }
        }
        _ => Error::Sql {
            path,
            doing,
            source,
        },
    }
}

#[cfg(test)]
mod tests;
