//! The text of alert mail: one-line headlines, subjects, plain text bodies
//! and stable Message-IDs. Pure functions; it knows nothing of SMTP or SQLite.
//!
//! A mail carries every alert of one round for one recipient. Up to
//! [`DETAILED_MAX`] alerts are written out in full (host, address, metric,
//! value, limit, since-when, appliance id, last samples); more than that, or
//! alerts held back by the rate limit, make a summary with one line per alert.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::rules::{EventKind, FamilyRule, Rule, Transition};
use crate::buffer::SampleBrief;

/// Most alerts written out in full in one mail; beyond that, a summary.
pub const DETAILED_MAX: usize = 5;

/// One mailed transition with what the mail says about its host.
#[derive(Debug, Clone)]
pub struct AlertItem {
    /// Host name.
    pub host: String,
    /// Host address as shown to operators.
    pub address: String,
    /// What changed.
    pub transition: Transition,
    /// Its `alert_events` row id.
    pub event_id: i64,
    /// When it was observed, Unix ms.
    pub at: i64,
    /// The host's newest samples, newest first.
    pub recent: Vec<SampleBrief>,
}

/// A composed mail, before it is queued.
#[derive(Debug, Clone, PartialEq)]
pub struct Composed {
    /// Subject line.
    pub subject: String,
    /// Plain text body.
    pub body: String,
}

/// `97%`, `97.3%`; failed rounds and uptimes as plain numbers.
fn value(rule: &Rule, v: f64) -> String {
    let num = if (v - v.round()).abs() < 0.05 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    };
    if rule.is_percent() {
        format!("{num}%")
    } else {
        num
    }
}

/// Unix ms as RFC 3339 (UTC, seconds).
pub fn time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn kind_word(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Firing => "FIRING",
        EventKind::Reminder => "REMINDER",
        EventKind::Resolved => "RESOLVED",
        EventKind::Flapping => "FLAPPING",
        EventKind::Stale => "STALE",
        EventKind::Escalated => "ESCALATED",
        EventKind::Deescalated => "DEESCALATED",
    }
}

/// A duration in seconds as `3h 20m`, `45m`, `2d 4h` (minutes at most; seconds below one).
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    let (d, h, m) = (s / 86_400, s / 3600 % 24, s / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The detail of a family rule's headline: `85% > 80% (warning)`, `full in 3h 10m`.
fn family_detail(rule: FamilyRule, t: &Transition) -> String {
    let r = &t.rule;
    let v = |x: Option<f64>| x.map(|x| value(r, x)).unwrap_or_else(|| "?".into());
    let level = t
        .level
        .map(|l| format!(" ({})", l.as_str()))
        .unwrap_or_default();
    let resolved = t.kind == EventKind::Resolved;
    if resolved && rule == FamilyRule::UnitFailed {
        // A unit that recovers leaves the section of failed units.
        return "no longer failed".to_string();
    }
    if resolved && t.value.is_none() {
        return "no longer reported".to_string();
    }
    if t.kind == EventKind::Stale {
        return "no data".to_string();
    }
    match rule {
        FamilyRule::FsUsed | FamilyRule::FsInodes => {
            let what = if rule == FamilyRule::FsUsed {
                "used"
            } else {
                "inodes used"
            };
            if resolved {
                format!("{what} {} < {}", v(t.value), v(t.clear))
            } else {
                format!("{what} {} > {}{level}", v(t.value), v(t.limit))
            }
        }
        FamilyRule::FsFilling => match t.value.filter(|s| *s >= 0.0) {
            Some(s) if !resolved => format!(
                "full in {} < {}{level}",
                human_duration(s),
                human_duration(t.limit.unwrap_or(0.0))
            ),
            Some(s) => format!(
                "full in {}, beyond {}",
                human_duration(s),
                human_duration(t.limit.unwrap_or(0.0))
            ),
            None if resolved => "no longer filling".to_string(),
            None => format!("filling{level}"),
        },
        FamilyRule::FsReadonly if resolved => "writable again".to_string(),
        FamilyRule::FsReadonly => "turned read-only (was writable)".to_string(),
        FamilyRule::FsHanging if resolved => "statvfs answers again".to_string(),
        FamilyRule::FsHanging => "statvfs hanging (no answer within the deadline)".to_string(),
        FamilyRule::IfDown if resolved => "link up again".to_string(),
        FamilyRule::IfDown => "link down (was up)".to_string(),
        FamilyRule::IfErrors if resolved => format!("errors {} < {}", v(t.value), v(t.clear)),
        FamilyRule::IfErrors => format!("errors {} > {} of packets", v(t.value), v(t.limit)),
        FamilyRule::OomKills if resolved => "no OOM kill since the last sample".to_string(),
        FamilyRule::OomKills => format!("{} OOM kills since the last sample", v(t.value)),
        FamilyRule::UnitFailed if resolved => "no longer failed".to_string(),
        FamilyRule::UnitFailed => "unit failed".to_string(),
        FamilyRule::ProcessMissing if resolved => format!("running again ({})", v(t.value)),
        FamilyRule::ProcessMissing => "no process running".to_string(),
        FamilyRule::MemAvailable if resolved => {
            format!("available {} > {}", v(t.value), v(t.clear))
        }
        FamilyRule::MemAvailable => format!("available {} < {}", v(t.value), v(t.limit)),
        FamilyRule::Fds | FamilyRule::Procs => {
            let of = if rule == FamilyRule::Fds {
                "file-max"
            } else {
                "pid_max"
            };
            if resolved {
                format!("{} < {} of {of}", v(t.value), v(t.clear))
            } else {
                format!("{} > {} of {of}", v(t.value), v(t.limit))
            }
        }
        FamilyRule::ClockSkew if resolved => format!("offset {}s < {}s", v(t.value), v(t.clear)),
        FamilyRule::ClockSkew => format!("offset {}s > {}s", v(t.value), v(t.limit)),
    }
}

/// The one-line description of a transition, e.g. `FIRING cpu 97% > 20% on web-1`,
/// `ESCALATED fs-used:/var used 93% > 90% (critical) on web-1`.
pub fn headline(host: &str, t: &Transition) -> String {
    let word = kind_word(t.kind);
    let rule = &t.rule;
    let v = |x: Option<f64>| x.map(|x| value(rule, x)).unwrap_or_else(|| "?".into());
    let detail = match (rule, t.kind) {
        (Rule::Family(kind, _), _) => family_detail(*kind, t),
        (Rule::Reboot, _) => format!(
            "uptime {}s (was {}s)",
            v(t.value),
            t.previous.map_or("?".into(), |p| format!("{p:.0}"))
        ),
        (Rule::Unreachable, EventKind::Resolved) => "reporting again".to_string(),
        (Rule::Unreachable, _) => format!("{} failed rounds", v(t.value)),
        (_, EventKind::Resolved) => format!("{} < {}", v(t.value), v(t.clear)),
        (_, EventKind::Stale) => format!("no data (last {})", v(t.value)),
        (_, EventKind::Flapping) => format!("{} (limit {})", v(t.value), v(t.limit)),
        _ => format!("{} > {}", v(t.value), v(t.limit)),
    };
    format!("{word} {rule} {detail} on {host}")
}

/// The subject of a detailed mail with these items (at least one).
fn subject(items: &[AlertItem]) -> String {
    let first = items
        .first()
        .map(|i| headline(&i.host, &i.transition))
        .unwrap_or_default();
    match items.len() {
        0 | 1 => format!("[edgemon] {first}"),
        n => format!("[edgemon] {first} (+{} more)", n - 1),
    }
}

fn detail(out: &mut String, item: &AlertItem) {
    let t = &item.transition;
    let rule = &t.rule;
    let filling = matches!(rule, Rule::Family(FamilyRule::FsFilling, _));
    let opt = |x: Option<f64>| match x {
        Some(x) if filling && x < 0.0 => "not filling".into(),
        Some(x) if filling => human_duration(x),
        Some(x) => value(rule, x),
        None => "-".into(),
    };
    let _ = writeln!(out, "{}", headline(&item.host, t));
    let _ = writeln!(out);
    let _ = writeln!(out, "Host:      {}", item.host);
    let _ = writeln!(out, "Address:   {}", item.address);
    let _ = writeln!(out, "Metric:    {rule}");
    if filling {
        let _ = writeln!(out, "Full in:   {}", opt(t.value));
    } else {
        let _ = writeln!(out, "Value:     {}", opt(t.value));
    }
    if let Some(level) = t.level {
        let _ = writeln!(out, "Level:     {}", level.as_str());
    }
    match (t.limit, t.clear) {
        (Some(_), _) if filling => {
            let _ = writeln!(out, "Horizon:   {}", opt(t.limit));
        }
        (Some(_), Some(_)) => {
            let _ = writeln!(
                out,
                "Limit:     {} (clears below {})",
                opt(t.limit),
                opt(t.clear)
            );
        }
        (Some(_), None) => {
            let _ = writeln!(out, "Limit:     {}", opt(t.limit));
        }
        _ => {}
    }
    let _ = writeln!(out, "Since:     {}", time(t.since));
    let _ = writeln!(out, "Observed:  {}", time(item.at));
    if !item.recent.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Last samples (newest first):");
        let _ = writeln!(
            out,
            "  {:<22}{:>8}{:>8}{:>8}{:>12}",
            "time", "cpu", "memory", "swap", "uptime"
        );
        for s in &item.recent {
            let _ = writeln!(
                out,
                "  {:<22}{:>7.1}%{:>7.1}%{:>7.1}%{:>11}s",
                time(s.at),
                s.cpu,
                s.memory,
                s.swap,
                s.uptime_s
            );
        }
    }
}

/// A mail with every item written out in full.
pub fn detailed(appliance_id: &str, items: &[AlertItem]) -> Composed {
    let mut body = String::new();
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            body.push_str("\n----------------------------------------\n\n");
        }
        detail(&mut body, item);
    }
    let _ = write!(body, "\nAppliance: {appliance_id}\n");
    Composed {
        subject: subject(items),
        body,
    }
}

/// A summary: one line per alert of this round, plus the alerts the rate
/// limit held back (`(at, headline)`), so that a storm is one mail.
pub fn summary(appliance_id: &str, items: &[AlertItem], held: &[(i64, String)]) -> Composed {
    let hosts = {
        let mut names: Vec<&str> = items.iter().map(|i| i.host.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names.len()
    };
    let firing = items
        .iter()
        .filter(|i| i.transition.kind == EventKind::Firing)
        .count();
    let total = items.len() + held.len();
    let subject = if held.is_empty() {
        format!("[edgemon] SUMMARY {total} alerts on {hosts} hosts ({firing} firing)")
    } else {
        format!(
            "[edgemon] SUMMARY {total} alerts ({} held back by the rate limit)",
            held.len()
        )
    };
    let mut body = String::new();
    if !items.is_empty() {
        let _ = writeln!(
            body,
            "{} alerts in this round on {hosts} hosts, one line each:\n",
            items.len()
        );
        for i in items {
            let _ = writeln!(
                body,
                "{}  {}  ({})",
                time(i.at),
                headline(&i.host, &i.transition),
                i.address
            );
        }
    }
    if !held.is_empty() {
        if !items.is_empty() {
            body.push('\n');
        }
        let _ = writeln!(
            body,
            "{} alerts held back by the rate limit since the last mail:\n",
            held.len()
        );
        for (at, line) in held {
            let _ = writeln!(body, "{}  {line}", time(*at));
        }
    }
    let _ = write!(
        body,
        "\nSee `edgemon status` on the appliance for the current state.\nAppliance: {appliance_id}\n"
    );
    Composed { subject, body }
}

/// A Message-ID stable for this mail (stored with it in the outbox, so every
/// retry carries the same one and receivers can drop duplicates).
pub fn message_id(
    appliance_id: &str,
    created_at: i64,
    first_event: i64,
    recipient: &str,
) -> String {
    let domain: String = appliance_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let domain = if domain.is_empty() {
        "appliance"
    } else {
        &domain
    };
    let hash = Sha256::digest(recipient.as_bytes());
    format!(
        "<{created_at}.{first_event}.{}@{domain}.edgemon>",
        hex::encode(&hash[..6])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(host: &str, rule: Rule, kind: EventKind, v: f64, limit: f64) -> AlertItem {
        AlertItem {
            host: host.into(),
            address: format!("root@{host}:22"),
            transition: Transition {
                rule,
                kind,
                value: Some(v),
                limit: Some(limit),
                clear: Some(limit - 5.0),
                previous: None,
                since: 1_700_000_000_000,
                level: None,
            },
            event_id: 7,
            at: 1_700_000_060_000,
            recent: vec![SampleBrief {
                at: 1_700_000_060_000,
                cpu: v,
                memory: 40.0,
                swap: 0.0,
                uptime_s: 3600,
            }],
        }
    }

    #[test]
    fn subject_names_kind_metric_value_limit_and_host() {
        let mail = detailed(
            "site-a",
            &[item("web-1", Rule::Cpu, EventKind::Firing, 97.0, 20.0)],
        );
        assert_eq!(mail.subject, "[edgemon] FIRING cpu 97% > 20% on web-1");
        for needle in [
            "Host:      web-1",
            "Address:   root@web-1:22",
            "Metric:    cpu",
            "Value:     97%",
            "Limit:     20% (clears below 15%)",
            "Since:     2023-11-14T22:13:20Z",
            "Appliance: site-a",
            "Last samples",
        ] {
            assert!(
                mail.body.contains(needle),
                "{needle:?} missing in\n{}",
                mail.body
            );
        }
    }

    #[test]
    fn resolved_shows_the_clear_threshold() {
        let i = item("db", Rule::Memory, EventKind::Resolved, 12.5, 50.0);
        assert_eq!(
            headline(&i.host, &i.transition),
            "RESOLVED memory 12.5% < 45% on db"
        );
    }

    #[test]
    fn several_alerts_share_one_mail() {
        let items = [
            item("a", Rule::Cpu, EventKind::Firing, 97.0, 20.0),
            item("a", Rule::Memory, EventKind::Firing, 80.0, 50.0),
        ];
        let mail = detailed("x", &items);
        assert_eq!(
            mail.subject,
            "[edgemon] FIRING cpu 97% > 20% on a (+1 more)"
        );
        assert!(mail.body.contains("FIRING memory 80% > 50% on a"));
    }

    #[test]
    fn a_summary_has_one_line_per_alert_and_the_held_ones() {
        let items: Vec<_> = (0..50)
            .map(|n| item(&format!("h{n}"), Rule::Cpu, EventKind::Firing, 99.0, 20.0))
            .collect();
        let held = vec![(1_700_000_000_000, "FIRING cpu 90% > 20% on old".to_string())];
        let mail = summary("x", &items, &held);
        assert!(mail.subject.starts_with("[edgemon] SUMMARY 51 alerts"));
        assert_eq!(mail.body.matches("FIRING cpu").count(), 51);
    }

    #[test]
    fn message_ids_are_stable_and_differ_per_recipient() {
        let a = message_id("site a", 5, 9, "ops@example.com");
        assert_eq!(a, message_id("site a", 5, 9, "ops@example.com"));
        assert_ne!(a, message_id("site a", 5, 9, "boss@example.com"));
        assert!(
            a.starts_with("<5.9.") && a.ends_with("@site-a.edgemon>"),
            "{a}"
        );
    }

    fn family(rule: FamilyRule, member: &str, kind: EventKind, v: f64, limit: f64) -> AlertItem {
        let mut i = item("db", Rule::Family(rule, member.into()), kind, v, limit);
        i.transition.level = Some(crate::alert::rules::Level::Critical);
        i
    }

    #[test]
    fn family_headlines_say_the_member_the_level_and_when_it_is_full() {
        let i = family(
            FamilyRule::FsFilling,
            "/var",
            EventKind::Firing,
            3.0 * 3600.0 + 600.0,
            4.0 * 3600.0,
        );
        assert_eq!(
            headline(&i.host, &i.transition),
            "FIRING fs-filling:/var full in 3h 10m < 4h (critical) on db"
        );
        let mail = detailed("x", &[i]);
        for needle in [
            "Full in:   3h 10m",
            "Level:     critical",
            "Horizon:   4h",
            "Metric:    fs-filling:/var",
        ] {
            assert!(
                mail.body.contains(needle),
                "{needle:?} missing in\n{}",
                mail.body
            );
        }
        let i = family(FamilyRule::FsUsed, "/var", EventKind::Escalated, 93.0, 90.0);
        assert_eq!(
            headline(&i.host, &i.transition),
            "ESCALATED fs-used:/var used 93% > 90% (critical) on db"
        );
        let mut i = family(
            FamilyRule::UnitFailed,
            "nginx.service",
            EventKind::Resolved,
            1.0,
            0.0,
        );
        i.transition.value = None;
        assert_eq!(
            headline(&i.host, &i.transition),
            "RESOLVED unit-failed:nginx.service no longer failed on db"
        );
        assert_eq!(human_duration(59.0), "59s");
        assert_eq!(
            human_duration(2.0 * 86_400.0 + 4.0 * 3600.0 + 60.0),
            "2d 4h"
        );
    }
}
