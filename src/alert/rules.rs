//! Alert rules and their lifecycle: a pure function from (limits, policy,
//! state, observation, time) to (new state, transitions).
//!
//! No IO and no clock: the caller loads the state, passes `now`, stores the
//! new state and turns the transitions into events and mail. The lifecycle of
//! a limit rule (`cpu`, `memory`, `swap`) and of `unreachable`:
//!
//! - `ok` → `pending` → `firing` after `fire_after` consecutive breaching
//!   samples (a value above the limit; a limit of 0% always breaches, which
//!   makes a handy test of the mail path);
//! - `firing` → `ok` only when the value drops below the clear threshold,
//!   `limit - clear_margin` (hysteresis), with one `resolved` transition;
//! - a `reminder` every `repeat` while firing;
//! - a host that stops reporting does not recover: a firing limit alert goes
//!   `stale` (recorded, not mailed) and the `unreachable` rule speaks; when
//!   samples return, the alert resumes firing or resolves on their values;
//! - an alert whose fire/resolve flips reach `flap_threshold` within
//!   `flap_window` becomes `flapping`, announced once; it leaves that state
//!   after a whole `flap_window` without a flip, as firing or resolved.
//!
//! `reboot` is a one-shot: it fires when uptime goes down between samples.
//!
//! The rules of the metric families (filesystems, interfaces, units, watched processes,
//! system limits) live in `super::families`; they share this lifecycle ([`step`]) and, for
//! the rules with a warning and a critical level, add the level on top of it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

pub use super::families::FamilyRule;
use crate::config::{AlertLimits, AlertPolicy};

/// An alert rule of a host: one of the host rules, or a family rule with its member.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// Total CPU %.
    Cpu,
    /// Memory used / total, %.
    Memory,
    /// Swap used / total, %.
    Swap,
    /// Uptime went down between two samples.
    Reboot,
    /// N consecutive failed rounds.
    Unreachable,
    /// A family rule and its member (mount, interface, unit, watch; `""` for the host-wide
    /// ones such as `oom-kills`), named `fs-used:/var` or `oom-kills`.
    Family(FamilyRule, String),
}

impl Rule {
    /// Every rule, in evaluation order.
    pub const ALL: [Rule; 5] = [
        Rule::Cpu,
        Rule::Memory,
        Rule::Swap,
        Rule::Reboot,
        Rule::Unreachable,
    ];

    /// The stable name used in the buffer, MySQL and mail (`cpu`, `fs-used:/var`).
    pub fn as_str(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Rule::Cpu => "cpu",
            Rule::Memory => "memory",
            Rule::Swap => "swap",
            Rule::Reboot => "reboot",
            Rule::Unreachable => "unreachable",
            Rule::Family(rule, member) if member.is_empty() => rule.as_str(),
            Rule::Family(rule, member) => {
                return Cow::Owned(format!("{}:{member}", rule.as_str()));
            }
        })
    }

    /// The rule named `name` (`cpu`, `oom-kills`, `fs-used:/var`).
    pub fn parse(name: &str) -> Option<Rule> {
        if let Some(rule) = Rule::ALL.into_iter().find(|r| r.as_str() == name) {
            return Some(rule);
        }
        let (family, member) = name.split_once(':').unwrap_or((name, ""));
        let rule = FamilyRule::parse(family)?;
        (rule.has_members() != member.is_empty()).then(|| Rule::Family(rule, member.to_string()))
    }

    /// Whether values of this rule are percentages.
    pub fn is_percent(&self) -> bool {
        match self {
            Rule::Cpu | Rule::Memory | Rule::Swap => true,
            Rule::Family(rule, _) => rule.is_percent(),
            Rule::Reboot | Rule::Unreachable => false,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// The level of an alert with two (the filesystem rules): warning, then critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Past the warning limit.
    Warning,
    /// Past the critical limit.
    Critical,
}

impl Level {
    /// The stable name (`warning`, `critical`), as mail shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }

    /// The number stored in the buffer's `alert_state.level` (1, 2; 0 is no level).
    pub fn code(level: Option<Level>) -> i64 {
        match level {
            None => 0,
            Some(Level::Warning) => 1,
            Some(Level::Critical) => 2,
        }
    }

    /// The level stored as `code`.
    pub fn from_code(code: i64) -> Option<Level> {
        match code {
            1 => Some(Level::Warning),
            2 => Some(Level::Critical),
            _ => None,
        }
    }
}

/// Where an alert is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Not breaching.
    #[default]
    Ok,
    /// Breaching, fewer than `fire_after` samples so far.
    Pending,
    /// Firing (mailed).
    Firing,
    /// Flipping too often; mailed once as such.
    Flapping,
    /// Was firing, but the host stopped reporting.
    Stale,
}

impl Phase {
    /// The stable name stored in the buffer.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Ok => "ok",
            Phase::Pending => "pending",
            Phase::Firing => "firing",
            Phase::Flapping => "flapping",
            Phase::Stale => "stale",
        }
    }

    /// The phase named `name`; unknown names read as `ok`.
    pub fn parse(name: &str) -> Phase {
        match name {
            "pending" => Phase::Pending,
            "firing" => Phase::Firing,
            "flapping" => Phase::Flapping,
            "stale" => Phase::Stale,
            _ => Phase::Ok,
        }
    }
}

/// The state of one rule of one host.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleState {
    /// Lifecycle phase.
    pub phase: Phase,
    /// Consecutive breaching samples; while flapping, > 0 means the condition holds.
    pub breaches: u32,
    /// Start of the firing episode (or of the phase), Unix ms.
    pub since: Option<i64>,
    /// Last value seen (for `reboot`: the last uptime, seconds).
    pub last_value: Option<f64>,
    /// Last time the alert was mailed, Unix ms.
    pub last_notified_at: Option<i64>,
    /// Times of recent fire/resolve flips, Unix ms, oldest first.
    pub flips: Vec<i64>,
    /// The level while firing, for rules with two (`None` otherwise).
    pub level: Option<Level>,
}

/// The state of every rule of one host; a missing rule is [`RuleState::default`].
pub type HostState = BTreeMap<Rule, RuleState>;

/// What a round observed for a host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// A sample arrived.
    Sample(Measures),
    /// Collection failed; this many rounds in a row now.
    Failed {
        /// Consecutive failed rounds, this one included.
        consecutive_failures: u32,
    },
}

/// The values of a sample the rules look at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measures {
    /// CPU %.
    pub cpu: f64,
    /// Memory used / total, %.
    pub memory: f64,
    /// Swap used / total, % (0 without swap).
    pub swap: f64,
    /// Uptime, seconds.
    pub uptime_s: u64,
}

/// What kind of change a transition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// The alert started (or, for `reboot`, happened).
    Firing,
    /// Still firing after `repeat`.
    Reminder,
    /// The condition ended.
    Resolved,
    /// The alert flips too often; no further mail until it settles.
    Flapping,
    /// The host stopped reporting while the alert was firing.
    Stale,
    /// A firing alert went from its warning to its critical level (mailed).
    Escalated,
    /// A firing alert went back from critical to warning (recorded, not mailed).
    Deescalated,
}

impl EventKind {
    /// The stable name used in the buffer and MySQL.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Firing => "firing",
            EventKind::Reminder => "reminder",
            EventKind::Resolved => "resolved",
            EventKind::Flapping => "flapping",
            EventKind::Stale => "stale",
            EventKind::Escalated => "escalated",
            EventKind::Deescalated => "deescalated",
        }
    }
}

/// One change worth recording (and, unless stale, mailing).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// Which rule.
    pub rule: Rule,
    /// What happened.
    pub kind: EventKind,
    /// The observed value (percent, failed rounds, or uptime seconds).
    pub value: Option<f64>,
    /// The configured limit.
    pub limit: Option<f64>,
    /// The clear threshold (limit rules).
    pub clear: Option<f64>,
    /// The previous uptime, seconds (`reboot`).
    pub previous: Option<f64>,
    /// Start of the episode, Unix ms.
    pub since: i64,
    /// The level, for rules with two.
    pub level: Option<Level>,
}

impl Transition {
    /// Whether this transition is mailed (stale alerts are recorded only: the
    /// `unreachable` rule speaks for a silent host; a step back from critical to
    /// warning is recorded only, the next reminder says warning).
    pub fn notifies(&self) -> bool {
        !matches!(self.kind, EventKind::Stale | EventKind::Deescalated)
    }
}

/// What one rule reads from an observation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    /// The observed value.
    pub(crate) value: f64,
    /// Whether it breaches.
    pub(crate) breach: bool,
    /// Whether it is clear of the limit (with hysteresis).
    pub(crate) clear: bool,
    /// The limit shown.
    pub(crate) limit: f64,
    /// The clear threshold shown.
    pub(crate) clear_at: Option<f64>,
}

/// Evaluates every rule of one host against one observation.
pub fn evaluate(
    limits: &AlertLimits,
    policy: &AlertPolicy,
    state: &HostState,
    observation: &Observation,
    now: i64,
) -> (HostState, Vec<Transition>) {
    let mut next = HostState::new();
    let mut transitions = Vec::new();
    for rule in Rule::ALL {
        let old = state.get(&rule).cloned().unwrap_or_default();
        let (new, transition) = match rule {
            Rule::Family(..) => continue,
            Rule::Reboot => reboot(limits.reboot, &old, observation, now),
            Rule::Unreachable => match limits.unreachable_after {
                Some(n) => step(&rule, &old, unreachable(n, observation), 1, policy, now),
                None => (RuleState::default(), None),
            },
            _ => match limit_of(limits, &rule) {
                Some(limit) => {
                    let reading = limit_reading(&rule, limit, policy.clear_margin, observation);
                    step(&rule, &old, reading, policy.fire_after, policy, now)
                }
                // A limit removed from the configuration ends its alert silently.
                None => (RuleState::default(), None),
            },
        };
        if new != RuleState::default() {
            next.insert(rule, new);
        }
        transitions.extend(transition);
    }
    (next, transitions)
}

fn limit_of(limits: &AlertLimits, rule: &Rule) -> Option<f64> {
    match rule {
        Rule::Cpu => limits.cpu,
        Rule::Memory => limits.memory,
        Rule::Swap => limits.swap,
        Rule::Reboot | Rule::Unreachable | Rule::Family(..) => None,
    }
    .map(|p| p.value())
}

fn limit_reading(rule: &Rule, limit: f64, margin: f64, obs: &Observation) -> Option<Reading> {
    let Observation::Sample(m) = obs else {
        return None;
    };
    let value = match rule {
        Rule::Cpu => m.cpu,
        Rule::Memory => m.memory,
        Rule::Swap => m.swap,
        Rule::Reboot | Rule::Unreachable | Rule::Family(..) => return None,
    };
    let clear_at = (limit - margin.max(0.0)).max(0.0);
    Some(Reading {
        value,
        breach: value > limit || limit <= 0.0,
        clear: value < clear_at,
        limit,
        clear_at: Some(clear_at),
    })
}

fn unreachable(after: u32, obs: &Observation) -> Option<Reading> {
    let (value, breach) = match obs {
        Observation::Failed {
            consecutive_failures,
        } => (*consecutive_failures, *consecutive_failures >= after.max(1)),
        Observation::Sample(_) => (0, false),
    };
    Some(Reading {
        value: f64::from(value),
        breach,
        clear: !breach && matches!(obs, Observation::Sample(_)),
        limit: f64::from(after.max(1)),
        clear_at: None,
    })
}

fn reboot(
    enabled: bool,
    old: &RuleState,
    obs: &Observation,
    now: i64,
) -> (RuleState, Option<Transition>) {
    let Observation::Sample(m) = obs else {
        return (old.clone(), None);
    };
    let uptime = m.uptime_s as f64;
    let mut new = RuleState {
        last_value: Some(uptime),
        ..old.clone()
    };
    let rebooted = old.last_value.is_some_and(|prev| uptime < prev);
    if !(enabled && rebooted) {
        return (new, None);
    }
    let booted_at = now - (m.uptime_s as i64).saturating_mul(1000);
    new.since = Some(booted_at);
    new.last_notified_at = Some(now);
    let transition = Transition {
        rule: Rule::Reboot,
        kind: EventKind::Firing,
        value: Some(uptime),
        limit: None,
        clear: None,
        previous: old.last_value,
        since: booted_at,
        level: None,
    };
    (new, Some(transition))
}

/// The lifecycle machine shared by the limit rules, `unreachable` and the family rules.
pub(crate) fn step(
    rule: &Rule,
    old: &RuleState,
    reading: Option<Reading>,
    fire_after: u32,
    policy: &AlertPolicy,
    now: i64,
) -> (RuleState, Option<Transition>) {
    let mut s = old.clone();
    let window = policy.flap_window.as_millis() as i64;
    s.flips.retain(|&t| now - t < window);
    let Some(r) = reading else {
        return match s.phase {
            Phase::Firing | Phase::Flapping => {
                s.phase = Phase::Stale;
                let t = transition(rule, EventKind::Stale, &s, None);
                (s, Some(t))
            }
            Phase::Pending => (
                RuleState {
                    breaches: 0,
                    phase: Phase::Ok,
                    ..s
                },
                None,
            ),
            Phase::Ok | Phase::Stale => (s, None),
        };
    };
    s.last_value = Some(r.value);
    let t = match s.phase {
        Phase::Ok | Phase::Pending if r.breach => {
            s.breaches += 1;
            if s.breaches >= fire_after.max(1) {
                flip(rule, &mut s, &r, policy, now, true)
            } else {
                s.phase = Phase::Pending;
                None
            }
        }
        Phase::Ok | Phase::Pending => {
            s.breaches = 0;
            s.phase = Phase::Ok;
            None
        }
        Phase::Firing | Phase::Stale if r.clear => flip(rule, &mut s, &r, policy, now, false),
        Phase::Firing | Phase::Stale => {
            s.phase = Phase::Firing;
            s.breaches += u32::from(r.breach);
            remind(rule, &mut s, &r, policy, now)
        }
        Phase::Flapping => flapping(rule, &mut s, &r, now),
    };
    (s, t)
}

/// Fires (`up`) or resolves, or marks the alert flapping when it flips too often.
fn flip(
    rule: &Rule,
    s: &mut RuleState,
    r: &Reading,
    policy: &AlertPolicy,
    now: i64,
    up: bool,
) -> Option<Transition> {
    s.flips.push(now);
    let episode = s.since.unwrap_or(now);
    s.last_notified_at = Some(now);
    if policy.flap_threshold > 0 && s.flips.len() >= policy.flap_threshold as usize {
        s.phase = Phase::Flapping;
        s.breaches = u32::from(up);
        s.since = Some(now);
        return Some(transition(rule, EventKind::Flapping, s, Some(r)));
    }
    if up {
        s.phase = Phase::Firing;
        s.since = Some(now);
        Some(transition(rule, EventKind::Firing, s, Some(r)))
    } else {
        s.phase = Phase::Ok;
        s.breaches = 0;
        let mut t = transition(rule, EventKind::Resolved, s, Some(r));
        t.since = episode;
        s.since = Some(now);
        Some(t)
    }
}

fn remind(
    rule: &Rule,
    s: &mut RuleState,
    r: &Reading,
    policy: &AlertPolicy,
    now: i64,
) -> Option<Transition> {
    let repeat = policy.repeat.as_millis() as i64;
    let last = s.last_notified_at.or(s.since).unwrap_or(now);
    if repeat > 0 && now - last >= repeat {
        s.last_notified_at = Some(now);
        Some(transition(rule, EventKind::Reminder, s, Some(r)))
    } else {
        None
    }
}

/// While flapping, only the underlying condition (with hysteresis) is tracked;
/// after a whole window without a flip the alert settles, mailed once.
fn flapping(rule: &Rule, s: &mut RuleState, r: &Reading, now: i64) -> Option<Transition> {
    let active = s.breaches > 0;
    if active && r.clear {
        s.breaches = 0;
        s.flips.push(now);
    } else if !active && r.breach {
        s.breaches = 1;
        s.flips.push(now);
    } else if active {
        s.breaches += 1;
    }
    if !s.flips.is_empty() {
        return None;
    }
    s.last_notified_at = Some(now);
    let kind = if s.breaches > 0 {
        s.phase = Phase::Firing;
        EventKind::Firing
    } else {
        s.phase = Phase::Ok;
        EventKind::Resolved
    };
    let t = transition(rule, kind, s, Some(r));
    if kind == EventKind::Resolved {
        s.since = Some(now);
    }
    Some(t)
}

fn transition(rule: &Rule, kind: EventKind, s: &RuleState, r: Option<&Reading>) -> Transition {
    Transition {
        rule: rule.clone(),
        kind,
        value: r.map(|r| r.value).or(s.last_value),
        limit: r.map(|r| r.limit),
        clear: r.and_then(|r| r.clear_at),
        previous: None,
        since: s.since.unwrap_or_default(),
        level: s.level,
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
