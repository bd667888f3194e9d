//! [`StatusReader`], the read-only role of the buffer, and the queries behind
//! `edgemon status`: per-host state, buffer depth, sync progress, outbox and alerts. Field names are part of the `--json`
//! contract documented in the README; add fields, never rename them.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use std::path::Path;

use super::{Buffer, Result, SyncStatus};

/// One host as `edgemon status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// Configured name.
    pub name: String,
    /// Address as shown to operators.
    pub address: String,
    /// Receive time of the newest sample (Unix ms).
    pub last_sample_at: Option<i64>,
    /// Sequence number of the newest sample.
    pub last_seq: Option<i64>,
    /// CPU % of the newest sample.
    pub cpu: Option<f64>,
    /// Memory used / total of the newest sample, %.
    pub memory_percent: Option<f64>,
    /// Swap used / total of the newest sample, % (0 without swap).
    pub swap_percent: Option<f64>,
    /// Uptime of the newest sample, seconds.
    pub uptime_s: Option<i64>,
    /// Time of the last attempt (Unix ms).
    pub last_attempt_at: Option<i64>,
    /// Duration of the last attempt, ms.
    pub last_duration_ms: Option<i64>,
    /// Time of the last error (Unix ms).
    pub last_error_at: Option<i64>,
    /// Class of the last error (`timeout`, `auth-refused`, ...).
    pub last_error_class: Option<String>,
    /// Message of the last error.
    pub last_error: Option<String>,
    /// Failed rounds in a row (0 when the last attempt succeeded).
    pub consecutive_failures: i64,
    /// Rules currently firing on this host.
    pub firing_alerts: Vec<String>,
    /// Samples collected but not stored (disk full), not yet recorded as drops.
    pub unstored_samples: u64,
    /// Acknowledged alerts of this host: who, when, why (reminders stop until they resolve).
    pub acks: Vec<super::AckRow>,
}

/// The buffer's filesystem, as `edgemon status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiskStatus {
    /// Rounds are being lost because the filesystem is full.
    pub full: bool,
    /// Since when (Unix ms).
    pub full_since: Option<i64>,
    /// Samples not stored, all hosts, not yet recorded as drops.
    pub unstored_samples: u64,
    /// Why the last round was not stored.
    pub last_error: Option<String>,
    /// Size of the filesystem, bytes.
    pub total_bytes: Option<u64>,
    /// Free space on it, bytes.
    pub free_bytes: Option<u64>,
    /// Size of the disk reserve, bytes.
    pub reserve_bytes: u64,
    /// Whether the reserve is in place (released while the disk is full).
    pub reserve_in_place: bool,
}

/// The outbox of alert mail.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OutboxStatus {
    /// Mails waiting to be sent.
    pub pending: i64,
    /// Mails the server accepted.
    pub sent: i64,
    /// Mails refused permanently.
    pub failed: i64,
    /// Creation time of the oldest pending mail (Unix ms).
    pub oldest_pending_at: Option<i64>,
    /// Last error of the oldest pending mail.
    pub last_error: Option<String>,
}

/// Everything `edgemon status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct BufferStatus {
    /// The SQLite file.
    pub path: String,
    /// Size of the database file plus its WAL, bytes.
    pub size_bytes: u64,
    /// Samples held locally.
    pub samples: i64,
    /// Samples not yet in MySQL.
    pub unsynced: i64,
    /// Collection time of the oldest unsynced sample (Unix ms, receive time).
    pub oldest_unsynced_at: Option<i64>,
    /// Samples MySQL refused for their content.
    pub quarantined: i64,
    /// Unsynced samples dropped by retention, all time (each drop is recorded).
    pub dropped: i64,
    /// Rows whose central identity held other values: not written, kept in the buffer's
    /// `collisions` table (all time).
    pub collisions: i64,
    /// The most recent collision, as "table host seq".
    pub last_collision: Option<String>,
    /// This buffer file's epoch (`None` before the file is migrated to schema 2).
    pub epoch: Option<i64>,
    /// The appliance id the central rows carry (filled by `edgemon status` from the config).
    pub appliance: Option<String>,
    /// Last successful sync (Unix ms).
    pub last_sync_at: Option<i64>,
    /// Last sync error, cleared by the next success.
    pub last_sync_error: Option<String>,
    /// With several central servers listed: each one's health after the last pass.
    pub sync_servers: Option<String>,
    /// Samples per second of the last sync pass that sent samples (the drain rate).
    pub sync_drain_rate: Option<f64>,
    /// Seconds to sync the unsynced samples at `sync_drain_rate`.
    pub sync_eta_s: Option<u64>,
    /// While `sync.schedule` holds sync: when the next window opens, Unix ms.
    pub sync_paused_until: Option<i64>,
    /// `sync_paused_until` as operators read it, in `sync.timezone` (filled by `edgemon status`
    /// from the config).
    pub sync_next_window: Option<String>,
    /// Retention's operator warning (a bound at 80% or more), if any.
    pub buffer_warning: Option<String>,
    /// The damaged buffer file this one replaced (set aside, salvaged), if any.
    pub damaged: Option<super::Damage>,
    /// Seconds until retention would shed an unsynced sample if nothing synced from now on,
    /// as the daemon's last round computed it.
    pub time_to_first_loss_s: Option<i64>,
    /// Mail outbox.
    pub outbox: OutboxStatus,
    /// The buffer's filesystem: free space, the reserve, and samples lost to a full disk.
    pub disk: DiskStatus,
    /// Silences in force or still to come.
    pub silences: Vec<super::SilenceRow>,
    /// Per-host state, by name.
    pub hosts: Vec<HostStatus>,
}

/// The read-only role of the buffer: what `edgemon status`, the metrics endpoint and the
/// status page read. It opens its connection read-only, so it never writes nor blocks the
/// daemon's writers (WAL readers see the last committed state).
pub struct StatusReader {
    pub(super) core: Buffer,
}

impl StatusReader {
    /// Opens the existing buffer at `path` read-only.
    pub fn open(path: &Path) -> Result<StatusReader> {
        Ok(StatusReader {
            core: Buffer::open_read_only(path)?,
        })
    }

    /// The SQLite file.
    pub fn path(&self) -> &Path {
        self.core.path()
    }

    /// The buffer's epoch (see [`super::SyncQueue::epoch`]).
    pub fn epoch(&self) -> Result<i64> {
        self.core.read_epoch()
    }

    /// The outcome of the sync passes so far.
    pub fn sync_status(&self) -> Result<SyncStatus> {
        self.core.sync_status()
    }

    /// The read-only connection, for the query files of this module and tests.
    pub(crate) fn conn(&self) -> &rusqlite::Connection {
        self.core.conn()
    }

    /// Gathers the status.
    pub fn status(&self) -> Result<BufferStatus> {
        let e = self.core.err("reading status");
        let conn = self.core.conn();
        // O(hosts): the per-host counts the writers keep (`counts.rs`), never a scan.
        let (samples, unsynced, oldest_unsynced_at) = super::counts::read(conn).map_err(&e)?;
        let quarantined: i64 = conn
            .query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0))
            .map_err(&e)?;
        let dropped: i64 = conn
            .query_row("SELECT COALESCE(SUM(count), 0) FROM drops", [], |r| {
                r.get(0)
            })
            .map_err(&e)?;
        let outbox = conn
            .query_row(
                "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'sent'), 0),
                        COALESCE(SUM(state = 'failed'), 0), MIN(CASE WHEN state = 'pending' THEN created_at END)
                 FROM outbox",
                [],
                |r| {
                    Ok(OutboxStatus {
                        pending: r.get(0)?,
                        sent: r.get(1)?,
                        failed: r.get(2)?,
                        oldest_pending_at: r.get(3)?,
                        last_error: None,
                    })
                },
            )
            .map_err(&e)?;
        let last_error = conn
            .query_row(
                "SELECT last_error FROM outbox WHERE state = 'pending' AND last_error IS NOT NULL
                 ORDER BY created_at LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(&e)?;
        let outbox = OutboxStatus {
            last_error,
            ..outbox
        };
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(&e)?;
        let (epoch, collisions, last_collision) = if version >= 2 {
            let epoch = self.core.read_epoch()?;
            let collisions: i64 = conn
                .query_row("SELECT COUNT(*) FROM collisions", [], |r| r.get(0))
                .map_err(&e)?;
            let last: Option<String> = conn
                .query_row(
                    "SELECT kind || ' ' || host || COALESCE(' seq ' || seq, ' id ' || local_id)
                     FROM collisions ORDER BY id DESC LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&e)?;
            (Some(epoch), collisions, last)
        } else {
            (None, 0, None)
        };
        let sync = self.core.sync_status()?;
        Ok(BufferStatus {
            path: self.core.path().display().to_string(),
            size_bytes: file_size(self.core.path()),
            samples,
            unsynced,
            oldest_unsynced_at,
            quarantined,
            dropped,
            collisions,
            last_collision,
            epoch,
            appliance: None,
            last_sync_at: sync.last_success_at,
            last_sync_error: sync.last_error,
            sync_servers: sync.servers,
            sync_drain_rate: sync.drain_rate,
            sync_eta_s: sync
                .drain_rate
                .and_then(|rate| crate::sync::pace::eta(rate, unsynced.max(0) as u64))
                .map(|d| d.as_secs()),
            sync_paused_until: sync.paused_until.filter(|&at| at > super::now_ms()),
            sync_next_window: None,
            buffer_warning: self.core.buffer_warning()?,
            damaged: super::damage::read_note(conn).map_err(&e)?,
            time_to_first_loss_s: self.core.time_to_first_loss()?,
            outbox,
            disk: self.disk_status(),
            silences: self.core.silences(super::now_ms())?,
            hosts: self.host_statuses()?,
        })
    }

    fn disk_status(&self) -> DiskStatus {
        let state = &self.core.disk.state;
        let space = self.core.disk.space();
        DiskStatus {
            full: state.full,
            full_since: state.since,
            unstored_samples: state.unstored_total(),
            last_error: state.last_error.clone(),
            total_bytes: space.map(|s| s.total),
            free_bytes: space.map(|s| s.avail),
            reserve_bytes: self.core.disk.reserve_size,
            reserve_in_place: self.core.disk.reserve_present(),
        }
    }

    pub(crate) fn host_statuses(&self) -> Result<Vec<HostStatus>> {
        let e = self.core.err("reading host status");
        let conn = self.core.conn();
        let mut stmt = conn
            .prepare(
                "SELECT h.id, h.name, h.address, h.last_sample_at, h.last_attempt_at, h.last_duration_ms,
                        h.last_error_at, h.last_error_class, h.last_error, h.consecutive_failures,
                        s.seq, s.cpu, s.mem_used, s.mem_total, s.swap_used, s.swap_total, s.uptime_s
                 FROM hosts h
                 LEFT JOIN samples s ON s.host_id = h.id AND s.seq = h.next_seq - 1
                 ORDER BY h.name",
            )
            .map_err(&e)?;
        let percent = |used: Option<i64>, total: Option<i64>| match (used, total) {
            (Some(u), Some(t)) if t > 0 => Some(u as f64 * 100.0 / t as f64),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    HostStatus {
                        name: r.get(1)?,
                        address: r.get(2)?,
                        last_sample_at: r.get(3)?,
                        last_attempt_at: r.get(4)?,
                        last_duration_ms: r.get(5)?,
                        last_error_at: r.get(6)?,
                        last_error_class: r.get(7)?,
                        last_error: r.get(8)?,
                        consecutive_failures: r.get(9)?,
                        last_seq: r.get(10)?,
                        cpu: r.get(11)?,
                        memory_percent: percent(r.get(12)?, r.get(13)?),
                        swap_percent: percent(r.get(14)?, r.get(15)?),
                        uptime_s: r.get(16)?,
                        firing_alerts: Vec::new(),
                        unstored_samples: 0,
                        acks: Vec::new(),
                    },
                ))
            })
            .map_err(&e)?;
        let mut hosts = Vec::new();
        let acks = self.core.acks()?;
        let mut firing = conn
            .prepare("SELECT rule FROM alert_state WHERE host_id = ?1 AND state IN ('firing', 'flapping') ORDER BY rule")
            .map_err(&e)?;
        for row in rows {
            let (id, mut host) = row.map_err(&e)?;
            host.firing_alerts = firing
                .query_map(params![id], |r| r.get(0))
                .map_err(&e)?
                .collect::<rusqlite::Result<_>>()
                .map_err(&e)?;
            host.unstored_samples = self
                .core
                .disk
                .state
                .unstored
                .get(&host.name)
                .copied()
                .unwrap_or(0);
            host.acks = acks.iter().filter(|a| a.host_id == id).cloned().collect();
            hosts.push(host);
        }
        Ok(hosts)
    }
}

pub(crate) fn file_size(path: &std::path::Path) -> u64 {
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    size(path) + size(std::path::Path::new(&wal))
}
