//! The alert rules of the metric families: filesystems (used and inodes with a warning and
//! a critical level, turned read-only, hanging, filling up), interfaces (link down, error
//! ratio), failed units, watched processes missing, and the system's limits (OOM kills,
//! memory available, open files, processes, clock offset). Pure: no IO and no clock.
//!
//! Every rule goes through the lifecycle of [`super::rules::step`] (for-N, hysteresis,
//! reminders, flapping, stale), keyed `(host, rule:member)` (`fs-used:/var`,
//! `if-down:eth1`, `unit-failed:nginx.service`; host-wide ones have no member: `oom-kills`).
//! What a rule needs from earlier rounds it keeps in its own state (`last_value`: was the
//! mount writable, was the link up) or in [`Memory`], which the buffer keeps in two small
//! tables written in the round's transaction: the filling-up prediction's least-squares
//! sums in time buckets ([`filling`]) and the previous values of counters (OOM kills,
//! interface errors and packets).
//!
//! Members come and go: a member absent from a section that was measured ends its alerts
//! (a RESOLVED if one fired: a failed unit is absent once it recovers); a section that was
//! not measured (a failed round, an older agent, a hanging mount's sizes) leaves them as
//! they are, and a firing alert goes stale. A rule turned off or a member ignored by the
//! configuration ends silently, as a removed limit does.

mod filesystems;
pub mod filling;
mod levels;
mod links;
mod services;
mod system;

use std::collections::{BTreeMap, BTreeSet};

use edgemon_proto::report::Report;
use edgemon_proto::report::family::filesystems::Filesystem;
use edgemon_proto::report::family::interfaces::Interface;
use edgemon_proto::report::family::processes::Watched;
use edgemon_proto::report::family::system::System;
use edgemon_proto::report::family::units::FailedUnit;
use edgemon_proto::report::family::{self, FamilySpec};

pub use filling::Bucket;

use super::rules::{self, HostState, Phase, Reading, Rule, RuleState, Transition};
use crate::config::{AlertPolicy, FamilyLimits};

/// A rule of the metric families (its member is part of [`Rule::Family`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FamilyRule {
    /// Filesystem used % of used + available, warning and critical.
    FsUsed,
    /// Filesystem inodes used %, warning and critical.
    FsInodes,
    /// The filesystem turned read-only (it was writable).
    FsReadonly,
    /// The mount's `statvfs` did not answer in time.
    FsHanging,
    /// Predicted to fill up within a horizon (least squares), warning and critical.
    FsFilling,
    /// The link went down (it was up).
    IfDown,
    /// Errors / packets over one sample interval.
    IfErrors,
    /// The OOM killer killed since the last sample.
    OomKills,
    /// A systemd unit failed.
    UnitFailed,
    /// A watched process has no running instance.
    ProcessMissing,
    /// Memory available below a share of the total.
    MemAvailable,
    /// Open files above a share of `file-max`.
    Fds,
    /// Processes above a share of `pid_max`.
    Procs,
    /// The agent's clock is off by more than `collect.max_clock_skew`.
    ClockSkew,
}

impl FamilyRule {
    /// Every family rule, in evaluation order.
    pub const ALL: [FamilyRule; 14] = [
        FamilyRule::FsUsed,
        FamilyRule::FsInodes,
        FamilyRule::FsReadonly,
        FamilyRule::FsHanging,
        FamilyRule::FsFilling,
        FamilyRule::IfDown,
        FamilyRule::IfErrors,
        FamilyRule::OomKills,
        FamilyRule::UnitFailed,
        FamilyRule::ProcessMissing,
        FamilyRule::MemAvailable,
        FamilyRule::Fds,
        FamilyRule::Procs,
        FamilyRule::ClockSkew,
    ];

    /// The stable name (before the `:member`).
    pub fn as_str(self) -> &'static str {
        match self {
            FamilyRule::FsUsed => "fs-used",
            FamilyRule::FsInodes => "fs-inodes",
            FamilyRule::FsReadonly => "fs-readonly",
            FamilyRule::FsHanging => "fs-hanging",
            FamilyRule::FsFilling => "fs-filling",
            FamilyRule::IfDown => "if-down",
            FamilyRule::IfErrors => "if-errors",
            FamilyRule::OomKills => "oom-kills",
            FamilyRule::UnitFailed => "unit-failed",
            FamilyRule::ProcessMissing => "process-missing",
            FamilyRule::MemAvailable => "mem-available",
            FamilyRule::Fds => "fds",
            FamilyRule::Procs => "procs",
            FamilyRule::ClockSkew => "clock-skew",
        }
    }

    /// The rule named `name` (without a member).
    pub fn parse(name: &str) -> Option<FamilyRule> {
        FamilyRule::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether its alerts are per member (`fs-used:/var`) rather than per host.
    pub fn has_members(self) -> bool {
        !matches!(
            self,
            FamilyRule::OomKills
                | FamilyRule::MemAvailable
                | FamilyRule::Fds
                | FamilyRule::Procs
                | FamilyRule::ClockSkew
        )
    }

    /// Whether its values are percentages.
    pub fn is_percent(self) -> bool {
        matches!(
            self,
            FamilyRule::FsUsed
                | FamilyRule::FsInodes
                | FamilyRule::IfErrors
                | FamilyRule::MemAvailable
                | FamilyRule::Fds
                | FamilyRule::Procs
        )
    }

    /// The family whose section measures it (`None`: every report does).
    fn family(self) -> Option<&'static FamilySpec> {
        Some(match self {
            FamilyRule::FsUsed
            | FamilyRule::FsInodes
            | FamilyRule::FsReadonly
            | FamilyRule::FsHanging
            | FamilyRule::FsFilling => &family::filesystems::SPEC,
            FamilyRule::IfDown | FamilyRule::IfErrors => &family::interfaces::SPEC,
            FamilyRule::UnitFailed => &family::units::SPEC,
            FamilyRule::ProcessMissing => &family::processes::SPEC,
            FamilyRule::OomKills
            | FamilyRule::MemAvailable
            | FamilyRule::Fds
            | FamilyRule::Procs => &family::system::SPEC,
            FamilyRule::ClockSkew => return None,
        })
    }
}

/// What one report says for the family rules; a section absent is `None` (not measured).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FamilyObservation {
    /// The filesystems section.
    pub filesystems: Option<Vec<Filesystem>>,
    /// The interfaces section.
    pub interfaces: Option<Vec<Interface>>,
    /// The failed units section.
    pub units: Option<Vec<FailedUnit>>,
    /// The watched processes section.
    pub processes: Option<Vec<Watched>>,
    /// The system section's member.
    pub system: Option<System>,
    /// The report's memory total, bytes (for memory available %).
    pub mem_total: u64,
    /// The agent's clock minus the appliance's at arrival, ms (`collected_at - received_at`).
    pub clock_offset_ms: i64,
}

impl FamilyObservation {
    /// The observation of `report`, which arrived at `received_at` (appliance clock, Unix ms).
    pub fn from_report(report: &Report, received_at: i64) -> FamilyObservation {
        let typed = |spec: &FamilySpec| report.section(spec).is_some();
        FamilyObservation {
            filesystems: typed(&family::filesystems::SPEC).then(|| report.typed()),
            interfaces: typed(&family::interfaces::SPEC).then(|| report.typed()),
            units: typed(&family::units::SPEC).then(|| report.typed()),
            processes: typed(&family::processes::SPEC).then(|| report.typed()),
            system: report.typed::<System>().into_iter().next(),
            mem_total: report.mem_total,
            clock_offset_ms: report.collected_at_ms.saturating_sub(received_at),
        }
    }

    fn measured(&self, rule: FamilyRule) -> bool {
        match rule.family().map(|f| f.id) {
            None => true,
            Some(id) if id == family::filesystems::SPEC.id => self.filesystems.is_some(),
            Some(id) if id == family::interfaces::SPEC.id => self.interfaces.is_some(),
            Some(id) if id == family::units::SPEC.id => self.units.is_some(),
            Some(id) if id == family::processes::SPEC.id => self.processes.is_some(),
            Some(_) => self.system.is_some(),
        }
    }
}

/// What the family rules kept from earlier rounds of one host (read in the snapshot).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    /// The filling-up prediction's buckets per mount, oldest first.
    pub buckets: BTreeMap<String, Vec<Bucket>>,
    /// Previous counter values by series (`oom_kills`, `if:eth0:errors`, ...).
    pub counters: BTreeMap<String, f64>,
}

/// What the family rules write for one host besides alert state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Writes {
    /// Buckets to store (insert or replace): mount and bucket.
    pub buckets: Vec<(String, Bucket)>,
    /// Buckets starting before this time (Unix ms) are out of every window: delete them.
    pub prune_before: Option<i64>,
    /// Counter values to store.
    pub counters: Vec<(String, f64)>,
    /// Counter series whose member is gone.
    pub drop_counters: Vec<String>,
}

impl Writes {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
            && self.prune_before.is_none()
            && self.counters.is_empty()
            && self.drop_counters.is_empty()
    }
}

/// The family rules' verdict on one host.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// New states of the family rules (absent: default, nothing kept).
    pub next: HostState,
    /// Their transitions.
    pub transitions: Vec<Transition>,
    /// Buckets and counters to write.
    pub writes: Writes,
}

/// Evaluates the family rules of one host. `obs` is `None` when its round failed.
pub fn evaluate(
    limits: &FamilyLimits,
    policy: &AlertPolicy,
    state: &HostState,
    obs: Option<&FamilyObservation>,
    memory: &Memory,
    now: i64,
) -> Verdict {
    let mut ctx = Ctx {
        policy,
        state,
        now,
        verdict: Verdict::default(),
        seen: BTreeSet::new(),
    };
    if let Some(obs) = obs {
        filesystems::evaluate(&mut ctx, limits, obs, memory);
        links::evaluate(&mut ctx, limits, obs, memory);
        services::evaluate(&mut ctx, limits, obs);
        system::evaluate(&mut ctx, limits, obs, memory);
    }
    ctx.finish(obs)
}

/// The evaluation of one host in progress.
pub(crate) struct Ctx<'a> {
    policy: &'a AlertPolicy,
    state: &'a HostState,
    now: i64,
    verdict: Verdict,
    /// Rules decided this round (evaluated, unmeasured or off).
    seen: BTreeSet<Rule>,
}

impl Ctx<'_> {
    fn old(&self, rule: &Rule) -> RuleState {
        self.state.get(rule).cloned().unwrap_or_default()
    }

    /// Runs one plain rule (one limit) through the lifecycle.
    fn plain(&mut self, rule: Rule, reading: Reading, fire_after: u32) {
        let old = self.old(&rule);
        let (new, t) = rules::step(
            &rule,
            &old,
            Some(reading),
            fire_after,
            self.policy,
            self.now,
        );
        self.keep(rule, new, t.into_iter().collect());
    }

    /// Runs one rule with a warning and a critical level through the lifecycle.
    fn leveled(&mut self, rule: Rule, reading: levels::Leveled, fire_after: u32) {
        let old = self.old(&rule);
        let (new, ts) = levels::step(&rule, &old, reading, fire_after, self.policy, self.now);
        self.keep(rule, new, ts);
    }

    /// The member is there but this value was not measured (a hanging mount's sizes, the
    /// first sample of a counter): pending breaches reset, a firing alert goes stale.
    fn unmeasured(&mut self, rule: Rule) {
        let old = self.old(&rule);
        let (new, t) = rules::step(&rule, &old, None, 1, self.policy, self.now);
        self.keep(rule, new, t.into_iter().collect());
    }

    /// This round says nothing new about the rule (a counter was reset, or is seen for the
    /// first time): its state stays as it is.
    fn hold(&mut self, rule: Rule) {
        if let Some(old) = self.state.get(&rule) {
            self.verdict.next.insert(rule.clone(), old.clone());
        }
        self.seen.insert(rule);
    }

    /// The rule is off for this member (configuration): its alert ends silently.
    fn off(&mut self, rule: Rule) {
        self.seen.insert(rule);
    }

    fn keep(&mut self, rule: Rule, mut new: RuleState, ts: Vec<Transition>) {
        // A quiet alert keeps its last value only where the next round needs it (was the
        // mount writable, was the link up), so healthy members leave no row to rewrite.
        let remembers = matches!(
            rule,
            Rule::Family(FamilyRule::FsReadonly | FamilyRule::IfDown, _)
        );
        if new.phase == Phase::Ok && new.breaches == 0 && !remembers {
            new.last_value = None;
        }
        if new != RuleState::default() {
            self.verdict.next.insert(rule.clone(), new);
        }
        self.verdict.transitions.extend(ts);
        self.seen.insert(rule);
    }

    /// Stores a counter's value for the next round.
    fn counter(&mut self, series: String, value: f64) {
        self.verdict.writes.counters.push((series, value));
    }

    /// Decides the family states no evaluator saw this round: unmeasured when their
    /// section was not (or the round failed), ended when their member is gone.
    fn finish(mut self, obs: Option<&FamilyObservation>) -> Verdict {
        let rest: Vec<(Rule, RuleState)> = self
            .state
            .iter()
            .filter(|(rule, _)| matches!(rule, Rule::Family(..)) && !self.seen.contains(*rule))
            .map(|(r, s)| (r.clone(), s.clone()))
            .collect();
        for (rule, old) in rest {
            let Rule::Family(kind, _) = &rule else {
                continue;
            };
            match obs {
                Some(obs) if obs.measured(*kind) => {
                    // The member is gone (a unit no longer failed, a mount unmounted).
                    let value = old.last_value.unwrap_or(0.0);
                    let reading = Reading {
                        value,
                        breach: false,
                        clear: true,
                        limit: 0.0,
                        clear_at: None,
                    };
                    let (new, t) =
                        rules::step(&rule, &old, Some(reading), 1, self.policy, self.now);
                    let mut ts: Vec<Transition> = t.into_iter().collect();
                    for t in &mut ts {
                        t.limit = None;
                        t.value = None;
                    }
                    self.verdict.transitions.extend(ts);
                    if new.phase != Phase::Ok {
                        self.verdict.next.insert(rule, new);
                    }
                }
                _ => self.unmeasured(rule),
            }
        }
        self.verdict
    }
}

/// Samples before an alert fires: `alert.for`.
fn fire_after(policy: &AlertPolicy) -> u32 {
    policy.fire_after.max(1)
}

/// A flag rule's reading: `value` 1 or 0.
fn flag(on: bool, breach: bool) -> Reading {
    Reading {
        value: f64::from(u8::from(on)),
        breach,
        clear: !on,
        limit: 0.0,
        clear_at: None,
    }
}

/// The increase of a counter since `previous` (a counter that went down was reset, by a
/// reboot: then all of `now` is new).
fn increase(previous: f64, now: f64) -> f64 {
    if now >= previous { now - previous } else { now }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
#[path = "buffer_tests.rs"]
mod buffer_tests;
