//! The SQL behind silences and acknowledgements (migration 3).
//!
//! The CLI writes them through [`Buffer`] while the daemon runs (WAL, busy
//! timeout); the round reads them through [`RoundTx`] each round, so a silence
//! takes effect at the next round. What a silence *matches* is decided by
//! `alert::plan`, not here.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Buffer, Result, RoundTx, StatusReader};

/// A stored silence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SilenceRow {
    /// Its id (for `silence remove`).
    pub id: i64,
    /// The host it silences; `None` for every host.
    pub host: Option<String>,
    /// The rules it silences; empty for every rule.
    pub rules: Vec<String>,
    /// Start, Unix ms.
    pub starts_at: i64,
    /// End, Unix ms.
    pub ends_at: i64,
    /// Why.
    pub comment: String,
    /// The operator who added it.
    pub created_by: String,
    /// When, Unix ms.
    pub created_at: i64,
}

/// A silence to add.
#[derive(Debug, Clone)]
pub struct NewSilence<'a> {
    /// Host, or `None` for every host.
    pub host: Option<&'a str>,
    /// Rules; empty for every rule.
    pub rules: &'a [String],
    /// Start, Unix ms.
    pub starts_at: i64,
    /// End, Unix ms.
    pub ends_at: i64,
    /// Why.
    pub comment: &'a str,
    /// The operator's login name.
    pub created_by: &'a str,
    /// Now, Unix ms.
    pub created_at: i64,
}

/// A stored acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AckRow {
    /// The host's row id.
    #[serde(skip)]
    pub host_id: i64,
    /// The host's name.
    pub host: String,
    /// The rule.
    pub rule: String,
    /// The operator's login name.
    pub by: String,
    /// When, Unix ms.
    pub at: i64,
    /// Their comment.
    pub comment: String,
}

const SILENCE_COLUMNS: &str =
    "id, host, rules, starts_at, ends_at, comment, created_by, created_at";

fn silence_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SilenceRow> {
    let rules: String = r.get(2)?;
    Ok(SilenceRow {
        id: r.get(0)?,
        host: r.get(1)?,
        rules: rules
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        starts_at: r.get(3)?,
        ends_at: r.get(4)?,
        comment: r.get(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
    })
}

fn ack_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AckRow> {
    Ok(AckRow {
        host_id: r.get(0)?,
        host: r.get(1)?,
        rule: r.get(2)?,
        by: r.get(3)?,
        at: r.get(4)?,
        comment: r.get(5)?,
    })
}

const ACK_SELECT: &str = "SELECT a.host_id, h.name, a.rule, a.acked_by, a.acked_at, a.comment
     FROM acks a JOIN hosts h ON h.id = a.host_id";

fn silences_ending_after(
    conn: &rusqlite::Connection,
    now: i64,
) -> rusqlite::Result<Vec<SilenceRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SILENCE_COLUMNS} FROM silences WHERE ends_at > ?1 ORDER BY starts_at, id"
    ))?;
    let rows = stmt.query_map([now], silence_row)?;
    rows.collect()
}

fn all_acks(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<AckRow>> {
    let mut stmt = conn.prepare_cached(&format!("{ACK_SELECT} ORDER BY h.name, a.rule"))?;
    let rows = stmt.query_map([], ack_row)?;
    rows.collect()
}

impl Buffer {
    /// Adds a silence; returns its id.
    pub fn add_silence(&self, s: &NewSilence<'_>) -> Result<i64> {
        self.conn()
            .execute(
                "INSERT INTO silences (host, rules, starts_at, ends_at, comment, created_by, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    s.host,
                    s.rules.join(","),
                    s.starts_at,
                    s.ends_at,
                    s.comment,
                    s.created_by,
                    s.created_at
                ],
            )
            .map_err(self.err("adding a silence"))?;
        Ok(self.conn().last_insert_rowid())
    }

    /// Silences that have not ended at `now` (current and future), oldest start first.
    pub fn silences(&self, now: i64) -> Result<Vec<SilenceRow>> {
        silences_ending_after(self.conn(), now).map_err(self.err("reading silences"))
    }

    /// Removes silence `id`; `false` when there is none.
    pub fn remove_silence(&self, id: i64) -> Result<bool> {
        self.conn()
            .execute("DELETE FROM silences WHERE id = ?1", [id])
            .map(|n| n > 0)
            .map_err(self.err("removing a silence"))
    }

    /// Acknowledges the alert `rule` of `host`, if it is active (firing, flapping or stale);
    /// returns the alert's state, or `None` when the host has no such active alert.
    pub fn ack(
        &self,
        host: &str,
        rule: &str,
        by: &str,
        comment: &str,
        now: i64,
    ) -> Result<Option<String>> {
        let e = self.err("acknowledging an alert");
        let found: Option<(i64, String)> = self
            .conn()
            .query_row(
                "SELECT a.host_id, a.state FROM alert_state a JOIN hosts h ON h.id = a.host_id
                 WHERE h.name = ?1 AND a.rule = ?2 AND a.state IN ('firing', 'flapping', 'stale')",
                params![host, rule],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&e)?;
        let Some((host_id, state)) = found else {
            return Ok(None);
        };
        self.conn()
            .execute(
                "INSERT INTO acks (host_id, rule, acked_by, acked_at, comment) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (host_id, rule) DO UPDATE SET
                    acked_by = excluded.acked_by, acked_at = excluded.acked_at, comment = excluded.comment",
                params![host_id, rule, by, now, comment],
            )
            .map_err(&e)?;
        Ok(Some(state))
    }

    /// Every acknowledgement, by host and rule.
    pub fn acks(&self) -> Result<Vec<AckRow>> {
        all_acks(self.conn()).map_err(self.err("reading acknowledgements"))
    }
}

impl StatusReader {
    /// Silences that have not ended at `now` (current and future), oldest start first.
    pub fn silences(&self, now: i64) -> Result<Vec<SilenceRow>> {
        self.core.silences(now)
    }

    /// Every acknowledgement, by host and rule.
    pub fn acks(&self) -> Result<Vec<AckRow>> {
        self.core.acks()
    }
}

impl RoundTx<'_> {
    /// Silences that have not ended at `now`.
    pub fn silences(&self, now: i64) -> Result<Vec<SilenceRow>> {
        silences_ending_after(self.tx(), now).map_err(self.err("reading silences"))
    }

    /// Every acknowledgement.
    pub fn acks(&self) -> Result<Vec<AckRow>> {
        all_acks(self.tx()).map_err(self.err("reading acknowledgements"))
    }

    /// Deletes the acknowledgement of an alert that resolved.
    pub fn delete_ack(&self, host_id: i64, rule: &str) -> Result<()> {
        self.tx()
            .execute(
                "DELETE FROM acks WHERE host_id = ?1 AND rule = ?2",
                params![host_id, rule],
            )
            .map(drop)
            .map_err(self.err("clearing an acknowledgement"))
    }
}
