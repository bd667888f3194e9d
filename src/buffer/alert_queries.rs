//! The SQL behind alerts: alert state, alert events and the mail outbox.
//!
//! Round-side queries are methods of [`RoundTx`], so that alert state, events
//! and the mail they cause commit in the same transaction as the samples.
//! Mailer-side queries are in `outbox.rs` ([`super::Outbox`]). Rows cross
//! this boundary as plain structs; what a state or a kind *means* is decided
//! by `alert`, not here.

use rusqlite::{OptionalExtension, params};

use super::{Result, RoundTx};

/// One `alert_state` row, as stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertRow {
    /// Rule name (`cpu`, `memory`, `swap`, `reboot`, `unreachable`).
    pub rule: String,
    /// Lifecycle state name (`ok`, `pending`, `firing`, `flapping`, `stale`).
    pub state: String,
    /// Consecutive breaching samples.
    pub breaches: i64,
    /// When the current state (or the firing episode) began, Unix ms.
    pub since: Option<i64>,
    /// Last value seen by the rule.
    pub last_value: Option<f64>,
    /// When the alert was last mailed, Unix ms.
    pub last_notified_at: Option<i64>,
    /// Recent flip times, comma separated.
    pub flips: String,
    /// The current episode's FIRING was not mailed (silenced, or held for a site alert).
    pub unmailed: bool,
    /// The level of a two-level alert: 0 none, 1 warning, 2 critical (migration 6).
    pub level: i64,
}

/// A new `alert_events` row.
#[derive(Debug, Clone)]
pub struct NewAlertEvent<'a> {
    /// The host's row id.
    pub host_id: i64,
    /// Rule name.
    pub rule: &'a str,
    /// Event kind (`firing`, `reminder`, `resolved`, `flapping`, `stale`).
    pub kind: &'a str,
    /// Observed value.
    pub value: Option<f64>,
    /// The limit in force.
    pub threshold: Option<f64>,
    /// When, Unix ms.
    pub at: i64,
    /// One-line description (the mail's subject line without the prefix).
    pub message: &'a str,
}

/// A new outbox row.
#[derive(Debug, Clone)]
pub struct NewMail<'a> {
    /// Stable Message-ID, `<...>` included; unique in the outbox.
    pub message_id: &'a str,
    /// One recipient address.
    pub recipient: &'a str,
    /// Subject line.
    pub subject: &'a str,
    /// Plain text body.
    pub body: &'a str,
    /// Creation time, Unix ms (also the first attempt time).
    pub created_at: i64,
}

/// A short view of a stored sample, for the "last samples" part of a mail.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleBrief {
    /// Receive time, Unix ms.
    pub at: i64,
    /// CPU %.
    pub cpu: f64,
    /// Memory used / total, %.
    pub memory: f64,
    /// Swap used / total, % (0 without swap).
    pub swap: f64,
    /// Uptime, seconds.
    pub uptime_s: i64,
}

fn percent(used: i64, total: i64) -> f64 {
    if total > 0 {
        used as f64 * 100.0 / total as f64
    } else {
        0.0
    }
}

impl RoundTx<'_> {
    /// The stored alert state rows of a host.
    pub fn alert_states(&self, host_id: i64) -> Result<Vec<AlertRow>> {
        let e = self.err("loading alert state");
        let mut stmt = self
            .tx()
            .prepare_cached(
                "SELECT rule, state, breaches, since, last_value, last_notified_at, flips, unmailed,
                        level
                 FROM alert_state WHERE host_id = ?1 ORDER BY rule",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map([host_id], |r| {
                Ok(AlertRow {
                    rule: r.get(0)?,
                    state: r.get(1)?,
                    breaches: r.get(2)?,
                    since: r.get(3)?,
                    last_value: r.get(4)?,
                    last_notified_at: r.get(5)?,
                    flips: r.get(6)?,
                    unmailed: r.get(7)?,
                    level: r.get(8)?,
                })
            })
            .map_err(&e)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&e)
    }

    /// Inserts or replaces the alert state row of a host and rule.
    pub fn save_alert_state(&self, host_id: i64, row: &AlertRow) -> Result<()> {
        self.tx()
            .prepare_cached(
                "INSERT INTO alert_state (host_id, rule, state, breaches, since, last_value, last_notified_at, flips, unmailed, level)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (host_id, rule) DO UPDATE SET
                    state = excluded.state, breaches = excluded.breaches, since = excluded.since,
                    last_value = excluded.last_value, last_notified_at = excluded.last_notified_at,
                    flips = excluded.flips, unmailed = excluded.unmailed, level = excluded.level",
            )
            .and_then(|mut s| {
                s.execute(params![
                    host_id,
                    row.rule,
                    row.state,
                    row.breaches,
                    row.since,
                    row.last_value,
                    row.last_notified_at,
                    row.flips,
                    row.unmailed,
                    row.level
                ])
            })
            .map(drop)
            .map_err(self.err("saving alert state"))
    }

    /// Inserts an alert event (synced to MySQL later); returns its id.
    pub fn insert_alert_event(&self, event: &NewAlertEvent<'_>) -> Result<i64> {
        self.tx()
            .prepare_cached(
                "INSERT INTO alert_events (host_id, rule, kind, value, threshold, at, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    event.host_id,
                    event.rule,
                    event.kind,
                    event.value,
                    event.threshold,
                    event.at,
                    event.message
                ])
            })
            .map_err(self.err("inserting an alert event"))?;
        Ok(self.tx().last_insert_rowid())
    }

    /// `(id, at, message)` of the alert events `ids` that exist, in the order given.
    pub fn alert_event_lines(&self, ids: &[i64]) -> Result<Vec<(i64, i64, String)>> {
        let e = self.err("reading held alert events");
        let mut stmt = self
            .tx()
            .prepare_cached("SELECT at, message FROM alert_events WHERE id = ?1")
            .map_err(&e)?;
        let mut lines = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(line) = stmt
                .query_row([id], |r| Ok((*id, r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(&e)?
            {
                lines.push(line);
            }
        }
        Ok(lines)
    }

    /// Queues a mail; a Message-ID already in the outbox is left alone (returns `false`).
    pub fn insert_outbox(&self, mail: &NewMail<'_>) -> Result<bool> {
        self.tx()
            .prepare_cached(
                "INSERT INTO outbox (message_id, recipient, subject, body, created_at, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (message_id) DO NOTHING",
            )
            .and_then(|mut s| {
                s.execute(params![
                    mail.message_id,
                    mail.recipient,
                    mail.subject,
                    mail.body,
                    mail.created_at
                ])
            })
            .map(|n| n == 1)
            .map_err(self.err("queueing a mail"))
    }

    /// Mails queued for `recipient` at or after `since` (any state): the rate limiter's count.
    pub fn outbox_count_since(&self, recipient: &str, since: i64) -> Result<i64> {
        self.tx()
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE recipient = ?1 AND created_at >= ?2",
                params![recipient, since],
                |r| r.get(0),
            )
            .map_err(self.err("counting recent mail"))
    }

    /// The newest `n` samples of a host, newest first.
    pub fn recent_samples(&self, host_id: i64, n: usize) -> Result<Vec<SampleBrief>> {
        let e = self.err("reading recent samples");
        let mut stmt = self
            .tx()
            .prepare_cached(
                "SELECT received_at, cpu, mem_used, mem_total, swap_used, swap_total, uptime_s
                 FROM samples WHERE host_id = ?1 ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map(params![host_id, n as i64], |r| {
                Ok(SampleBrief {
                    at: r.get(0)?,
                    cpu: r.get(1)?,
                    memory: percent(r.get(2)?, r.get(3)?),
                    swap: percent(r.get(4)?, r.get(5)?),
                    uptime_s: r.get(6)?,
                })
            })
            .map_err(&e)?;
        rows.collect::<rusqlite::Result<_>>().map_err(&e)
    }

    /// Reads a value from the key/value table inside the round.
    pub fn kv_get(&self, key: &str) -> Result<Option<String>> {
        self.tx()
            .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.err("reading kv"))
    }

    /// Writes (or, with `None`, deletes) a value of the key/value table inside the round.
    pub fn kv_set(&self, key: &str, value: Option<&str>) -> Result<()> {
        let result = match value {
            Some(v) => self.tx().execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, v],
            ),
            None => self.tx().execute("DELETE FROM kv WHERE key = ?1", [key]),
        };
        result.map(drop).map_err(self.err("writing kv"))
    }
}
