//! Tests of the alert step on a real buffer file: grouping, the rate limit
//! and its summary, stale alerts and persistence across a reopen.

use std::time::Duration;

use super::*;
use crate::buffer::Buffer;
use crate::collect::outcome::{CollectError, ErrorClass};
use crate::config::units::Percent;
use crate::config::{MailConfig, Transport};
use crate::report::Report;

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

fn host(name: &str) -> HostConfig {
    HostConfig {
        os: Default::default(),
        name: name.into(),
        transport: Transport::Local,
        mail: None,
        alerts: AlertLimits {
            cpu: Percent::new(20.0),
            memory: Percent::new(90.0),
            swap: None,
            reboot: true,
            unreachable_after: Some(2),
            families: Default::default(),
        },
        agent: Default::default(),
    }
}

fn mail(rate_limit: u32) -> MailConfig {
    MailConfig {
        from: "edgemon@x.test".into(),
        recipients: vec!["ops@x.test".into()],
        smtp: None,
        file_dir: "unused".into(),
        rate_limit,
        rate_window: Duration::from_secs(3600),
    }
}

fn policy() -> AlertPolicy {
    AlertPolicy {
        fire_after: 1,
        clear_margin: 5.0,
        repeat: Duration::from_secs(3600),
        flap_window: Duration::from_secs(3600),
        flap_threshold: 4,
        site_unreachable_share: 0.5,
        site_min_hosts: 4,
        loss_horizon: Duration::from_secs(86_400),
        families: Default::default(),
    }
}

fn outcome(name: &str, cpu: Option<f64>, now: i64) -> HostOutcome {
    HostOutcome {
        host: name.into(),
        address: "local".into(),
        started_at_ms: now,
        duration: Duration::from_millis(1),
        result: match cpu {
            Some(cpu) => Ok(Report {
                version: 1,
                collected_at_ms: now,
                cpu_percent: cpu,
                cores: vec![cpu],
                mem_used: 1,
                mem_total: 10,
                swap_used: 0,
                swap_total: 0,
                uptime_s: 1000 + (now - T0) as u64 / 1000,
                boot_time_s: None,
                load: None,
                hostname: None,
                os: None,
                kernel: None,
                extras: Vec::new(),
                sections: Vec::new(),
            }),
            None => Err(CollectError::new(ErrorClass::Timeout, "timed out")),
        },
    }
}

fn round(
    buffer: &mut Buffer,
    alerting: &Alerting,
    at: &[(&str, Option<f64>)],
    now: i64,
) -> RoundAlerts {
    let outcomes: Vec<_> = at.iter().map(|(h, c)| outcome(h, *c, now)).collect();
    let (_, alerts) = alerting
        .record_round(buffer, &outcomes, Duration::from_secs(600), now)
        .unwrap();
    alerts
}

fn subjects(buffer: &Buffer) -> Vec<String> {
    buffer
        .outbox()
        .due_outbox(i64::MAX, 1000)
        .unwrap()
        .into_iter()
        .map(|r| r.subject)
        .collect()
}

#[test]
fn alerts_of_one_round_for_one_recipient_share_a_mail() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
    let hosts = [host("a"), host("b")];
    let alerting = Alerting::from_parts("x", &policy(), &mail(10), &hosts);
    let r = round(
        &mut buffer,
        &alerting,
        &[("a", Some(97.0)), ("b", Some(50.0))],
        T0,
    );
    assert_eq!((r.transitions, r.mails), (2, 1));
    assert_eq!(
        subjects(&buffer),
        ["[edgemon] FIRING cpu 97% > 20% on a (+1 more)"]
    );
}

#[test]
fn a_storm_over_the_rate_limit_is_held_and_summarised_later() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
    let hosts: Vec<_> = (0..6).map(|n| host(&format!("h{n}"))).collect();
    let alerting = Alerting::from_parts("x", &policy(), &mail(2), &hosts);
    // One more host breaches every minute: two mails, then nothing but held alerts.
    for n in 0..6 {
        let at: Vec<(String, Option<f64>)> =
            (0..=n).map(|k| (format!("h{k}"), Some(97.0))).collect();
        let at: Vec<(&str, Option<f64>)> = at.iter().map(|(h, c)| (h.as_str(), *c)).collect();
        let r = round(&mut buffer, &alerting, &at, T0 + n * MIN);
        assert_eq!(r.mails, usize::from(n < 2), "minute {n}");
    }
    assert_eq!(subjects(&buffer).len(), 2);
    // An hour later the window allows one more mail: the summary of the held ones.
    let at: Vec<(String, Option<f64>)> = (0..6).map(|k| (format!("h{k}"), Some(97.0))).collect();
    let at: Vec<(&str, Option<f64>)> = at.iter().map(|(h, c)| (h.as_str(), *c)).collect();
    let r = round(&mut buffer, &alerting, &at, T0 + 61 * MIN);
    assert_eq!(r.mails, 1);
    let all = buffer.outbox().due_outbox(i64::MAX, 100).unwrap();
    let summary = &all[2];
    assert!(
        summary.subject.starts_with("[edgemon] SUMMARY"),
        "{}",
        summary.subject
    );
    for k in 2..6 {
        assert!(
            summary
                .body
                .contains(&format!("FIRING cpu 97% > 20% on h{k}")),
            "{}",
            summary.body
        );
    }
    // Nothing is held any more: the next mail is h2's ordinary reminder, an hour after
    // its (held) firing.
    let r = round(&mut buffer, &alerting, &at, T0 + 62 * MIN);
    assert_eq!((r.mails, r.held), (1, 0));
    let last = subjects(&buffer).pop().unwrap_or_default();
    assert_eq!(last, "[edgemon] REMINDER cpu 97% > 20% on h2");
}

#[test]
fn state_survives_a_reopen_and_a_silent_host_goes_stale_then_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sqlite");
    let hosts = [host("a")];
    let alerting = Alerting::from_parts("x", &policy(), &mail(10), &hosts);
    {
        let mut buffer = Buffer::open(&path).unwrap();
        round(&mut buffer, &alerting, &[("a", Some(97.0))], T0);
    }
    let mut buffer = Buffer::open(&path).unwrap();
    let r = round(&mut buffer, &alerting, &[("a", Some(97.0))], T0 + MIN);
    assert_eq!(
        r.transitions, 0,
        "a reopened buffer remembers the firing alert"
    );
    let r = round(&mut buffer, &alerting, &[("a", None)], T0 + 2 * MIN);
    assert_eq!(
        (r.transitions, r.mails),
        (1, 0),
        "stale is recorded, not mailed"
    );
    round(&mut buffer, &alerting, &[("a", None)], T0 + 3 * MIN);
    assert_eq!(
        subjects(&buffer),
        [
            "[edgemon] FIRING cpu 97% > 20% on a",
            "[edgemon] FIRING unreachable 2 failed rounds on a"
        ]
    );
    let status = buffer.reader().status().unwrap();
    assert_eq!(status.hosts[0].firing_alerts, ["unreachable"]);
}

#[test]
fn a_buffer_warning_is_mailed_once_to_the_operators_and_rearms_after_it_clears() {
    let dir = tempfile::tempdir().unwrap();
    let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
    let hosts = [host("a")];
    let alerting = Alerting::from_parts("site-1", &policy(), &mail(10), &hosts);
    let warning = "unsynced samples reach 81% of max_unsynced_age (30d)";
    buffer.set_buffer_warning(Some(warning)).unwrap();
    round(&mut buffer, &alerting, &[("a", Some(1.0))], T0);
    round(&mut buffer, &alerting, &[("a", Some(1.0))], T0 + MIN);
    let due = buffer.outbox().due_outbox(i64::MAX, 1000).unwrap();
    assert_eq!(due.len(), 1, "mailed once, not every round: {due:?}");
    assert_eq!(due[0].recipient, "ops@x.test");
    assert_eq!(
        due[0].subject,
        "[edgemon] WARNING buffer near its bound on site-1"
    );
    assert!(due[0].body.contains(warning), "{}", due[0].body);

    buffer.set_buffer_warning(None).unwrap();
    round(&mut buffer, &alerting, &[("a", Some(1.0))], T0 + 2 * MIN);
    buffer.set_buffer_warning(Some(warning)).unwrap();
    round(&mut buffer, &alerting, &[("a", Some(1.0))], T0 + 3 * MIN);
    assert_eq!(
        buffer.outbox().due_outbox(i64::MAX, 1000).unwrap().len(),
        2,
        "a new warning after it cleared is mailed again"
    );
}
