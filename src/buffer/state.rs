//! Typed state the loops keep in the buffer: the buffer's identity (its epoch), the outcome
//! of the last sync pass and the operator warning retention raises.
//!
//! The `kv` table holds the text; every key is named once, in [`key`], and read or written
//! only through the typed accessors here, so a loop never hands another a bare string key.
//! Writers: sync records [`SyncStatus`] (through [`super::SyncQueue`]), retention the
//! buffer warning; readers: [`super::StatusReader`] and the alert step (which reads the
//! warning inside the round's transaction through [`WARNING_KEY`]).

use rusqlite::{Connection, OptionalExtension, params};

use super::{Buffer, Result};

/// Every key of the `kv` table, each named once. The alert step's keys are written only by
/// the round writer and parsed into its typed snapshot (`alert::plan::Snapshot`) in one
/// place, `alert::Alerting::snapshot`.
pub(crate) mod key {
    /// Time of the last successful sync pass, Unix ms as decimal text.
    pub const SYNC_LAST_SUCCESS: &str = "sync.last_success_at";
    /// Message of the last failed sync pass; empty after a success.
    pub const SYNC_LAST_ERROR: &str = "sync.last_error";
    /// With several central servers listed: each one's health after the last pass, `; `-separated.
    pub const SYNC_SERVERS: &str = "sync.servers";
    /// Rows per second of the last sync pass that sent samples, decimal text.
    pub const SYNC_DRAIN_RATE: &str = "sync.drain_rate";
    /// While the schedule holds sync: when the next window opens, Unix ms; empty otherwise.
    pub const SYNC_PAUSED_UNTIL: &str = "sync.paused_until";
    /// Where live batches opened a new stream of a host's samples ahead of its backlog:
    /// JSON `{host: [seq, ...]}` (see `SyncQueue::add_stream_splits`).
    pub const SYNC_STREAM_SPLITS: &str = "sync.stream_splits";
    /// The row-id range `lo,hi` of the samples batch sync has in flight (claimed before it is
    /// sent; see `SyncQueue::claim_unsynced`): retention never sheds an unsynced row in it.
    pub const SYNC_IN_FLIGHT: &str = "sync.in_flight";
    /// The boot (`/proc/sys/kernel/random/boot_id`) the buffer's monotonic clock offset is for.
    pub const CLOCK_BOOT_ID: &str = "clock.boot_id";
    /// The buffer's monotonic clock minus `CLOCK_BOOTTIME` in this boot, ms (`mono.rs`).
    pub const CLOCK_OFFSET: &str = "clock.offset_ms";
    /// The wall clock minus the buffer's monotonic clock when last checked, ms: a change of
    /// more than `mono::STEP_MS` is a step of the wall clock.
    pub const CLOCK_WALL_OFFSET: &str = "clock.wall_offset_ms";
    /// The monotonic time of the last step (or of this boot's start): samples received since
    /// then are flagged when the next step comes.
    pub const CLOCK_SINCE: &str = "clock.since_mono_ms";
    /// The operator warning of retention; empty when no bound is near.
    pub const BUFFER_WARNING: &str = "buffer.warning";
    /// Time-to-first-loss as the round writer last computed it, seconds as decimal text.
    pub const TIME_TO_FIRST_LOSS: &str = "buffer.time_to_first_loss_s";
    /// Alert events held back by the mail rate limit, per recipient: JSON `{recipient: [event id]}`.
    pub const ALERT_HELD: &str = "alert.held";
    /// The site-unreachable alert's state while it fires: JSON.
    pub const ALERT_SITE: &str = "alert.site";
    /// The bastion-unreachable alerts while they fire: JSON `{bastion: state}`.
    pub const ALERT_BASTIONS: &str = "alert.bastions";
    /// The time-to-first-loss alert while it fires: `mailed` or `withheld`.
    pub const ALERT_LOSS: &str = "alert.loss";
    /// The damaged buffer file this one replaced: JSON `damage::Damage`.
    pub const BUFFER_DAMAGE: &str = "buffer.damage";
    /// The buffer warning last mailed, so that one episode is mailed once.
    pub const ALERT_BUFFER_WARNING_MAILED: &str = "alert.buffer_warning_mailed";
}

/// The kv key of the operator warning (read by the alert step inside the round's
/// transaction); empty when no bound is near.
pub const WARNING_KEY: &str = key::BUFFER_WARNING;

/// The outcome of the sync passes, as the sync loop records it and `edgemon status` shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncStatus {
    /// Time of the last successful pass, Unix ms.
    pub last_success_at: Option<i64>,
    /// Message of the last pass when it failed; `None` after a success.
    pub last_error: Option<String>,
    /// With several central servers listed: each one's health after the last pass.
    pub servers: Option<String>,
    /// Rows per second of the last pass that sent samples.
    pub drain_rate: Option<f64>,
    /// While `sync.schedule` holds sync: when the next window opens, Unix ms.
    pub paused_until: Option<i64>,
}

fn get(buffer: &Buffer, key: &'static str, doing: &'static str) -> Result<Option<String>> {
    read(buffer.conn(), key)
        .optional()
        .map_err(buffer.err(doing))
}

fn read(conn: &Connection, key: &str) -> rusqlite::Result<String> {
    conn.query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
}

fn set(buffer: &Buffer, key: &'static str, value: &str, doing: &'static str) -> Result<()> {
    buffer
        .conn()
        .execute(
            "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )
        .map(drop)
        .map_err(buffer.err(doing))
}

impl Buffer {
    /// This buffer file's epoch: drawn at random when the file was created (or migrated to
    /// schema 2), part of every central identity.
    pub(crate) fn read_epoch(&self) -> Result<i64> {
        self.conn()
            .query_row("SELECT epoch FROM buffer_identity WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(self.err("reading the buffer epoch"))
    }

    /// Time-to-first-loss as the round writer last computed it, seconds.
    pub(crate) fn time_to_first_loss(&self) -> Result<Option<i64>> {
        Ok(
            get(self, key::TIME_TO_FIRST_LOSS, "reading time-to-first-loss")?
                .and_then(|v| v.parse().ok()),
        )
    }

    /// The outcome of the sync passes so far.
    pub(crate) fn sync_status(&self) -> Result<SyncStatus> {
        let doing = "reading the sync status";
        Ok(SyncStatus {
            last_success_at: get(self, key::SYNC_LAST_SUCCESS, doing)?.and_then(|v| v.parse().ok()),
            last_error: get(self, key::SYNC_LAST_ERROR, doing)?.filter(|v| !v.is_empty()),
            servers: get(self, key::SYNC_SERVERS, doing)?.filter(|v| !v.is_empty()),
            drain_rate: get(self, key::SYNC_DRAIN_RATE, doing)?.and_then(|v| v.parse().ok()),
            paused_until: get(self, key::SYNC_PAUSED_UNTIL, doing)?.and_then(|v| v.parse().ok()),
        })
    }

    /// Records the central servers' health after a pass (several servers listed).
    pub(crate) fn note_sync_servers(&self, health: &str) -> Result<()> {
        set(
            self,
            key::SYNC_SERVERS,
            health,
            "recording the central servers' health",
        )
    }

    /// Records the rows per second of a pass that sent samples.
    pub(crate) fn note_drain_rate(&self, rows_per_s: f64) -> Result<()> {
        set(
            self,
            key::SYNC_DRAIN_RATE,
            &format!("{rows_per_s:.1}"),
            "recording the drain rate",
        )
    }

    /// Records that the schedule holds sync until `opens_at` (Unix ms), or (`None`) that it
    /// does not.
    pub(crate) fn note_paused(&self, opens_at: Option<i64>) -> Result<()> {
        let value = opens_at.map(|at| at.to_string()).unwrap_or_default();
        set(
            self,
            key::SYNC_PAUSED_UNTIL,
            &value,
            "recording the sync pause",
        )
    }

    /// The stream splits per host name (see [`key::SYNC_STREAM_SPLITS`]), each list ascending.
    pub(crate) fn stream_splits(&self) -> Result<std::collections::BTreeMap<String, Vec<i64>>> {
        let text = get(self, key::SYNC_STREAM_SPLITS, "reading the stream splits")?;
        match text.filter(|t| !t.is_empty()) {
            None => Ok(Default::default()),
            Some(text) => Ok(serde_json::from_str(&text).unwrap_or_else(|err| {
                // Only the re-queue after a central restore reads them: warn, start afresh.
                tracing::warn!(buffer = %self.path().display(), key = key::SYNC_STREAM_SPLITS, error = %err,
                    "unreadable stream splits ignored");
                Default::default()
            })),
        }
    }

    /// Replaces the stream splits.
    pub(crate) fn set_stream_splits(
        &self,
        splits: &std::collections::BTreeMap<String, Vec<i64>>,
    ) -> Result<()> {
        let text = serde_json::to_string(splits).unwrap_or_default();
        set(
            self,
            key::SYNC_STREAM_SPLITS,
            &text,
            "writing the stream splits",
        )
    }

    /// Records a successful sync pass at `at` (Unix ms); clears the last error.
    pub(crate) fn note_sync_success(&self, at: i64) -> Result<()> {
        let doing = "recording the sync outcome";
        set(self, key::SYNC_LAST_SUCCESS, &at.to_string(), doing)?;
        set(self, key::SYNC_LAST_ERROR, "", doing)
    }

    /// Records a failed sync pass with its message.
    pub(crate) fn note_sync_failure(&self, message: &str) -> Result<()> {
        set(
            self,
            key::SYNC_LAST_ERROR,
            message,
            "recording the sync outcome",
        )
    }

    /// The operator warning of retention, `None` when no bound is near.
    pub(crate) fn buffer_warning(&self) -> Result<Option<String>> {
        Ok(get(self, key::BUFFER_WARNING, "reading the buffer warning")?.filter(|v| !v.is_empty()))
    }

    /// Sets (`Some`) or clears (`None`) the operator warning.
    pub(crate) fn set_buffer_warning(&self, warning: Option<&str>) -> Result<()> {
        set(
            self,
            key::BUFFER_WARNING,
            warning.unwrap_or_default(),
            "writing the buffer warning",
        )
    }
}
