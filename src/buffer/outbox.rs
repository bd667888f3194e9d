//! The mailer's side of the outbox: [`Outbox`], a role of the buffer with its own
//! connection on the same WAL file.
//!
//! Invariant: a mail is marked sent only after the server accepted it, and marking sent or
//! failed goes through the disk reserve ([`Outbox::with_reserve`]), so a full disk never
//! makes a delivered mail go out twice. Mail is *inserted* by the round writer, inside the
//! round's transaction (`alert_queries.rs`), never here.

use std::path::Path;

use rusqlite::params;

use super::{Buffer, Result};

/// How long marking a delivered mail sent keeps retrying a busy buffer before giving up.
pub const MARK_SENT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(600);

/// A pending outbox row, as the mailer sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// Row id.
    pub id: i64,
    /// Stable Message-ID.
    pub message_id: String,
    /// Recipient address.
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// Plain text body.
    pub body: String,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Attempts made so far.
    pub attempts: i64,
}

/// The mailer's handle on the buffer: due mail, marking sent/failed/retry, pending counts.
pub struct Outbox {
    core: Buffer,
}

impl Outbox {
    /// Opens (creating and migrating if needed) the buffer at `path` for the mailer.
    pub fn open(path: &Path) -> Result<Outbox> {
        Ok(Outbox {
            core: Buffer::open(path)?,
        })
    }

    /// The SQLite file.
    pub fn path(&self) -> &Path {
        self.core.path()
    }

    /// Runs `write`; on a full disk releases the reserve, checkpoints and tries once more
    /// (see [`Buffer::with_reserve`]). For marking mail sent or failed.
    pub fn with_reserve<T>(&mut self, write: impl FnMut(&mut Outbox) -> Result<T>) -> Result<T> {
        super::disk::through_reserve(self, |o| &o.core, write)
    }

    fn conn(&self) -> &rusqlite::Connection {
        self.core.conn()
    }
}

/// No retry is scheduled further ahead than this (the mailer's backoff stops at 30 minutes
/// plus jitter): a mail due later than `now` plus this was scheduled before the wall clock
/// stepped back, and is due now rather than after the step is waited out.
pub const RETRY_AHEAD_MAX_MS: i64 = 3_600_000;

impl Outbox {
    /// Pending mail whose next attempt is due at `now`, oldest first, at most `limit`; a retry
    /// scheduled more than [`RETRY_AHEAD_MAX_MS`] ahead counts as due (a backward clock step).
    pub fn due_outbox(&self, now: i64, limit: usize) -> Result<Vec<OutboxRow>> {
        let e = self.core.err("reading due mail");
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT id, message_id, recipient, subject, body, created_at, attempts FROM outbox
                 WHERE state = 'pending' AND (next_attempt_at <= ?1 OR next_attempt_at > ?3)
                 ORDER BY id LIMIT ?2",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map(
                params![now, limit as i64, now.saturating_add(RETRY_AHEAD_MAX_MS)],
                |r| {
                    Ok(OutboxRow {
                        id: r.get(0)?,
                        message_id: r.get(1)?,
                        recipient: r.get(2)?,
                        subject: r.get(3)?,
                        body: r.get(4)?,
                        created_at: r.get(5)?,
                        attempts: r.get(6)?,
                    })
                },
            )
            .map_err(&e)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&e)
    }

    /// Records that the server accepted mail `id`.
    ///
    /// The mail is already delivered, so giving up here would send it again: a lock held
    /// past the busy timeout (another writer, never a reader) is waited out, up to
    /// [`MARK_SENT_PATIENCE`], before the error is returned.
    pub fn mark_outbox_sent(&self, id: i64, now: i64) -> Result<()> {
        let started = std::time::Instant::now();
        loop {
            let result = self.core.conn()
                .execute(
                    "UPDATE outbox SET state = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL
                     WHERE id = ?1",
                    params![id, now],
                )
                .map(drop)
                .map_err(self.core.err("marking mail sent"));
            match result {
                Err(super::Error::Busy { .. }) if started.elapsed() < MARK_SENT_PATIENCE => {
                    tracing::warn!(buffer = %self.path().display(), id, "buffer busy while marking a delivered mail sent; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// Records that mail `id` was refused permanently, with the reason; it is not retried.
    pub fn mark_outbox_failed(&self, id: i64, reason: &str) -> Result<()> {
        self.core.conn()
            .execute(
                "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                params![id, reason],
            )
            .map(drop)
            .map_err(self.core.err("marking mail failed"))
    }

    /// Records a transient failure of mail `id`; it is retried at `next_attempt_at`.
    pub fn mark_outbox_retry(&self, id: i64, next_attempt_at: i64, reason: &str) -> Result<()> {
        self.core
            .conn()
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
                 WHERE id = ?1",
                params![id, next_attempt_at, reason],
            )
            .map(drop)
            .map_err(self.core.err("scheduling a mail retry"))
    }

    /// Pending mail: how many, creation time of the oldest and the earliest next attempt.
    pub fn outbox_pending(&self) -> Result<(i64, Option<i64>, Option<i64>)> {
        self.core.conn()
            .query_row(
                "SELECT COUNT(*), MIN(created_at), MIN(next_attempt_at) FROM outbox WHERE state = 'pending'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(self.core.err("reading pending mail"))
    }
}
