//! Table-driven tests of the alert lifecycle: each case is a script of
//! observations (minute, what the round saw) and the transitions expected
//! after each, run through one `check` helper.

use std::time::Duration;

use super::*;
use crate::config::units::Percent;

/// What a round saw: a sample with this CPU %, a sample with this uptime, or a failure.
#[derive(Clone, Copy)]
enum Seen {
    Cpu(f64),
    Uptime(u64),
    Fail,
}
use Seen::{Cpu, Fail, Uptime};

struct Case {
    name: &'static str,
    cpu_limit: f64,
    fire_after: u32,
    /// (minute, observation, expected transitions as `rule:kind` separated by spaces)
    script: &'static [(i64, Seen, &'static str)],
}

fn policy(fire_after: u32) -> AlertPolicy {
    AlertPolicy {
        fire_after,
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

fn check(case: &Case) {
    let limits = AlertLimits {
        cpu: Percent::new(case.cpu_limit),
        memory: None,
        swap: None,
        reboot: true,
        unreachable_after: Some(3),
        families: Default::default(),
    };
    let policy = policy(case.fire_after);
    let mut state = HostState::new();
    let mut failures = 0;
    for &(minute, seen, expected) in case.script {
        let now = 1_700_000_000_000 + minute * 60_000;
        let observation = if let Fail = seen {
            failures += 1;
            Observation::Failed {
                consecutive_failures: failures,
            }
        } else {
            failures = 0;
            let (cpu, uptime_s) = match seen {
                Cpu(c) => (c, 100_000 + minute as u64 * 60),
                Uptime(u) => (1.0, u),
                Fail => (0.0, 0),
            };
            Observation::Sample(Measures {
                cpu,
                memory: 10.0,
                swap: 0.0,
                uptime_s,
            })
        };
        let (next, transitions) = evaluate(&limits, &policy, &state, &observation, now);
        let got: Vec<String> = transitions
            .iter()
            .map(|t| format!("{}:{}", t.rule, t.kind.as_str()))
            .collect();
        let want: Vec<&str> = expected.split_whitespace().collect();
        assert_eq!(got, want, "case `{}` at minute {minute}", case.name);
        state = next;
    }
}

const CASES: &[Case] = &[
    Case {
        name: "fires once, reminds every repeat",
        cpu_limit: 20.0,
        fire_after: 1,
        script: &[
            (0, Cpu(97.0), "cpu:firing"),
            (1, Cpu(97.0), ""),
            (30, Cpu(97.0), ""),
            (59, Cpu(97.0), ""),
            (60, Cpu(97.0), "cpu:reminder"),
            (61, Cpu(97.0), ""),
            (120, Cpu(97.0), "cpu:reminder"),
        ],
    },
    Case {
        name: "hysteresis: resolves only below limit minus margin, once",
        cpu_limit: 20.0,
        fire_after: 1,
        script: &[
            (0, Cpu(25.0), "cpu:firing"),
            (1, Cpu(18.0), ""),
            (2, Cpu(16.0), ""),
            (3, Cpu(21.0), ""),
            (4, Cpu(14.0), "cpu:resolved"),
            (5, Cpu(14.0), ""),
            (6, Cpu(5.0), ""),
        ],
    },
    Case {
        name: "fire_after counts consecutive breaches",
        cpu_limit: 20.0,
        fire_after: 3,
        script: &[
            (0, Cpu(30.0), ""),
            (1, Cpu(30.0), ""),
            (2, Cpu(10.0), ""),
            (3, Cpu(30.0), ""),
            (4, Cpu(30.0), ""),
            (5, Cpu(30.0), "cpu:firing"),
            (6, Cpu(30.0), ""),
        ],
    },
    Case {
        name: "a silent host goes stale, not resolved; unreachable speaks",
        cpu_limit: 20.0,
        fire_after: 1,
        script: &[
            (0, Cpu(97.0), "cpu:firing"),
            (1, Fail, "cpu:stale"),
            (2, Fail, ""),
            (3, Fail, "unreachable:firing"),
            (4, Fail, ""),
            (5, Cpu(97.0), "unreachable:resolved"),
            (6, Cpu(97.0), ""),
            (7, Cpu(10.0), "cpu:resolved"),
        ],
    },
    Case {
        name: "unreachable reminds while it lasts",
        cpu_limit: 90.0,
        fire_after: 1,
        script: &[
            (0, Fail, ""),
            (1, Fail, ""),
            (2, Fail, "unreachable:firing"),
            (30, Fail, ""),
            (62, Fail, "unreachable:reminder"),
            (63, Cpu(1.0), "unreachable:resolved"),
        ],
    },
    Case {
        name: "flapping is mailed once, then settles after a quiet window",
        cpu_limit: 20.0,
        fire_after: 1,
        script: &[
            (0, Cpu(30.0), "cpu:firing"),
            (1, Cpu(10.0), "cpu:resolved"),
            (2, Cpu(30.0), "cpu:firing"),
            (3, Cpu(10.0), "cpu:flapping"),
            (4, Cpu(30.0), ""),
            (5, Cpu(10.0), ""),
            (6, Cpu(30.0), ""),
            (7, Cpu(10.0), ""),
            (66, Cpu(10.0), ""),
            (68, Cpu(10.0), "cpu:resolved"),
            (69, Cpu(10.0), ""),
            (70, Cpu(30.0), "cpu:firing"),
        ],
    },
    Case {
        name: "flapping settles as firing when the condition holds",
        cpu_limit: 20.0,
        fire_after: 1,
        script: &[
            (0, Cpu(30.0), "cpu:firing"),
            (1, Cpu(10.0), "cpu:resolved"),
            (2, Cpu(30.0), "cpu:firing"),
            (3, Cpu(10.0), "cpu:flapping"),
            (4, Cpu(30.0), ""),
            (30, Cpu(30.0), ""),
            (64, Cpu(30.0), "cpu:firing"),
            (65, Cpu(30.0), ""),
        ],
    },
    Case {
        name: "reboot fires when uptime goes down, also across an outage",
        cpu_limit: 90.0,
        fire_after: 1,
        script: &[
            (0, Uptime(3600), ""),
            (1, Uptime(3660), ""),
            (2, Uptime(30), "reboot:firing"),
            (3, Uptime(90), ""),
            (4, Fail, ""),
            (5, Fail, ""),
            (6, Uptime(20), "reboot:firing"),
        ],
    },
    Case {
        name: "a 0% limit always fires, once",
        cpu_limit: 0.0,
        fire_after: 1,
        script: &[
            (0, Cpu(0.0), "cpu:firing"),
            (1, Cpu(3.0), ""),
            (2, Cpu(0.0), ""),
        ],
    },
];

#[test]
fn lifecycle_cases() {
    for case in CASES {
        check(case);
    }
}

#[test]
fn a_removed_limit_ends_its_alert_silently() {
    let policy = policy(1);
    let mut limits = AlertLimits {
        cpu: Percent::new(20.0),
        memory: None,
        swap: None,
        reboot: false,
        unreachable_after: None,
        families: Default::default(),
    };
    let sample = Observation::Sample(Measures {
        cpu: 97.0,
        memory: 1.0,
        swap: 0.0,
        uptime_s: 10,
    });
    let (state, t) = evaluate(&limits, &policy, &HostState::new(), &sample, 0);
    assert_eq!(t.len(), 1);
    assert_eq!(state[&Rule::Cpu].phase, Phase::Firing);
    limits.cpu = None;
    let (state, t) = evaluate(&limits, &policy, &state, &sample, 1);
    assert!(t.is_empty());
    assert!(!state.contains_key(&Rule::Cpu));
}

#[test]
fn transitions_carry_value_limit_and_clear_threshold() {
    let limits = AlertLimits {
        cpu: Percent::new(20.0),
        memory: Percent::new(50.0),
        swap: None,
        reboot: false,
        unreachable_after: None,
        families: Default::default(),
    };
    let sample = Observation::Sample(Measures {
        cpu: 97.0,
        memory: 75.0,
        swap: 0.0,
        uptime_s: 10,
    });
    let (_, t) = evaluate(&limits, &policy(1), &HostState::new(), &sample, 5);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].rule, Rule::Cpu);
    assert_eq!(t[0].value, Some(97.0));
    assert_eq!(t[0].limit, Some(20.0));
    assert_eq!(t[0].clear, Some(15.0));
    assert_eq!(t[0].since, 5);
    assert_eq!(t[1].rule, Rule::Memory);
    assert_eq!(t[1].value, Some(75.0));
}
