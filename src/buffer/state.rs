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
    /// The operator warning of retention; empty when no bound is near.
    pub const BUFFER_WARNING: &str = "buffer.warning";
    /// Time-to-first-loss as the round writer last computed it, seconds as decimal text.
    pub const TIME_TO_FIRST_LOSS: &str = "buffer.time_to_first_loss_s";
    /// Alert events held back by the mail rate limit, per recipient: JSON `{recipient: [event id]}`.
    pub const ALERT_HELD: &str = "alert.held";
    /// The site-unreachable alert's state while it fires: JSON.
    pub const ALERT_SITE: &str = "alert.site";
    /// The time-to-first-loss alert while it fires: `mailed` or `withheld`.
    pub const ALERT_LOSS: &str = "alert.loss";
    /// The buffer warning last mailed, so that one episode is mailed once.
    pub const ALERT_BUFFER_WARNING_MAILED: &str = "alert.buffer_warning_mailed";
}

/// The kv key of the operator warning (read by the alert step inside the round's
/// transaction); empty when no bound is near.
pub const WARNING_KEY: &str = key::BUFFER_WARNING;

/// The outcome of the sync passes, as the sync loop records it and `edgemon status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStatus {
    /// Time of the last successful pass, Unix ms.
    pub last_success_at: Option<i64>,
    /// Message of the last pass when it failed; `None` after a success.
    pub last_error: Option<String>,
    /// With several central servers listed: each one's health after the last pass.
    pub servers: Option<String>,
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
