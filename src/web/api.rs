//! The JSON API behind the status page: `/api/status`, `/api/hosts` and
//! `/api/hosts/NAME/samples?since=...&until=...`. Field names are a
//! contract documented in the README: add fields, never rename them.
//!
//! Times are Unix milliseconds. Every reply is built from one read-only
//! [`StatusReader`] connection; the text of hosts (names, addresses, error
//! messages) is JSON-escaped, and `<`, `>` and `&` additionally as `\u003c`,
//! `\u003e`, `\u0026`, so a reply cannot be mistaken for HTML.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

use crate::buffer::{ActiveAlert, HostStatus, SeriesPoint, StatusReader};

/// Most points of one `/samples` reply; longer ranges are downsampled.
pub const MAX_POINTS: usize = 720;
/// The range of `/samples` when `since` is absent.
pub const DEFAULT_RANGE: Duration = Duration::from_secs(24 * 3600);

/// What the API needs to know beyond the buffer.
#[derive(Debug, Clone)]
pub struct Context {
    /// `appliance.id`.
    pub appliance: String,
    /// `collect.interval`.
    pub interval: Duration,
    /// The current time (Unix ms).
    pub now: i64,
    /// Recurring silences of the configuration.
    pub weekly: Vec<crate::config::WeeklySilence>,
}

/// Reachability of a host, from its bookkeeping.
pub fn host_state(host: &HostStatus, context: &Context) -> &'static str {
    // Three missed rounds (and some slack for a slow round) make a host stale:
    // removed from the configuration, or the collector is stuck.
    let stale_after = 3 * context.interval.as_millis() as i64 + 30_000;
    match host.last_attempt_at {
        None => "waiting",
        Some(at) if context.now - at > stale_after => "stale",
        Some(_) if host.consecutive_failures > 0 => "down",
        Some(_) => "up",
    }
}

#[derive(Serialize)]
struct ApiHost<'a> {
    #[serde(flatten)]
    status: &'a HostStatus,
    state: &'static str,
    alerts: &'a [ActiveAlert],
    /// Silences in force for this host (its own and `--all` ones).
    silences: Vec<&'a crate::buffer::SilenceRow>,
}

/// Why a request of the API is refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such host (404).
    #[error("no host named {0:?} in the buffer")]
    UnknownHost(String),
    /// No such path under `/api/` (404).
    #[error("no such API path")]
    NoSuchPath,
    /// The request was abandoned at its deadline before its read started (503).
    #[error("the request was abandoned at its deadline")]
    Abandoned,
    /// The buffer could not be read (503).
    #[error(transparent)]
    Buffer(#[from] crate::buffer::Error),
}

/// `/api/hosts`.
pub fn hosts(buffer: &StatusReader, context: &Context) -> Result<String, ApiError> {
    let hosts = buffer.web_hosts()?;
    let mut silences = buffer.silences(context.now)?;
    silences.extend(crate::alert::weekly_in_force(&context.weekly, context.now));
    let rows: Vec<ApiHost<'_>> = hosts
        .iter()
        .map(|h| ApiHost {
            status: &h.status,
            state: host_state(&h.status, context),
            alerts: &h.alerts,
            silences: silences
                .iter()
                .filter(|s| {
                    s.starts_at <= context.now
                        && s.host.as_ref().is_none_or(|name| *name == h.status.name)
                })
                .collect(),
        })
        .collect();
    Ok(to_json(&json!({ "now": context.now, "hosts": rows })))
}

/// `/api/status`.
pub fn status(buffer: &StatusReader, context: &Context) -> Result<String, ApiError> {
    let mut s = buffer.status()?;
    s.silences
        .extend(crate::alert::weekly_in_force(&context.weekly, context.now));
    let count = |state: &str| {
        s.hosts
            .iter()
            .filter(|h| host_state(h, context) == state)
            .count()
    };
    let alerts: usize = s.hosts.iter().map(|h| h.firing_alerts.len()).sum();
    let value = json!({
        "appliance": context.appliance,
        "now": context.now,
        "interval_ms": context.interval.as_millis() as u64,
        "buffer": {
            "path": s.path,
            "size_bytes": s.size_bytes,
            "samples": s.samples,
            "unsynced": s.unsynced,
            "oldest_unsynced_at": s.oldest_unsynced_at,
            "oldest_unsynced_age_s": s.oldest_unsynced_at.map(|at| (context.now - at).max(0) / 1000),
            "quarantined": s.quarantined,
            "dropped": s.dropped,
            "warning": s.buffer_warning,
            "damaged": s.damaged,
            "time_to_first_loss_s": s.time_to_first_loss_s,
        },
        "sync": {
            "last_sync_at": s.last_sync_at,
            "last_error": s.last_sync_error,
        },
        "outbox": s.outbox,
        "silences": s.silences,
        "hosts": {
            "total": s.hosts.len(),
            "up": count("up"),
            "down": count("down"),
            "stale": count("stale"),
            "waiting": count("waiting"),
            "alerts": alerts,
        },
    });
    Ok(to_json(&value))
}

/// `/api/hosts/NAME/samples` for `since` and `until` as given in the query.
pub fn samples(
    buffer: &StatusReader,
    context: &Context,
    host: &str,
    since: Option<&str>,
    until: Option<&str>,
) -> Result<String, ApiError> {
    let parse = |name: &str, text: Option<&str>, default: i64| match text {
        None | Some("") => Ok(default),
        Some(text) => {
            parse_time(text).map_err(|why| ApiError::BadRequest(format!("{name}: {why}")))
        }
    };
    let since = parse(
        "since",
        since,
        context.now - DEFAULT_RANGE.as_millis() as i64,
    )?;
    let until = parse("until", until, context.now)?;
    if until < since {
        return Err(ApiError::BadRequest("until is before since".into()));
    }
    let series = buffer
        .host_series(host, since, until, MAX_POINTS)?
        .ok_or_else(|| ApiError::UnknownHost(host.to_string()))?;
    let points: &[SeriesPoint] = &series.points;
    Ok(to_json(&json!({
        "host": host,
        "since": since,
        "until": until,
        "interval_ms": context.interval.as_millis() as u64,
        "samples": series.samples,
        "bucket_ms": series.bucket_ms,
        "points": points,
    })))
}

/// `{"error": message}`.
pub fn error(message: &str) -> String {
    to_json(&json!({ "error": message }))
}

/// Unix milliseconds (digits) or an RFC 3339 time (`2026-11-25T14:00:00Z`,
/// `2026-11-25T16:00:00.5+02:00`) as Unix milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse()
            .map_err(|_| format!("{text:?} is too large for Unix milliseconds"));
    }
    let bad = || format!("{text:?} is neither Unix milliseconds nor an RFC 3339 time");
    let bytes = text.as_bytes();
    let n = bytes.len();
    // humantime reads UTC only: apply a numeric offset ourselves.
    let (utc_text, offset_ms) =
        if n > 6 && matches!(bytes[n - 6], b'+' | b'-') && bytes[n - 3] == b':' {
            let digits = |s: &str| {
                s.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| s.parse::<i64>().ok())
                    .flatten()
            };
            let hours = digits(&text[n - 5..n - 3])
                .filter(|h| *h < 24)
                .ok_or_else(bad)?;
            let minutes = digits(&text[n - 2..]).filter(|m| *m < 60).ok_or_else(bad)?;
            let sign = if bytes[n - 6] == b'-' { -1 } else { 1 };
            (
                format!("{}Z", &text[..n - 6]),
                sign * (hours * 60 + minutes) * 60_000,
            )
        } else {
            (text.to_string(), 0)
        };
    let time = humantime::parse_rfc3339(&utc_text).map_err(|_| bad())?;
    let ms = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| bad())?
        .as_millis() as i64;
    Ok(ms - offset_ms)
}

/// JSON with `<`, `>` and `&` escaped: they only ever occur inside strings,
/// where `\u003c` means the same to a JSON reader.
fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value)
        .unwrap_or_else(|e| format!("{{\"error\":\"serialising: {e}\"}}"))
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}
