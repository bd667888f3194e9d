//! Alert mail against a real SMTP server (the harness's aiosmtpd): rounds are
//! driven in-process with synthetic outcomes through `Buffer::record_round`
//! and the alert step, and mail leaves through `alert::Mailer`. Time is passed
//! explicitly (`now`), so reminders and retries need no waiting.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgemon::alert::{Alerting, Mailer, SendReport};
use edgemon::buffer::{Buffer, NewSilence, StatusReader};
use edgemon::collect::outcome::{CollectError, ErrorClass, HostOutcome};
use edgemon::config::units::Percent;
use edgemon::config::{
    AlertLimits, AlertPolicy, Auth, HostConfig, HostKeyPolicy, MailConfig, SmtpConfig, SmtpTls,
    SshTarget, Transport,
};
use edgemon::report::Report;

use crate::skip_or_fail;
use crate::support::smtp::{Mail, Smtp};
use crate::support::temp_dir;

const T0: i64 = 1_800_000_000_000;
const MINUTE: i64 = 60_000;
const SKEW: Duration = Duration::from_secs(300);

fn host(name: &str, mail: Option<&str>) -> HostConfig {
    HostConfig {
        os: Default::default(),
        name: name.to_string(),
        transport: Transport::Ssh(SshTarget {
            address: "127.0.0.1".into(),
            port: 22,
            user: "mon".into(),
            auth: Auth::Agent,
            host_key_policy: HostKeyPolicy::Strict,
            via: Vec::new(),
        }),
        mail: mail.map(str::to_string),
        alerts: AlertLimits {
            cpu: Percent::new(20.0),
            memory: None,
            swap: None,
            reboot: true,
            unreachable_after: Some(3),
            families: Default::default(),
        },
        agent: Default::default(),
    }
}

/// One appliance: its buffer file, its hosts, and mail towards `port`.
struct Site {
    _dir: tempfile::TempDir,
    path: PathBuf,
    buffer: Buffer,
    hosts: Vec<HostConfig>,
    mail: MailConfig,
    policy: AlertPolicy,
}

impl Site {
    fn new(hosts: Vec<HostConfig>, recipients: &[&str], port: u16) -> Site {
        let dir = temp_dir();
        let path = dir.path().join("buffer.sqlite");
        let mail = MailConfig {
            from: "edgemon@site.test".into(),
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
            smtp: Some(SmtpConfig {
                host: "127.0.0.1".into(),
                port,
                tls: SmtpTls::None,
                username: None,
                password: None,
                timeout: Duration::from_secs(20),
            }),
            file_dir: dir.path().join("mail"),
            rate_limit: 10,
            rate_window: Duration::from_secs(3600),
        };
        Site {
            buffer: Buffer::open(&path).expect("open buffer"),
            path,
            _dir: dir,
            hosts,
            mail,
            policy: AlertPolicy {
                fire_after: 1,
                clear_margin: 5.0,
                repeat: Duration::from_secs(3600),
                flap_window: Duration::from_secs(3600),
                flap_threshold: 4,
                site_unreachable_share: 0.5,
                site_min_hosts: 4,
                loss_horizon: Duration::from_secs(86_400),
                families: Default::default(),
            },
        }
    }

    fn mailer(&self) -> Mailer {
        Mailer::new(&self.mail, &self.path).expect("mailer")
    }

    /// Records one round at `T0 + minute`: every host at `cpu` (`None`: unreachable).
    /// The buffer's status, read as `edgemon status` reads it.
    fn status(&self) -> edgemon::buffer::BufferStatus {
        StatusReader::open(&self.path)
            .expect("open a reader")
            .status()
            .expect("status")
    }

    fn round(&mut self, minute: i64, cpu: Option<f64>) {
        self.round_each(minute, |_| cpu);
    }

    /// Records one round at `T0 + minute`, each host at `cpu(index)`.
    fn round_each(&mut self, minute: i64, cpu: impl Fn(usize) -> Option<f64>) {
        let now = T0 + minute * MINUTE;
        let outcomes: Vec<HostOutcome> = self
            .hosts
            .iter()
            .enumerate()
            .map(|(n, h)| outcome(&h.name, cpu(n), now, minute))
            .collect();
        let alerting = Alerting::from_parts("site-7", &self.policy, &self.mail, &self.hosts);
        self.buffer
            .record_round(&outcomes, SKEW, |tx, recorded| {
                alerting.record(tx, &outcomes, recorded, now)
            })
            .expect("record round");
    }

    /// Closes the buffer and opens it again, as a restarted process would.
    fn restart(&mut self) {
        self.buffer = Buffer::open(&self.path).expect("reopen buffer");
    }

    fn outbox_rows(&self) -> Vec<(String, String, i64, Option<String>)> {
        let conn = rusqlite::Connection::open(&self.path).expect("open sqlite");
        let mut stmt = conn
            .prepare("SELECT recipient, state, attempts, last_error FROM outbox ORDER BY id")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }
}

fn outcome(name: &str, cpu: Option<f64>, now: i64, minute: i64) -> HostOutcome {
    let result = match cpu {
        Some(cpu) => Ok(Report {
            version: 1,
            collected_at_ms: now,
            cpu_percent: cpu,
            cores: vec![cpu],
            mem_used: 256,
            mem_total: 1024,
            swap_used: 0,
            swap_total: 0,
            uptime_s: 86_400 + minute as u64 * 60,
            boot_time_s: None,
            load: None,
            hostname: Some(name.into()),
            os: None,
            kernel: None,
            extras: Vec::new(),
            sections: Vec::new(),
        }),
        None => Err(CollectError::new(
            ErrorClass::Unreachable,
            format!("{name}: connection refused"),
        )),
    };
    HostOutcome {
        host: name.to_string(),
        address: format!("mon@{name}.site.test:22"),
        started_at_ms: now,
        duration: Duration::from_millis(5),
        result,
    }
}

fn send(mailer: &Mailer, minute: i64) -> SendReport {
    mailer.send_due_at(T0 + minute * MINUTE).expect("send_due")
}

fn subjects(mails: &[Mail]) -> Vec<String> {
    mails.iter().map(|m| m.subject().to_string()).collect()
}

#[test]
fn a_host_over_its_cpu_limit_mails_once_until_the_repeat_interval() {
    let smtp = skip_or_fail!(Smtp::start());
    let mut site = Site::new(vec![host("web-1", None)], &["ops@site.test"], smtp.port());
    let mailer = site.mailer();
    for minute in 0..30 {
        site.round(minute, Some(97.0));
        send(&mailer, minute);
    }
    let mails = smtp.messages();
    assert_eq!(
        subjects(&mails),
        ["[edgemon] FIRING cpu 97% > 20% on web-1"]
    );
    let body = &mails[0].body;
    for needle in [
        "Host:      web-1",
        "Address:   mon@web-1.site.test:22",
        "Metric:    cpu",
        "Value:     97%",
        "Limit:     20% (clears below 15%)",
        "Appliance: site-7",
        "Last samples",
    ] {
        assert!(body.contains(needle), "{needle:?} missing in:\n{body}");
    }
    assert_eq!(mails[0].to(), "ops@site.test");
    let id = mails[0].message_id();
    assert!(
        id.starts_with('<') && id.ends_with("@site-7.edgemon>"),
        "{id}"
    );

    // The repeat interval (1h) brings exactly one reminder.
    for minute in 30..=75 {
        site.round(minute, Some(97.0));
        send(&mailer, minute);
    }
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2, "{:?}", subjects(&mails));
    assert!(
        mails[1]
            .subject()
            .starts_with("[edgemon] REMINDER cpu 97% > 20% on web-1")
    );
    assert_ne!(mails[0].message_id(), mails[1].message_id());
}

#[test]
fn recovery_mails_once() {
    let smtp = skip_or_fail!(Smtp::start());
    let mut site = Site::new(vec![host("web-1", None)], &["ops@site.test"], smtp.port());
    let mailer = site.mailer();
    site.round(0, Some(97.0));
    // Between the clear threshold (15%) and the limit: still firing, no mail.
    site.round(1, Some(18.0));
    for minute in 2..10 {
        site.round(minute, Some(5.0));
    }
    send(&mailer, 10);
    send(&mailer, 11);
    assert_eq!(
        subjects(&smtp.messages()),
        [
            "[edgemon] FIRING cpu 97% > 20% on web-1",
            "[edgemon] RESOLVED cpu 5% < 15% on web-1"
        ]
    );
}

#[test]
fn mail_queued_while_smtp_is_down_arrives_exactly_once_when_it_is_back() {
    let mut smtp = skip_or_fail!(Smtp::start());
    let mut site = Site::new(vec![host("web-1", None)], &["ops@site.test"], smtp.port());
    let mailer = site.mailer();
    smtp.stop().expect("stop smtp");
    site.round(0, Some(97.0));
    let report = send(&mailer, 0);
    assert_eq!((report.sent, report.retried, report.pending), (0, 1, 1));
    let status = site.status();
    assert_eq!(status.outbox.pending, 1);
    assert!(status.outbox.last_error.is_some(), "{:?}", status.outbox);

    smtp.start_again().expect("start smtp again");
    // Not due yet (backoff), so nothing is sent and nothing is lost.
    assert_eq!(send(&mailer, 0).sent, 0);
    site.round(1, Some(97.0));
    let report = send(&mailer, 5);
    assert_eq!((report.sent, report.pending), (1, 0));
    for minute in 6..10 {
        site.round(minute, Some(97.0));
        assert_eq!(send(&mailer, minute + 60).sent, 0);
    }
    assert_eq!(
        subjects(&smtp.messages()),
        ["[edgemon] FIRING cpu 97% > 20% on web-1"]
    );
}

#[test]
fn a_restart_after_queuing_still_mails_exactly_once() {
    let smtp = skip_or_fail!(Smtp::start());
    let mut site = Site::new(
        vec![host("web-1", None), host("web-2", None)],
        &["ops@site.test"],
        smtp.port(),
    );
    // web-1 fires and is mailed; then the process dies.
    site.hosts[1].alerts.cpu = Percent::new(99.0);
    let first = site.mailer();
    site.round(0, Some(97.0));
    assert_eq!(send(&first, 0).sent, 1);
    drop(first);
    site.restart();

    // After the restart web-1 still fires (no new mail); web-2 fires and is queued,
    // and the process dies before its mailer runs.
    site.hosts[1].alerts.cpu = Percent::new(20.0);
    site.round(1, Some(97.0));
    site.restart();

    let second = site.mailer();
    site.round(2, Some(97.0));
    assert_eq!(send(&second, 2).sent, 1);
    assert_eq!(send(&second, 3).sent, 0);
    assert_eq!(
        subjects(&smtp.messages()),
        [
            "[edgemon] FIRING cpu 97% > 20% on web-1",
            "[edgemon] FIRING cpu 97% > 20% on web-2"
        ]
    );
}

#[test]
fn a_refused_recipient_is_recorded_as_failed_and_not_retried() {
    let smtp = skip_or_fail!(Smtp::start());
    let mut site = Site::new(
        vec![host("web-1", Some("reject-me@site.test"))],
        &["ops@site.test"],
        smtp.port(),
    );
    let mailer = site.mailer();
    site.round(0, Some(97.0));
    let report = send(&mailer, 0);
    assert_eq!((report.sent, report.failed, report.pending), (1, 1, 0));
    for minute in [1, 60, 24 * 60] {
        let later = send(&mailer, minute);
        assert_eq!((later.sent, later.retried, later.failed), (0, 0, 0));
    }
    let rows = site.outbox_rows();
    let refused = rows
        .iter()
        .find(|r| r.0 == "reject-me@site.test")
        .expect("a row for the refused recipient");
    assert_eq!((refused.1.as_str(), refused.2), ("failed", 1));
    let reason = refused.3.as_deref().unwrap_or_default();
    assert!(reason.contains("550"), "reason: {reason}");
    assert_eq!(site.status().outbox.failed, 1);
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to(), "ops@site.test");
}

#[test]
fn fifty_hosts_breaching_at_once_yield_one_summary_per_recipient() {
    let smtp = skip_or_fail!(Smtp::start());
    let hosts = (1..=50)
        .map(|n| host(&format!("node-{n:02}"), Some("team@site.test")))
        .collect();
    let mut site = Site::new(hosts, &["ops@site.test"], smtp.port());
    let mailer = site.mailer();
    site.round(0, Some(97.0));
    assert_eq!(send(&mailer, 0).sent, 2);
    let mut mails = smtp.messages();
    mails.sort_by(|a, b| a.to().cmp(b.to()));
    assert_eq!(mails.len(), 2, "{:?}", subjects(&mails));
    assert_eq!(mails[0].to(), "ops@site.test");
    assert_eq!(mails[1].to(), "team@site.test");
    for mail in &mails {
        assert_eq!(
            mail.subject(),
            "[edgemon] SUMMARY 50 alerts on 50 hosts (50 firing)"
        );
        for n in 1..=50 {
            let line = format!("FIRING cpu 97% > 20% on node-{n:02}");
            assert!(mail.body.contains(&line), "{line:?} missing");
        }
    }
}

#[test]
fn without_smtp_mail_goes_to_files() {
    let mut site = Site::new(vec![host("web-1", None)], &["ops@site.test"], 1);
    site.mail.smtp = None;
    let mailer = site.mailer();
    site.round(0, Some(97.0));
    assert_eq!(send(&mailer, 0).sent, 1);
    let files = eml_files(&site.mail.file_dir);
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(&files[0]).expect("read mail file");
    assert!(
        text.contains("Subject: [edgemon] FIRING cpu 97% > 20% on web-1"),
        "{text}"
    );
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).expect("mail dir exists");
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect()
}

/// `(host, rule, kind)` of every recorded alert event, in order.
fn events(path: &Path) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(path).expect("open sqlite");
    let mut stmt = conn
        .prepare(
            "SELECT h.name, e.rule, e.kind FROM alert_events e JOIN hosts h ON h.id = e.host_id
             ORDER BY e.id",
        )
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn silence(site: &Site, host: Option<&str>, from_minute: i64, to_minute: i64) -> i64 {
    site.buffer
        .add_silence(&NewSilence {
            host,
            rules: &[],
            starts_at: T0 + from_minute * MINUTE,
            ends_at: T0 + to_minute * MINUTE,
            comment: "maintenance",
            created_by: "alice",
            created_at: T0 + from_minute * MINUTE,
        })
        .expect("add silence")
}

#[test]
fn a_silence_records_but_does_not_mail_and_a_sent_firing_still_gets_its_resolved() {
    let smtp = skip_or_fail!(Smtp::start());
    let mut site = Site::new(
        vec![host("web-1", None), host("web-2", None)],
        &["ops@site.test"],
        smtp.port(),
    );
    let mailer = site.mailer();
    // web-1 fires and is mailed; then a silence of every host for three hours.
    site.round_each(0, |n| Some(if n == 0 { 97.0 } else { 1.0 }));
    send(&mailer, 0);
    silence(&site, None, 1, 180);
    // web-2 fires under the silence; web-1 stays over its limit past its reminder time.
    for minute in 1..=70 {
        site.round(minute, Some(97.0));
        send(&mailer, minute);
    }
    // Both recover while the silence is still in force.
    site.round(71, Some(5.0));
    send(&mailer, 71);
    assert_eq!(
        subjects(&smtp.messages()),
        [
            "[edgemon] FIRING cpu 97% > 20% on web-1",
            "[edgemon] RESOLVED cpu 5% < 15% on web-1",
        ],
        "nothing silenced is mailed, but a mailed FIRING gets its RESOLVED"
    );
    let recorded = events(&site.path);
    for (host, kind) in [
        ("web-2", "firing"),
        ("web-1", "reminder"),
        ("web-2", "resolved"),
    ] {
        assert!(
            recorded
                .iter()
                .any(|e| e.0 == host && e.1 == "cpu" && e.2 == kind),
            "{host} {kind} is recorded (and synced like every event): {recorded:?}"
        );
    }
}

#[test]
fn after_a_silence_ends_mail_resumes_and_an_unannounced_alert_is_mailed_as_firing() {
    let smtp = skip_or_fail!(Smtp::start());
    let mut site = Site::new(vec![host("web-1", None)], &["ops@site.test"], smtp.port());
    let mailer = site.mailer();
    silence(&site, Some("web-1"), 0, 30);
    for minute in 0..=61 {
        site.round(minute, Some(97.0));
        send(&mailer, minute);
    }
    assert_eq!(
        subjects(&smtp.messages()),
        ["[edgemon] FIRING cpu 97% > 20% on web-1"],
        "the first reminder after the silence announces the alert nobody heard of"
    );
}

#[test]
fn an_acknowledged_alert_gets_no_reminder_but_its_resolved() {
    let smtp = skip_or_fail!(Smtp::start());
    let mut site = Site::new(vec![host("web-1", None)], &["ops@site.test"], smtp.port());
    let mailer = site.mailer();
    site.round(0, Some(97.0));
    send(&mailer, 0);
    let state = site
        .buffer
        .ack("web-1", "cpu", "alice", "replacing the fan", T0 + MINUTE)
        .expect("ack");
    assert_eq!(state.as_deref(), Some("firing"));
    for minute in 1..=150 {
        site.round(minute, Some(97.0));
        send(&mailer, minute);
    }
    let status = StatusReader::open(&site.path)
        .and_then(|r| r.status())
        .expect("status");
    let acks = &status.hosts[0].acks;
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!((acks[0].by.as_str(), acks[0].at), ("alice", T0 + MINUTE));
    site.round(151, Some(5.0));
    send(&mailer, 151);
    assert_eq!(
        subjects(&smtp.messages()),
        [
            "[edgemon] FIRING cpu 97% > 20% on web-1",
            "[edgemon] RESOLVED cpu 5% < 15% on web-1",
        ]
    );
    assert!(
        StatusReader::open(&site.path)
            .and_then(|r| r.status())
            .expect("status")
            .hosts[0]
            .acks
            .is_empty(),
        "the acknowledgement ends with the alert"
    );
    assert!(
        events(&site.path).iter().any(|e| e.2 == "reminder"),
        "reminders are still recorded"
    );
}

#[test]
fn a_site_outage_is_one_mail_then_one_resolved_per_mailed_alert() {
    let smtp = skip_or_fail!(Smtp::start());
    let hosts: Vec<HostConfig> = (0..20).map(|n| host(&format!("h{n:02}"), None)).collect();
    let mut site = Site::new(hosts, &["ops@site.test"], smtp.port());
    let mailer = site.mailer();
    site.round(0, Some(1.0));
    // Three hosts go down first (below the share): their unreachable alerts are mailed.
    for minute in 1..=3 {
        site.round_each(minute, |n| if n < 3 { None } else { Some(1.0) });
        send(&mailer, minute);
    }
    // Then twelve more in the same round: 15 of 20 down is one site alert.
    for minute in 4..=10 {
        site.round_each(minute, |n| if n < 15 { None } else { Some(1.0) });
        send(&mailer, minute);
    }
    let mails = smtp.messages();
    assert_eq!(
        subjects(&mails),
        [
            "[edgemon] FIRING unreachable 3 failed rounds on h00 (+2 more)",
            "[edgemon] FIRING site-unreachable: 15 of 20 hosts unreachable on site-7",
        ],
        "one site mail, not 12 more host mails"
    );
    for n in 0..15 {
        assert!(
            mails[1].body.contains(&format!("h{n:02}  (")),
            "{}",
            mails[1].body
        );
    }
    let held = events(&site.path)
        .iter()
        .filter(|e| e.1 == "unreachable" && e.2 == "firing")
        .count();
    assert_eq!(held, 15, "every host's alert is still recorded");
    // The site comes back: one RESOLVED for the site, and for the three hosts mailed before.
    site.round(11, Some(1.0));
    send(&mailer, 11);
    let mails = smtp.messages();
    assert_eq!(
        subjects(&mails[2..]),
        [
            "[edgemon] RESOLVED site-unreachable: 20 of 20 hosts reporting on site-7",
            "[edgemon] RESOLVED unreachable reporting again on h00 (+2 more)",
        ]
    );
    assert_eq!(mails[3].body.matches("RESOLVED unreachable").count(), 3);
}
