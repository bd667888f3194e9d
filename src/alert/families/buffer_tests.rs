//! The family rules on a real buffer file, through `Alerting::record_round`: the mail a
//! filling filesystem causes (warning, then critical as one escalation, then RESOLVED),
//! the filling-up prediction from buckets the buffer keeps across rounds and a reopen,
//! counters kept between rounds, silences and acknowledgements of member alerts.

use std::time::Duration;

use edgemon_proto::report::family::Section;

use super::*;
use crate::alert::Alerting;
use crate::buffer::{Buffer, NewSilence};
use crate::collect::outcome::HostOutcome;
use crate::config::units::Percent;
use crate::config::{
    AlertLimits, FamilyPolicy, HostConfig, InterfaceLimits, MailConfig, MountLimits, Transport,
};

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;
const GIB: u64 = 1 << 30;

fn host() -> HostConfig {
    HostConfig {
        os: Default::default(),
        name: "db".into(),
        transport: Transport::Local,
        mail: None,
        alerts: AlertLimits {
            cpu: None,
            memory: None,
            swap: None,
            reboot: false,
            unreachable_after: None,
            families: FamilyLimits {
                fs: MountLimits {
                    used: Percent::new(80.0),
                    used_critical: Percent::new(90.0),
                    inodes: Percent::new(80.0),
                    inodes_critical: Percent::new(90.0),
                    readonly: true,
                    hanging: true,
                    filling: true,
                },
                iface: InterfaceLimits {
                    down: true,
                    errors: Percent::new(1.0),
                },
                oom_kills: true,
                ..FamilyLimits::default()
            },
        },
        agent: Default::default(),
    }
}

fn alerting(window_min: u64) -> Alerting {
    let policy = AlertPolicy {
        fire_after: 1,
        clear_margin: 5.0,
        repeat: Duration::from_secs(86_400),
        flap_window: Duration::from_secs(3600),
        flap_threshold: 6,
        site_unreachable_share: 0.5,
        site_min_hosts: 4,
        loss_horizon: Duration::ZERO,
        families: FamilyPolicy {
            fill_window: Duration::from_secs(window_min * 60),
            fill_hold: Duration::from_secs(5 * 60),
            ..FamilyPolicy::default()
        },
    };
    let mail = MailConfig {
        from: "edgemon@x.test".into(),
        recipients: vec!["ops@x.test".into()],
        smtp: None,
        file_dir: "unused".into(),
        rate_limit: 100,
        rate_window: Duration::from_secs(3600),
    };
    Alerting::from_parts("site", &policy, &mail, &[host()])
}

/// A report whose `/var` has `avail` GiB of 100 free and whose system section says `oom`.
fn outcome(avail: f64, oom: u64, now: i64) -> HostOutcome {
    let avail = (avail * GIB as f64) as u64;
    let var = Filesystem {
        mount: "/var".into(),
        fstype: Some("ext4".into()),
        size: Some(100 * GIB),
        used: Some(100 * GIB - avail),
        avail: Some(avail),
        files: Some(1000),
        files_free: Some(900),
        readonly: Some(false),
        ..Filesystem::default()
    };
    let sys = System {
        oom_kills: Some(oom),
        ..System::default()
    };
    let report = crate::report::Report {
        version: 1,
        collected_at_ms: now,
        cpu_percent: 1.0,
        cores: vec![1.0],
        mem_used: 1,
        mem_total: 10,
        swap_used: 0,
        swap_total: 0,
        uptime_s: 1000,
        boot_time_s: None,
        load: None,
        hostname: None,
        os: None,
        kernel: None,
        extras: Vec::new(),
        sections: vec![Section::from_typed(&[sys]), Section::from_typed(&[var])],
    };
    HostOutcome {
        host: "db".into(),
        address: "local".into(),
        started_at_ms: now,
        duration: Duration::from_millis(1),
        result: Ok(report),
    }
}

fn round(buffer: &mut Buffer, a: &Alerting, avail: f64, oom: u64, now: i64) {
    a.record_round(
        buffer,
        &[outcome(avail, oom, now)],
        Duration::from_secs(600),
        now,
    )
    .expect("round");
}

fn subjects(buffer: &Buffer) -> Vec<String> {
    buffer
        .outbox()
        .due_outbox(i64::MAX, 1000)
        .expect("outbox")
        .into_iter()
        .map(|r| r.subject)
        .collect()
}

#[test]
fn a_filling_filesystem_is_mailed_as_warning_then_critical_then_resolved() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).expect("buffer");
    let a = alerting(720);
    round(&mut buffer, &a, 50.0, 0, T0);
    round(&mut buffer, &a, 15.0, 0, T0 + MIN);
    round(&mut buffer, &a, 5.0, 0, T0 + 2 * MIN);
    round(&mut buffer, &a, 7.0, 0, T0 + 3 * MIN);
    round(&mut buffer, &a, 60.0, 0, T0 + 4 * MIN);
    assert_eq!(
        subjects(&buffer),
        [
            "[edgemon] FIRING fs-used:/var used 85% > 80% (warning) on db",
            "[edgemon] ESCALATED fs-used:/var used 95% > 90% (critical) on db",
            "[edgemon] RESOLVED fs-used:/var used 40% < 75% on db",
        ]
    );
    let body = buffer
        .outbox()
        .due_outbox(i64::MAX, 10)
        .expect("outbox")
        .into_iter()
        .nth(1)
        .map(|r| r.body)
        .unwrap_or_default();
    assert!(body.contains("Level:     critical"), "{body}");
    assert!(body.contains("Metric:    fs-used:/var"), "{body}");
}

#[test]
fn filling_up_is_predicted_from_buckets_the_buffer_keeps_across_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("b.sqlite");
    let a = alerting(40);
    // 30 GiB free (used 70 %: no used alert), losing 0.1 GiB a minute: full in 5 h.
    let mut mailed = Vec::new();
    for m in 0..30 {
        // Reopen the buffer every 10 rounds: the sums are in the file, not in memory.
        let mut buffer = Buffer::open(&path).expect("buffer");
        for k in 0..10 {
            let minute = m * 10 + k;
            if minute > 30 {
                break;
            }
            round(
                &mut buffer,
                &a,
                30.0 - 0.1 * minute as f64,
                0,
                T0 + minute * MIN,
            );
        }
        mailed = subjects(&buffer);
        if m * 10 > 30 {
            break;
        }
    }
    assert_eq!(mailed.len(), 1, "{mailed:?}");
    assert!(
        mailed[0].starts_with("[edgemon] FIRING fs-filling:/var full in 4h")
            && mailed[0].ends_with("< 1d (warning) on db"),
        "{mailed:?}"
    );
}

#[test]
fn oom_kills_are_counted_between_rounds_through_the_buffer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).expect("buffer");
    let a = alerting(720);
    round(&mut buffer, &a, 50.0, 3, T0);
    round(&mut buffer, &a, 50.0, 3, T0 + MIN);
    round(&mut buffer, &a, 50.0, 5, T0 + 2 * MIN);
    round(&mut buffer, &a, 50.0, 5, T0 + 3 * MIN);
    assert_eq!(
        subjects(&buffer),
        [
            "[edgemon] FIRING oom-kills 2 OOM kills since the last sample on db",
            "[edgemon] RESOLVED oom-kills no OOM kill since the last sample on db",
        ]
    );
}

#[test]
fn an_ack_does_not_hold_an_escalation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).expect("buffer");
    let a = alerting(720);
    round(&mut buffer, &a, 50.0, 0, T0);
    round(&mut buffer, &a, 15.0, 0, T0 + MIN);
    let ack = buffer
        .ack("db", "fs-used:/var", "alice", "looking", T0 + MIN)
        .expect("ack");
    assert!(ack.is_some(), "the firing member alert can be acknowledged");
    round(&mut buffer, &a, 5.0, 0, T0 + 2 * MIN);
    assert_eq!(
        subjects(&buffer),
        [
            "[edgemon] FIRING fs-used:/var used 85% > 80% (warning) on db",
            "[edgemon] ESCALATED fs-used:/var used 95% > 90% (critical) on db",
        ]
    );
}

#[test]
fn a_silence_of_the_rule_covers_all_its_members() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).expect("buffer");
    let a = alerting(720);
    let rules = vec!["fs-used".to_string()];
    buffer
        .add_silence(&NewSilence {
            host: Some("db"),
            rules: &rules,
            starts_at: T0,
            ends_at: T0 + 3600 * 1000,
            comment: "maintenance",
            created_by: "alice",
            created_at: T0,
        })
        .expect("silence");
    round(&mut buffer, &a, 15.0, 0, T0);
    round(&mut buffer, &a, 5.0, 0, T0 + MIN);
    round(&mut buffer, &a, 60.0, 0, T0 + 2 * MIN);
    assert_eq!(subjects(&buffer), Vec::<String>::new());
}
