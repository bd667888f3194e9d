//! Table tests of the pure planner: grouping, rate limit, silences,
//! acknowledgements and site awareness, with no buffer at all.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use super::Alerting;
use super::plan::{self, HostInput, MailKey, SITE_RULE, SiteState, Snapshot};
use super::rules::{Measures, Observation, Phase, Rule, RuleState};
use crate::buffer::SilenceRow;
use crate::config::units::Percent;
use crate::config::{AlertLimits, AlertPolicy, HostConfig, MailConfig, Transport};

const NOW: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;

/// What a host looks like before and during the round.
#[derive(Clone, Copy)]
enum Seen {
    /// A sample at this CPU %.
    Cpu(f64),
    /// The n-th failed round in a row.
    Failed(u32),
}

/// The host's alert before the round.
#[derive(Clone)]
enum Prior {
    Nothing,
    /// Firing since two hours (so a reminder is due); `true`: its FIRING was not mailed.
    Firing(Rule, bool),
}

#[derive(Default)]
struct Case {
    name: &'static str,
    hosts: Vec<(String, Seen, Prior)>,
    /// (host or `None` for all, rules)
    silences: Vec<(Option<&'static str>, &'static [&'static str])>,
    acks: Vec<(&'static str, Rule)>,
    /// The site alert fires already (`Some(mailed)`).
    site: Option<bool>,
    rate_limit_reached: bool,
    /// Subjects mailed to ops@x.test, in order.
    mails: Vec<&'static str>,
    events: usize,
    withheld: usize,
}

fn hosts(n: usize, seen: Seen, prior: Prior) -> Vec<(String, Seen, Prior)> {
    (0..n)
        .map(|i| (format!("h{i:02}"), seen, prior.clone()))
        .collect()
}

fn alerting(names: &[String], rate_limit: u32) -> Alerting {
    let hosts: Vec<HostConfig> = names
        .iter()
        .map(|n| HostConfig {
            os: Default::default(),
            name: n.clone(),
            transport: Transport::Local,
            mail: None,
            alerts: AlertLimits {
                cpu: Percent::new(20.0),
                memory: None,
                swap: None,
                reboot: false,
                unreachable_after: Some(2),
                families: Default::default(),
            },
            agent: Default::default(),
        })
        .collect();
    let mail = MailConfig {
        from: "edgemon@x.test".into(),
        recipients: vec!["ops@x.test".into()],
        smtp: None,
        file_dir: "unused".into(),
        rate_limit,
        rate_window: Duration::from_secs(3600),
    };
    let policy = AlertPolicy {
        fire_after: 1,
        clear_margin: 5.0,
        repeat: Duration::from_secs(3600),
        flap_window: Duration::from_secs(3600),
        flap_threshold: 100,
        site_unreachable_share: 0.5,
        site_min_hosts: 4,
        loss_horizon: Duration::from_secs(86_400),
        families: Default::default(),
    };
    Alerting::from_parts("site-x", &policy, &mail, &hosts)
}

fn snapshot(case: &Case) -> Snapshot {
    let mut snap = Snapshot::default();
    for (n, (name, seen, prior)) in case.hosts.iter().enumerate() {
        let observation = match *seen {
            Seen::Cpu(cpu) => Observation::Sample(Measures {
                cpu,
                memory: 10.0,
                swap: 0.0,
                uptime_s: 1000,
            }),
            Seen::Failed(k) => Observation::Failed {
                consecutive_failures: k,
            },
        };
        let mut input = HostInput {
            host_id: n as i64 + 1,
            host: name.clone(),
            address: format!("{name}:22"),
            observation,
            error: matches!(seen, Seen::Failed(_)).then(|| "unreachable: refused".into()),
            state: Default::default(),
            unmailed: BTreeSet::new(),
            families: None,
            memory: Default::default(),
        };
        if let Prior::Firing(rule, unmailed) = prior.clone() {
            input.state.insert(
                rule.clone(),
                RuleState {
                    phase: Phase::Firing,
                    breaches: 3,
                    since: Some(NOW - 2 * HOUR),
                    last_value: Some(90.0),
                    last_notified_at: Some(NOW - 2 * HOUR),
                    flips: Vec::new(),
                    level: None,
                },
            );
            if unmailed {
                input.unmailed.insert(rule);
            }
        }
        snap.hosts.push(input);
    }
    snap.silences = case
        .silences
        .iter()
        .enumerate()
        .map(|(n, (host, rules))| SilenceRow {
            id: n as i64 + 1,
            host: host.map(str::to_string),
            rules: rules.iter().map(|r| r.to_string()).collect(),
            starts_at: NOW - HOUR,
            ends_at: NOW + HOUR,
            comment: "maintenance".into(),
            created_by: "alice".into(),
            created_at: NOW - HOUR,
        })
        .collect();
    snap.acks = case
        .acks
        .iter()
        .map(|(host, rule)| {
            let id = snap
                .hosts
                .iter()
                .find(|h| h.host == *host)
                .map_or(0, |h| h.host_id);
            (id, rule.as_str().to_string())
        })
        .collect();
    snap.site = case.site.map(|mailed| SiteState {
        since: NOW - HOUR,
        down: 15,
        total: 20,
        mailed,
    });
    if case.rate_limit_reached {
        snap.sent_in_window.insert("ops@x.test".into(), 10);
    }
    snap
}

fn run(case: &Case) -> plan::Plan {
    let names: Vec<String> = case.hosts.iter().map(|h| h.0.clone()).collect();
    let alerting = alerting(&names, 10);
    let snap = snapshot(case);
    let evaluated = plan::evaluate(&alerting, &snap, NOW);
    plan::plan(&alerting, &snap, &evaluated, &HashMap::new(), NOW)
}

fn cases() -> Vec<Case> {
    let one = |seen, prior| vec![("web".to_string(), seen, prior)];
    vec![
        Case {
            name: "two hosts firing share one mail",
            hosts: hosts(2, Seen::Cpu(97.0), Prior::Nothing),
            mails: vec!["[edgemon] FIRING cpu 97% > 20% on h00 (+1 more)"],
            events: 2,
            ..Case::default()
        },
        Case {
            name: "over the rate limit nothing is mailed",
            hosts: hosts(2, Seen::Cpu(97.0), Prior::Nothing),
            rate_limit_reached: true,
            events: 2,
            ..Case::default()
        },
        Case {
            name: "a silenced firing is recorded, not mailed",
            hosts: one(Seen::Cpu(97.0), Prior::Nothing),
            silences: vec![(Some("web"), &[])],
            events: 1,
            withheld: 1,
            ..Case::default()
        },
        Case {
            name: "a silence of another rule does not apply",
            hosts: one(Seen::Cpu(97.0), Prior::Nothing),
            silences: vec![(Some("web"), &["memory"])],
            mails: vec!["[edgemon] FIRING cpu 97% > 20% on web"],
            events: 1,
            ..Case::default()
        },
        Case {
            name: "a silence of every host applies",
            hosts: one(Seen::Cpu(97.0), Prior::Nothing),
            silences: vec![(None, &["cpu"])],
            events: 1,
            withheld: 1,
            ..Case::default()
        },
        Case {
            name: "RESOLVED follows a mailed FIRING despite a silence",
            hosts: one(Seen::Cpu(1.0), Prior::Firing(Rule::Cpu, false)),
            silences: vec![(Some("web"), &[])],
            mails: vec!["[edgemon] RESOLVED cpu 1% < 15% on web"],
            events: 1,
            ..Case::default()
        },
        Case {
            name: "no RESOLVED for a FIRING that was not mailed",
            hosts: one(Seen::Cpu(1.0), Prior::Firing(Rule::Cpu, true)),
            events: 1,
            withheld: 1,
            ..Case::default()
        },
        Case {
            name: "a reminder is mailed",
            hosts: one(Seen::Cpu(97.0), Prior::Firing(Rule::Cpu, false)),
            mails: vec!["[edgemon] REMINDER cpu 97% > 20% on web"],
            events: 1,
            ..Case::default()
        },
        Case {
            name: "no reminder for an acknowledged alert",
            hosts: one(Seen::Cpu(97.0), Prior::Firing(Rule::Cpu, false)),
            acks: vec![("web", Rule::Cpu)],
            events: 1,
            withheld: 1,
            ..Case::default()
        },
        Case {
            name: "an acknowledged alert still resolves by mail",
            hosts: one(Seen::Cpu(1.0), Prior::Firing(Rule::Cpu, false)),
            acks: vec![("web", Rule::Cpu)],
            mails: vec!["[edgemon] RESOLVED cpu 1% < 15% on web"],
            events: 1,
            ..Case::default()
        },
        Case {
            name: "15 of 20 hosts unreachable: one site mail",
            hosts: [
                hosts(15, Seen::Failed(2), Prior::Nothing),
                (15..20)
                    .map(|i| (format!("h{i:02}"), Seen::Cpu(1.0), Prior::Nothing))
                    .collect(),
            ]
            .concat(),
            mails: vec!["[edgemon] FIRING site-unreachable: 15 of 20 hosts unreachable on site-x"],
            events: 15,
            withheld: 15,
            ..Case::default()
        },
        Case {
            name: "a silence of the site withholds its mail",
            hosts: hosts(5, Seen::Failed(2), Prior::Nothing),
            silences: vec![(None, &[SITE_RULE])],
            events: 5,
            withheld: 6,
            ..Case::default()
        },
        Case {
            name: "below site_min_hosts each host is mailed",
            hosts: hosts(3, Seen::Failed(2), Prior::Nothing),
            mails: vec!["[edgemon] FIRING unreachable 2 failed rounds on h00 (+2 more)"],
            events: 3,
            ..Case::default()
        },
        Case {
            name: "half down is not more than half",
            hosts: [
                hosts(2, Seen::Failed(2), Prior::Nothing),
                vec![
                    ("h08".into(), Seen::Cpu(1.0), Prior::Nothing),
                    ("h09".into(), Seen::Cpu(1.0), Prior::Nothing),
                ],
            ]
            .concat(),
            mails: vec!["[edgemon] FIRING unreachable 2 failed rounds on h00 (+1 more)"],
            events: 2,
            ..Case::default()
        },
        Case {
            name: "site recovers: its RESOLVED, and RESOLVED only for mailed host alerts",
            hosts: [
                vec![
                    (
                        "h00".into(),
                        Seen::Cpu(1.0),
                        Prior::Firing(Rule::Unreachable, false),
                    ),
                    (
                        "h01".into(),
                        Seen::Cpu(1.0),
                        Prior::Firing(Rule::Unreachable, true),
                    ),
                ],
                (2..20)
                    .map(|i| (format!("h{i:02}"), Seen::Cpu(1.0), Prior::Nothing))
                    .collect(),
            ]
            .concat(),
            site: Some(true),
            mails: vec![
                "[edgemon] RESOLVED site-unreachable: 20 of 20 hosts reporting on site-x",
                "[edgemon] RESOLVED unreachable reporting again on h00",
            ],
            events: 2,
            withheld: 1,
            ..Case::default()
        },
        Case {
            name: "a host still down when the site recovers is announced on its own",
            hosts: [
                vec![(
                    "h00".into(),
                    Seen::Failed(9),
                    Prior::Firing(Rule::Unreachable, true),
                )],
                (1..20)
                    .map(|i| (format!("h{i:02}"), Seen::Cpu(1.0), Prior::Nothing))
                    .collect(),
            ]
            .concat(),
            site: Some(true),
            mails: vec![
                "[edgemon] RESOLVED site-unreachable: 19 of 20 hosts reporting on site-x",
                "[edgemon] FIRING unreachable 9 failed rounds on h00",
            ],
            events: 1,
            ..Case::default()
        },
        Case {
            name: "while the site alert fires, a new unreachable host waits",
            hosts: [
                hosts(15, Seen::Failed(3), Prior::Firing(Rule::Unreachable, true)),
                vec![("h15".into(), Seen::Failed(2), Prior::Nothing)],
                (16..20)
                    .map(|i| (format!("h{i:02}"), Seen::Cpu(1.0), Prior::Nothing))
                    .collect(),
            ]
            .concat(),
            site: Some(true),
            // The 15 are due a reminder: recorded, withheld like their FIRING.
            events: 16,
            withheld: 16,
            ..Case::default()
        },
    ]
}

#[test]
fn planner_cases() {
    for case in cases() {
        let plan = run(&case);
        let subjects: Vec<&str> = plan
            .mails
            .iter()
            .filter(|m| m.recipient == "ops@x.test")
            .map(|m| m.subject.as_str())
            .collect();
        assert_eq!(subjects, case.mails, "{}: mails", case.name);
        assert_eq!(plan.events.len(), case.events, "{}: events", case.name);
        assert_eq!(plan.withheld, case.withheld, "{}: withheld", case.name);
    }
}

#[test]
fn a_withheld_firing_is_remembered_and_an_ended_alert_drops_its_ack() {
    let case = Case {
        hosts: vec![("web".into(), Seen::Cpu(97.0), Prior::Nothing)],
        silences: vec![(Some("web"), &[])],
        ..Case::default()
    };
    let plan = run(&case);
    let cpu = plan
        .states
        .iter()
        .find(|s| s.rule == Rule::Cpu)
        .expect("cpu state");
    assert!(cpu.unmailed, "{plan:?}");

    let case = Case {
        hosts: vec![(
            "web".into(),
            Seen::Cpu(1.0),
            Prior::Firing(Rule::Cpu, false),
        )],
        acks: vec![("web", Rule::Cpu)],
        ..Case::default()
    };
    let plan = run(&case);
    assert_eq!(plan.clear_acks, [(1, "cpu".to_string())]);
}

#[test]
fn held_alerts_reference_the_planned_events_and_site_mail_has_its_own_id() {
    let case = Case {
        hosts: hosts(2, Seen::Cpu(97.0), Prior::Nothing),
        rate_limit_reached: true,
        ..Case::default()
    };
    let plan = run(&case);
    let held = plan.held.expect("held changes");
    assert_eq!(held["ops@x.test"].len(), 2);
    assert_eq!(plan.held_count, 2);

    let case = Case {
        hosts: hosts(5, Seen::Failed(2), Prior::Nothing),
        ..Case::default()
    };
    let plan = run(&case);
    assert_eq!(plan.mails.len(), 1);
    assert_eq!(plan.mails[0].key, MailKey::Tag(plan::TAG_SITE));
    assert!(
        plan.mails[0]
            .body
            .contains("h04  (h04:22)  unreachable: refused"),
        "{}",
        plan.mails[0].body
    );
}

#[test]
fn time_to_first_loss_below_the_horizon_mails_the_operators_once_then_resolves() {
    let names = vec!["web".to_string()];
    let alerting = alerting(&names, 10);
    let base = Case {
        hosts: vec![("web".into(), Seen::Cpu(1.0), Prior::Nothing)],
        ..Case::default()
    };
    let mut snap = snapshot(&base);
    let subjects = |snap: &Snapshot| {
        let evaluated = plan::evaluate(&alerting, snap, NOW);
        let plan = plan::plan(&alerting, snap, &evaluated, &HashMap::new(), NOW);
        let subjects: Vec<String> = plan.mails.iter().map(|m| m.subject.clone()).collect();
        (subjects, plan.kv)
    };
    snap.loss_horizon_s = Some(5 * 3600);
    let (mails, kv) = subjects(&snap);
    assert_eq!(
        mails,
        ["[edgemon] FIRING time-to-first-loss 5h < 1day on site-x"]
    );
    assert_eq!(kv, [(plan::LOSS_KEY, Some("mailed".to_string()))]);
    snap.loss_alert = Some(true);
    assert!(subjects(&snap).0.is_empty(), "mailed once");
    snap.loss_horizon_s = Some(30 * 3600);
    let (mails, _) = subjects(&snap);
    assert_eq!(
        mails,
        ["[edgemon] RESOLVED time-to-first-loss 1day 6h on site-x"]
    );
    snap.loss_alert = None;
    snap.loss_horizon_s = Some(3600);
    snap.silences = snapshot(&Case {
        silences: vec![(None, &[plan::LOSS_RULE])],
        ..Case::default()
    })
    .silences;
    let (mails, kv) = subjects(&snap);
    assert!(mails.is_empty(), "silenced");
    assert_eq!(kv, [(plan::LOSS_KEY, Some("withheld".to_string()))]);
}

#[test]
fn a_weekly_window_of_the_config_silences_like_a_cli_silence() {
    let (start, end) =
        crate::config::WeeklySilence::parse_window("Mon 00:00-Sun 23:59").expect("parse");
    let weekly = crate::config::WeeklySilence {
        hosts: vec!["web".into()],
        rules: vec!["cpu".into()],
        start,
        end,
        weekly: "Mon 00:00-Sun 23:59".into(),
        comment: "always".into(),
    };
    let rows = super::weekly_in_force(std::slice::from_ref(&weekly), NOW);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].created_by, "config");
    let case = Case {
        hosts: vec![("web".into(), Seen::Cpu(97.0), Prior::Nothing)],
        ..Case::default()
    };
    let mut snap = snapshot(&case);
    snap.silences = rows;
    let alerting = alerting(&["web".to_string()], 10);
    let evaluated = plan::evaluate(&alerting, &snap, NOW);
    let plan = plan::plan(&alerting, &snap, &evaluated, &HashMap::new(), NOW);
    assert!(plan.mails.is_empty(), "{:?}", plan.mails);
    assert_eq!((plan.events.len(), plan.withheld), (1, 1));
}

#[test]
fn hosts_behind_a_failed_bastion_are_one_mail_naming_it_then_one_resolved() {
    // 6 hosts: 4 behind bastion dmz (unreachable through it), 1 behind it failing on its own,
    // 1 healthy. The share of failed hosts is over the site threshold, yet the site alert does
    // not fire: the bastion explains them.
    let mut case = Case {
        hosts: hosts(6, Seen::Failed(2), Prior::Nothing),
        ..Case::default()
    };
    case.hosts[5].1 = Seen::Cpu(1.0);
    let names: Vec<String> = case.hosts.iter().map(|h| h.0.clone()).collect();
    let alerting = alerting(&names, 10);
    let mut snap = snapshot(&case);
    for h in &mut snap.hosts[..4] {
        h.error =
            Some("unreachable-via: via bastion dmz: TCP connect to 198.18.0.2:22 failed".into());
    }
    let evaluated = plan::evaluate(&alerting, &snap, NOW);
    let first = plan::plan(&alerting, &snap, &evaluated, &HashMap::new(), NOW);
    let subjects: Vec<&str> = first.mails.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(
        subjects.iter().any(|s| s
            == &"[edgemon] FIRING bastion-unreachable: bastion dmz, 4 hosts behind it unreachable on site-x"),
        "{subjects:?}"
    );
    // The one host down on its own behind a healthy path is mailed as itself.
    assert!(
        subjects
            .iter()
            .any(|s| s.contains("unreachable") && s.contains("h04")),
        "{subjects:?}"
    );
    assert!(
        !subjects.iter().any(|s| s.contains(SITE_RULE)),
        "{subjects:?}"
    );
    let bastion_mail = first
        .mails
        .iter()
        .find(|m| m.subject.contains("dmz"))
        .expect("mail");
    assert!(
        bastion_mail
            .body
            .contains("h03  (h03:22)  unreachable-via: via bastion dmz")
    );
    let (_, state) = first
        .kv
        .iter()
        .find(|(k, _)| *k == plan::BASTIONS_KEY)
        .expect("state kept");
    let state: std::collections::BTreeMap<String, plan::BastionState> =
        serde_json::from_str(state.as_deref().expect("set")).expect("json");
    assert_eq!(state["dmz"].hosts, ["h00", "h01", "h02", "h03"]);

    // Next round, still down, two of its hosts still in flight: nothing more is mailed.
    snap.bastions = state.clone();
    for h in &mut snap.hosts[..2] {
        h.observation = Observation::InFlight;
        h.error = Some("in-flight: no answer since the last tick".into());
    }
    let evaluated = plan::evaluate(&alerting, &snap, NOW + 60_000);
    let again = plan::plan(&alerting, &snap, &evaluated, &HashMap::new(), NOW + 60_000);
    assert!(
        !again.mails.iter().any(|m| m.subject.contains("dmz")),
        "{:?}",
        again.mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );

    // The bastion is back: its hosts report again, one RESOLVED names it.
    for h in &mut snap.hosts[..4] {
        h.observation = Observation::Sample(Measures {
            cpu: 1.0,
            memory: 10.0,
            swap: 0.0,
            uptime_s: 1000,
        });
        h.error = None;
    }
    let evaluated = plan::evaluate(&alerting, &snap, NOW + 120_000);
    let healed = plan::plan(&alerting, &snap, &evaluated, &HashMap::new(), NOW + 120_000);
    let subjects: Vec<&str> = healed.mails.iter().map(|m| m.subject.as_str()).collect();
    assert!(
        subjects.contains(&"[edgemon] RESOLVED bastion-unreachable: bastion dmz on site-x"),
        "{subjects:?}"
    );
    assert!(healed.kv.contains(&(plan::BASTIONS_KEY, None)));
}
