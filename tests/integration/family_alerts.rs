//! The family alert rules end to end (issue 22): a namespace host with the real agent over
//! SSH, its rounds recorded with the alert step in a real buffer, mail through the
//! harness's aiosmtpd. Inside the host a tmpfs is filled with `dd` at a steady rate
//! (predicted "filling up" before it is full, then the used warning, then critical as one
//! escalation, then RESOLVED when the space is freed), remounted read-only, a second
//! interface is set down and a watched process is killed; each is mailed.
//!
//! The samples are real; the alert step's clock advances one minute per round (the
//! lifecycle takes `now` as a parameter), so a 10-minute prediction window and a hold of
//! two samples run in seconds, without timed assertions.

use std::path::Path;
use std::time::Duration;

use edgemon::alert::{Alerting, Mailer};
use edgemon::buffer::Buffer;
use edgemon::collect::Collector;
use edgemon::collect::outcome::HostOutcome;
use edgemon::config::units::Percent;
use edgemon::config::{
    AgentOptions, AlertLimits, AlertPolicy, CollectConfig, FamilyLimits, FamilyPolicy, HostConfig,
    HostKeyPolicy, InterfaceLimits, MailConfig, MountLimits, MountOverride, SmtpConfig, SmtpTls,
};
use edgemon::report::family::options::{Watch, WatchBy};

use crate::skip_or_fail;
use crate::support::netns::{Conditions, Site};
use crate::support::smtp::Smtp;
use crate::support::{temp_dir, wait_until};

const T0: i64 = 1_800_000_000_000;
const MINUTE: i64 = 60_000;

fn settings() -> CollectConfig {
    CollectConfig {
        interval: Duration::from_secs(60),
        concurrency: 4,
        connect_timeout: Duration::from_secs(5),
        auth_timeout: Duration::from_secs(15),
        command_timeout: Duration::from_secs(30),
        known_hosts: None,
        host_key_policy: HostKeyPolicy::AcceptNew,
        agent_dir: "~/.cache/edgemon".to_string(),
        persistent_sessions: true,
        resident_agent: true,
        agent_idle_timeout: Duration::from_secs(300),
        max_reply_bytes: 1 << 20,
        max_clock_skew: Duration::from_secs(300),
    }
}

/// Only `mount` is judged (every other mount of the machine is off by a `*` entry);
/// the host-wide rules that read the machine itself (units, OOM, memory, limits) are off.
fn limits(mount: &str) -> AlertLimits {
    let off = MountOverride {
        pattern: "*".into(),
        used: Some(None),
        used_critical: Some(None),
        inodes: Some(None),
        inodes_critical: Some(None),
        readonly: Some(false),
        hanging: Some(false),
        filling: Some(false),
    };
    let fill = MountOverride {
        pattern: mount.into(),
        used: Some(Percent::new(80.0)),
        used_critical: Some(Percent::new(90.0)),
        readonly: Some(true),
        hanging: Some(true),
        filling: Some(true),
        ..MountOverride::default()
    };
    AlertLimits {
        cpu: None,
        memory: None,
        swap: None,
        reboot: false,
        unreachable_after: None,
        families: FamilyLimits {
            fs: MountLimits::default(),
            mounts: vec![fill, off],
            iface: InterfaceLimits {
                down: true,
                errors: None,
            },
            process_missing: true,
            ..FamilyLimits::default()
        },
    }
}

fn policy() -> AlertPolicy {
    AlertPolicy {
        fire_after: 1,
        clear_margin: 5.0,
        repeat: Duration::from_secs(86_400),
        flap_window: Duration::from_secs(3600),
        flap_threshold: 6,
        site_unreachable_share: 0.5,
        site_min_hosts: 4,
        loss_horizon: Duration::ZERO,
        families: FamilyPolicy {
            fill_window: Duration::from_secs(10 * 60),
            fill_warning: Duration::from_secs(24 * 3600),
            fill_critical: Duration::from_secs(10 * 60),
            fill_hold: Duration::from_secs(2 * 60),
            interval: Duration::from_secs(60),
            ..FamilyPolicy::default()
        },
    }
}

/// Runs `script` as root inside the host; its stdout.
use crate::families_agent::sh;

/// The appliance side: collector, buffer, alert step, mailer, and the mail so far.
struct Appliance {
    collector: Collector,
    buffer: Buffer,
    alerting: Alerting,
    mailer: Mailer,
    minute: i64,
    /// Every mail's subject and body, in the order they were accepted.
    mails: Vec<(String, String)>,
}

impl Appliance {
    /// The appliance for one host entry, its buffer under `dir`, mail to `smtp`.
    fn new(smtp: &Smtp, entry: HostConfig, dir: &Path, scratch: &Path) -> Appliance {
        let path = dir.join("buffer.sqlite");
        let mail = MailConfig {
            from: "edgemon@site.test".into(),
            recipients: vec!["ops@site.test".into()],
            smtp: Some(SmtpConfig {
                host: "127.0.0.1".into(),
                port: smtp.port(),
                tls: SmtpTls::None,
                username: None,
                password: None,
                timeout: Duration::from_secs(20),
            }),
            file_dir: dir.join("mail"),
            rate_limit: 1000,
            rate_window: Duration::from_secs(3600),
        };
        Appliance {
            collector: Collector::new(
                vec![entry.clone()],
                settings(),
                scratch.join("unused-local-agent"),
                scratch.join("host-keys"),
            ),
            buffer: Buffer::open(&path).expect("open the buffer"),
            alerting: Alerting::from_parts("site-7", &policy(), &mail, &[entry]),
            mailer: Mailer::new(&mail, &path).expect("mailer"),
            minute: 0,
            mails: Vec::new(),
        }
    }

    /// One round at the next minute: collect, record with the alert step, send the
    /// outbox, and wait until the server has what was sent.
    fn round(&mut self, smtp: &Smtp) {
        let outcomes: Vec<HostOutcome> = smol::block_on(self.collector.round());
        if let Some(Err(e)) = outcomes.first().map(|o| &o.result) {
            panic!("minute {}: no sample: {e}", self.minute);
        }
        let now = T0 + self.minute * MINUTE;
        self.alerting
            .record_round(&mut self.buffer, &outcomes, Duration::from_secs(300), now)
            .expect("record the round");
        let sent = self.mailer.send_due_at(now).expect("send").sent;
        let want = self.mails.len() + sent;
        let all = smtp
            .wait_for_messages(want, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("the server never stored {want} mails:\n{}", smtp.log()));
        self.mails = all
            .into_iter()
            .map(|m| (m.subject().to_string(), m.body.clone()))
            .collect();
        self.minute += 1;
    }

    fn subjects(&self) -> Vec<&str> {
        self.mails.iter().map(|(s, _)| s.as_str()).collect()
    }

    /// Whether some mail's subject or body has a line starting with `headline`.
    fn mailed(&self, headline: &str) -> bool {
        self.mails.iter().any(|(s, b)| {
            s.trim_start_matches("[edgemon] ").starts_with(headline)
                || b.lines().any(|l| l.starts_with(headline))
        })
    }
}

#[test]
fn a_filling_tmpfs_a_read_only_remount_a_downed_link_and_a_killed_process_are_mailed() {
    let smtp = skip_or_fail!(Smtp::start());
    let site = skip_or_fail!(Site::start());
    let host = skip_or_fail!(site.host(Conditions::default()));
    let scratch = temp_dir();
    let tag = format!("em-alert-{}", host.namespace());
    let pid = crate::families_agent::fill_link_and_worker(&host, "base", &tag);
    let entry = HostConfig {
        os: Default::default(),
        alerts: limits("/tmp/fill"),
        agent: AgentOptions {
            watch: vec![Watch {
                name: "worker".into(),
                by: WatchBy::Cmdline,
                pattern: format!("*{tag}*"),
            }],
            ..AgentOptions::default()
        },
        ..crate::ssh::ssh_entry(
            "fam",
            &host.address(),
            host.port(),
            site.user(),
            crate::ssh::key(site.key()),
        )
    };
    let dir = temp_dir();
    let mut app = Appliance::new(&smtp, entry, dir.path(), scratch.path());

    // A steady 2 MiB a minute into 64 MiB, from 20 MiB: predicted before it is full,
    // warning at 80 %, critical at 90 %.
    app.round(&smtp);
    let mut used = 20;
    let mut filling_first_at = None;
    while used < 60 {
        sh(
            &host,
            &format!("dd if=/dev/zero of=/tmp/fill/f{used} bs=1M count=2 status=none"),
        );
        used += 2;
        app.round(&smtp);
        if filling_first_at.is_none() && app.mailed("FIRING fs-filling:/tmp/fill full in") {
            filling_first_at = Some(used);
        }
    }
    let at = filling_first_at.unwrap_or_else(|| panic!("never predicted: {:?}", app.subjects()));
    assert!(at * 100 < 64 * 80, "predicted at {at} MiB, not before 80 %");
    assert!(
        app.mailed("ESCALATED fs-filling:/tmp/fill full in"),
        "the prediction escalates as the horizon nears: {:?}",
        app.subjects()
    );
    assert!(
        app.mailed("FIRING fs-used:/tmp/fill used"),
        "{:?}",
        app.subjects()
    );
    assert!(
        app.mails
            .iter()
            .any(|(s, _)| s.contains("fs-used:/tmp/fill") && s.contains("(warning)")),
        "the subject says warning: {:?}",
        app.subjects()
    );
    assert!(
        app.mails
            .iter()
            .any(|(s, _)| s.contains("ESCALATED fs-used:/tmp/fill used")
                && s.contains("> 90% (critical)")),
        "one escalation to critical, its subject says so: {:?}",
        app.subjects()
    );
    assert!(
        !app.mailed("RESOLVED fs-used"),
        "an escalation is no resolve"
    );
    let body = app
        .mails
        .iter()
        .find(|(s, _)| s.contains("FIRING fs-filling"))
        .map(|(_, b)| b.clone())
        .unwrap_or_default();
    assert!(
        body.contains("Full in:") && body.contains("Level:     warning"),
        "{body}"
    );

    // Space freed: one RESOLVED for the used alert (and for the prediction).
    sh(&host, "rm -f /tmp/fill/f*");
    app.round(&smtp);
    assert!(
        app.mailed("RESOLVED fs-used:/tmp/fill used 31.2% < 75%"),
        "{:?}",
        app.subjects()
    );
    assert!(
        app.mailed("RESOLVED fs-filling:/tmp/fill"),
        "{:?}",
        app.subjects()
    );

    // Remounted read-only, a second interface down, the watched process killed.
    sh(
        &host,
        &format!("mount -o remount,ro /tmp/fill && ip link set eth1 down && kill {pid}"),
    );
    assert!(wait_until(Duration::from_secs(10), || sh(
        &host,
        &format!("kill -0 {pid} 2>/dev/null && echo alive || echo gone")
    ) == "gone"));
    app.round(&smtp);
    for headline in [
        "FIRING fs-readonly:/tmp/fill turned read-only (was writable)",
        "FIRING if-down:eth1 link down (was up)",
        "FIRING process-missing:worker no process running",
    ] {
        assert!(
            app.mailed(headline),
            "{headline} not mailed: {:?}",
            app.mails
        );
    }
    assert!(!app.mailed("FIRING if-down:eth0"), "eth0 stayed up");

    // Back to normal: each resolves.
    sh(
        &host,
        "mount -o remount,rw /tmp/fill && ip link set eth1 up",
    );
    assert!(wait_until(Duration::from_secs(10), || sh(
        &host,
        "cat /sys/class/net/eth1/operstate"
    ) == "up"));
    app.round(&smtp);
    for headline in [
        "RESOLVED fs-readonly:/tmp/fill writable again",
        "RESOLVED if-down:eth1 link up again",
    ] {
        assert!(
            app.mailed(headline),
            "{headline} not mailed: {:?}",
            app.subjects()
        );
    }
}

#[test]
fn a_mount_whose_server_stops_is_mailed_as_hanging_and_resolves_when_it_answers() {
    let smtp = skip_or_fail!(Smtp::start());
    let site = skip_or_fail!(Site::start());
    let host = skip_or_fail!(site.host(Conditions::default()));
    skip_or_fail!(crate::support::require_file("/usr/bin/sshfs", "sshfs"));
    let scratch = temp_dir();
    // sshfs to the host's own sshd; stopping its daemon makes every statvfs on the mount wait.
    let daemon = crate::families_agent::sshfs_to_itself(&site, &host, "/tmp/hang");
    let entry = HostConfig {
        os: Default::default(),
        alerts: {
            // The sshfs mount shows the disk behind the host's home, however full the machine
            // running the test is: only the hanging rule is under test here.
            let mut limits = limits("/tmp/hang");
            for entry in &mut limits.families.mounts {
                if entry.pattern == "/tmp/hang" {
                    entry.used = Some(None);
                    entry.used_critical = Some(None);
                    entry.filling = Some(false);
                }
            }
            limits
        },
        agent: AgentOptions {
            statfs_timeout_ms: 1000,
            ..AgentOptions::default()
        },
        ..crate::ssh::ssh_entry(
            "hang",
            &host.address(),
            host.port(),
            site.user(),
            crate::ssh::key(site.key()),
        )
    };
    let dir = temp_dir();
    let mut app = Appliance::new(&smtp, entry, dir.path(), scratch.path());
    app.round(&smtp);
    assert!(app.mails.is_empty(), "{:?}", app.subjects());

    sh(&host, &format!("kill -STOP {daemon}"));
    app.round(&smtp);
    app.round(&smtp);
    assert_eq!(
        app.subjects(),
        [
            "[edgemon] FIRING fs-hanging:/tmp/hang statvfs hanging (no answer within the deadline) on hang"
        ],
        "one FIRING, and no used or read-only alert from a mount without sizes"
    );

    sh(&host, &format!("kill -CONT {daemon}"));
    let mut resolved = false;
    for _ in 0..10 {
        app.round(&smtp);
        if app.mailed("RESOLVED fs-hanging:/tmp/hang statvfs answers again") {
            resolved = true;
            break;
        }
    }
    sh(&host, "umount -l /tmp/hang; true");
    assert!(resolved, "never resolved: {:?}", app.subjects());
}
