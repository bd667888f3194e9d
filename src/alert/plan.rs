//! Alert planning: pure functions from a snapshot of the buffer to a plan of
//! writes. No IO and no clock.
//!
//! The round's transaction reads a [`Snapshot`] (alert states of the round's
//! hosts, silences, acknowledgements, the mail counts of the rate limit, held
//! alerts, operator-alert state); [`evaluate`] runs the rules of every host;
//! the caller reads the recent samples of the hosts whose transitions may be
//! mailed; [`plan`] decides what is recorded, what is mailed to whom (one mail
//! per recipient, a summary beyond a few alerts, nothing over the rate limit),
//! what silences, acknowledgements and a site outage withhold, and the operator
//! mails (site unreachable, buffer warning). The caller applies the [`Plan`]
//! in the same transaction and commits.
//!
//! Mail rules: a FIRING (or FLAPPING) is mailed unless a silence matches it or,
//! for `unreachable`, a site alert is firing; a REMINDER also not while the
//! alert is acknowledged; a RESOLVED is mailed exactly when the episode's
//! FIRING was (`unmailed` remembers which), whatever silences say by then.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::families;
use super::message::{self, AlertItem};
use super::rules::{self, EventKind, HostState, Observation, Phase, Rule, Transition};
use super::{AlertLog, Alerting};
use crate::buffer::{SampleBrief, SilenceRow};

/// The rule name of the site alert (silences may name it).
pub const SITE_RULE: &str = "site-unreachable";
/// The rule name of the alert on a bastion whose hosts are unreachable through it.
pub const BASTION_RULE: &str = "bastion-unreachable";
/// The rule name of the operator alert on time-to-first-loss (silences may name it).
pub const LOSS_RULE: &str = "time-to-first-loss";

/// One host of the round, as the planner sees it.
#[derive(Debug, Clone)]
pub struct HostInput {
    /// The host's row id.
    pub host_id: i64,
    /// Its name.
    pub host: String,
    /// Its address, as shown to operators.
    pub address: String,
    /// What this round observed.
    pub observation: Observation,
    /// The error of this round, if it failed.
    pub error: Option<String>,
    /// Its stored alert state.
    pub state: HostState,
    /// Rules whose current episode's FIRING was not mailed.
    pub unmailed: BTreeSet<Rule>,
    /// What its report says for the family rules (`None`: the round failed).
    pub families: Option<families::FamilyObservation>,
    /// What the family rules kept from earlier rounds.
    pub memory: families::Memory,
}

/// The site alert while it fires (kept in the buffer's kv table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteState {
    /// When it fired, Unix ms.
    pub since: i64,
    /// Hosts unreachable when it fired.
    pub down: usize,
    /// Hosts in that round.
    pub total: usize,
    /// Whether its FIRING was mailed (a silence may have withheld it).
    pub mailed: bool,
}

/// A bastion alert while it fires (kept in the buffer's kv table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BastionState {
    /// When it fired, Unix ms.
    pub since: i64,
    /// The hosts that blamed the bastion since then.
    pub hosts: Vec<String>,
    /// Whether its FIRING was mailed (a silence may have withheld it).
    pub mailed: bool,
}

/// Everything the planner reads, read once inside the round's transaction.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The round's hosts that have alert rules, in round order.
    pub hosts: Vec<HostInput>,
    /// Silences that have not ended.
    pub silences: Vec<SilenceRow>,
    /// Acknowledged alerts: (host id, rule name).
    pub acks: BTreeSet<(i64, String)>,
    /// Mails queued per recipient within the rate window.
    pub sent_in_window: BTreeMap<String, i64>,
    /// Alerts held back by the rate limit, per recipient: event ids.
    pub held: BTreeMap<String, Vec<i64>>,
    /// `(at, headline)` of the held events, by id.
    pub held_lines: BTreeMap<i64, (i64, String)>,
    /// Retention's current operator warning ("" when none).
    pub buffer_warning: String,
    /// The warning last mailed ("" when none).
    pub buffer_warning_mailed: String,
    /// The site alert, while it fires.
    pub site: Option<SiteState>,
    /// The bastion alerts while they fire, by bastion name.
    pub bastions: BTreeMap<String, BastionState>,
    /// Time-to-first-loss of this round, seconds, when the round computed it.
    pub loss_horizon_s: Option<i64>,
    /// The loss alert while it fires: whether its FIRING was mailed.
    pub loss_alert: Option<bool>,
}

impl Snapshot {
    /// Whether a silence matching `host` and `rule` is in force at `now`.
    pub fn silenced(&self, host: Option<&str>, rule: &str, now: i64) -> bool {
        self.silences
            .iter()
            .any(|s| silence_matches(s, host, rule, now))
    }
}

/// Whether silence `s` covers `rule` of `host` (`None`: the site itself) at `now`. A
/// silence's rule covers the rule of that name, every member of a family rule when it
/// names the rule alone (`fs-used` covers `fs-used:/var`), and what it matches as a glob
/// (`fs-*:/var*`).
pub fn silence_matches(s: &SilenceRow, host: Option<&str>, rule: &str, now: i64) -> bool {
    let in_time = s.starts_at <= now && now < s.ends_at;
    let host_ok = match (&s.host, host) {
        (None, _) => true,
        (Some(h), Some(name)) => h == name,
        (Some(_), None) => false,
    };
    let rule_ok = s.rules.is_empty() || s.rules.iter().any(|r| rule_covers(r, rule));
    in_time && host_ok && rule_ok
}

/// Whether a silence's or an acknowledgement's rule `pattern` covers the alert `rule`.
pub fn rule_covers(pattern: &str, rule: &str) -> bool {
    pattern == rule
        || rule
            .split_once(':')
            .is_some_and(|(kind, _)| kind == pattern)
        || edgemon_proto::report::family::options::glob_match(pattern, rule)
}

/// The rules' verdict on one host.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// Index into [`Snapshot::hosts`].
    pub index: usize,
    /// The new state.
    pub next: HostState,
    /// The transitions, in rule order.
    pub transitions: Vec<Transition>,
    /// The family rules' buckets and counters to write.
    pub writes: families::Writes,
}

/// Runs the rules of every host of the snapshot: the host rules, then the family rules.
pub fn evaluate(alerting: &Alerting, snap: &Snapshot, now: i64) -> Vec<Evaluated> {
    snap.hosts
        .iter()
        .enumerate()
        .filter_map(|(index, h)| {
            let rules = alerting.hosts.get(&h.host)?;
            if matches!(h.observation, Observation::InFlight) {
                // Still in flight: neither the host rules nor the family rules see a round.
                return Some(Evaluated {
                    index,
                    next: h.state.clone(),
                    transitions: Vec::new(),
                    writes: families::Writes::default(),
                });
            }
            let (mut next, mut transitions) = rules::evaluate(
                &rules.limits,
                &alerting.policy,
                &h.state,
                &h.observation,
                now,
            );
            let verdict = families::evaluate(
                &rules.limits.families,
                &alerting.policy,
                &h.state,
                h.families.as_ref(),
                &h.memory,
                now,
            );
            next.extend(verdict.next);
            transitions.extend(verdict.transitions);
            Some(Evaluated {
                index,
                next,
                transitions,
                writes: verdict.writes,
            })
        })
        .collect()
}

/// Hosts whose recent samples a mail may list (those with a mailable transition).
pub fn needs_samples(snap: &Snapshot, evaluated: &[Evaluated]) -> Vec<i64> {
    evaluated
        .iter()
        .filter(|e| e.transitions.iter().any(Transition::notifies))
        .map(|e| snap.hosts[e.index].host_id)
        .collect()
}

/// An alert event, by its place in the plan or by its stored id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRef {
    /// The n-th event of [`Plan::events`].
    Planned(usize),
    /// An event already in the buffer.
    Stored(i64),
}

/// What a Message-ID is derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKey {
    /// The mail's first alert event.
    Event(EventRef),
    /// An operator mail without an event: a fixed tag per kind.
    Tag(i64),
}

/// Message-ID tags of operator mails.
pub const TAG_BUFFER_WARNING: i64 = 0;
/// The site alert's tag.
pub const TAG_SITE: i64 = -2;
/// The first bastion alert's tag; the next ones count down from it.
pub const TAG_BASTION_BASE: i64 = -1000;
/// The loss alert's tag.
pub const TAG_LOSS: i64 = -3;

/// An alert event to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEvent {
    /// The host's row id.
    pub host_id: i64,
    /// The rule.
    pub rule: Rule,
    /// The kind.
    pub kind: EventKind,
    /// Observed value.
    pub value: Option<f64>,
    /// The limit.
    pub threshold: Option<f64>,
    /// The headline.
    pub message: String,
}

/// A mail to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMail {
    /// One recipient.
    pub recipient: String,
    /// Subject.
    pub subject: String,
    /// Body.
    pub body: String,
    /// Source of its Message-ID.
    pub key: MailKey,
}

/// One changed `alert_state` row.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedState {
    /// The host's row id.
    pub host_id: i64,
    /// The rule.
    pub rule: Rule,
    /// Its new state.
    pub state: rules::RuleState,
    /// Whether the episode's FIRING was withheld.
    pub unmailed: bool,
}

/// Every write of the round's alert step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Changed alert states.
    pub states: Vec<PlannedState>,
    /// Events to record (every transition, mailed or not).
    pub events: Vec<PlannedEvent>,
    /// Mails to queue.
    pub mails: Vec<PlannedMail>,
    /// The new held map, when it changed (`Some(empty)` clears it).
    pub held: Option<BTreeMap<String, Vec<EventRef>>>,
    /// Alerts held by the rate limit this round.
    pub held_count: usize,
    /// Mailable transitions withheld by a silence, an acknowledgement or the site alert.
    pub withheld: usize,
    /// Acknowledgements to delete (the alert ended): (host id, rule).
    pub clear_acks: Vec<(i64, String)>,
    /// kv writes: key, value (`None` deletes).
    pub kv: Vec<(&'static str, Option<String>)>,
    /// Lines to log after the commit.
    pub logs: Vec<AlertLog>,
    /// The family rules' buckets and counters, per host id.
    pub family_writes: Vec<(i64, families::Writes)>,
}

/// kv key of the site alert's state.
pub const SITE_KEY: &str = crate::buffer::kv_key::ALERT_SITE;
/// kv key of the bastion alerts' state.
pub const BASTIONS_KEY: &str = crate::buffer::kv_key::ALERT_BASTIONS;
/// kv key of the loss alert while it fires (`mailed` or `withheld`).
pub const LOSS_KEY: &str = crate::buffer::kv_key::ALERT_LOSS;
/// kv key of the buffer warning last mailed.
pub const BUFFER_WARNING_MAILED: &str = crate::buffer::kv_key::ALERT_BUFFER_WARNING_MAILED;

/// Plans the round's alert writes and mail.
pub fn plan(
    alerting: &Alerting,
    snap: &Snapshot,
    evaluated: &[Evaluated],
    recent: &HashMap<i64, Vec<SampleBrief>>,
    now: i64,
) -> Plan {
    let mut plan = Plan::default();
    let bastions = plan_bastions(alerting, snap, now, &mut plan);
    let site = plan_site(alerting, snap, now, &mut plan);
    let mut by_recipient: BTreeMap<String, Vec<(AlertItem, EventRef)>> = BTreeMap::new();
    for ev in evaluated {
        let h = &snap.hosts[ev.index];
        let Some(rules) = alerting.hosts.get(&h.host) else {
            continue;
        };
        if !ev.writes.is_empty() {
            plan.family_writes.push((h.host_id, ev.writes.clone()));
        }
        // A host behind a bastion whose alert fires waits like one behind a site alert (also
        // while its attempt is still in flight).
        let held = blamed_bastion(h).is_some_and(|b| bastions.firing.contains(b))
            || (in_flight(h) && bastions.hosts.contains(&h.host));
        let site = Site {
            firing: site.firing || held,
            resolved_now: site.resolved_now || bastions.resolved_now,
        };
        let items = plan_host(snap, h, ev, &site, recent, now, &mut plan);
        if items.is_empty() {
            continue;
        }
        for recipient in alerting.recipients_of(rules) {
            by_recipient
                .entry(recipient)
                .or_default()
                .extend(items.iter().cloned());
        }
    }
    plan_mail(alerting, snap, by_recipient, now, &mut plan);
    plan_buffer_warning(alerting, snap, now, &mut plan);
    plan_loss(alerting, snap, now, &mut plan);
    plan
}

/// Mails the operators when time-to-first-loss falls below `alert.loss_horizon`, and once
/// more when it rises above it again (if the first mail went out).
fn plan_loss(alerting: &Alerting, snap: &Snapshot, now: i64, plan: &mut Plan) {
    let Some(seconds) = snap.loss_horizon_s else {
        return;
    };
    let horizon = alerting.policy.loss_horizon.as_secs() as i64;
    let below = horizon > 0 && seconds < horizon;
    let id = &alerting.appliance_id;
    let human = |s: i64| {
        humantime::format_duration(std::time::Duration::from_secs(s.max(0) as u64)).to_string()
    };
    match (snap.loss_alert, below) {
        (None, true) => {
            let mailed = !snap.silenced(None, LOSS_RULE, now);
            let subject = format!(
                "[edgemon] FIRING {LOSS_RULE} {} < {} on {id}",
                human(seconds),
                human(horizon)
            );
            let body = format!(
                "If nothing reaches MySQL from now on, the local buffer of appliance {id} starts
                 shedding unsynced samples (recorded as drops) in {}, less than alert.loss_horizon
                 ({}). It is the first of buffer.max_unsynced_age, buffer.max_size and
                 buffer.min_free to be reached at the current growth rate.

                 Check the sync (`edgemon status`: last sync error, oldest unsynced) and the disk,
                 or raise the [buffer] bounds.

Observed:  {}
Appliance: {id}
",
                human(seconds),
                human(horizon),
                message::time(now)
            );
            if mailed {
                operator_mail(alerting, &subject, &body, MailKey::Tag(TAG_LOSS), plan);
            } else {
                plan.withheld += 1;
            }
            let value = if mailed { "mailed" } else { "withheld" };
            plan.kv.push((LOSS_KEY, Some(value.to_string())));
            plan.logs.push(AlertLog::Site {
                line: subject.trim_start_matches("[edgemon] ").to_string(),
                mailed,
            });
        }
        (Some(mailed), false) => {
            let subject = format!("[edgemon] RESOLVED {LOSS_RULE} {} on {id}", human(seconds));
            let body = format!(
                "Time-to-first-loss of appliance {id} is {} again (alert.loss_horizon {}).

                 Appliance: {id}
",
                human(seconds),
                human(horizon)
            );
            if mailed {
                operator_mail(alerting, &subject, &body, MailKey::Tag(TAG_LOSS), plan);
            }
            plan.kv.push((LOSS_KEY, None));
            plan.logs.push(AlertLog::Site {
                line: subject.trim_start_matches("[edgemon] ").to_string(),
                mailed,
            });
        }
        _ => {}
    }
}

/// The site alert this round: whether it fires, and whether it resolved now.
#[derive(Debug, Clone, Copy, Default)]
struct Site {
    firing: bool,
    resolved_now: bool,
}

fn plan_site(alerting: &Alerting, snap: &Snapshot, now: i64, plan: &mut Plan) -> Site {
    let policy = &alerting.policy;
    let total = snap.hosts.len();
    let down: Vec<&HostInput> = snap
        .hosts
        .iter()
        // Hosts behind a failed bastion are that bastion's alert, not the site's.
        .filter(|h| blamed_bastion(h).is_none())
        .filter(|h| {
            let after = alerting
                .hosts
                .get(&h.host)
                .and_then(|r| r.limits.unreachable_after)
                .unwrap_or(1)
                .max(1);
            matches!(h.observation, Observation::Failed { consecutive_failures } if consecutive_failures >= after)
        })
        .collect();
    let out = total >= policy.site_min_hosts as usize
        && down.len() as f64 > policy.site_unreachable_share * total as f64;
    let id = &alerting.appliance_id;
    match (&snap.site, out) {
        (None, true) => {
            let mailed = !snap.silenced(None, SITE_RULE, now);
            let subject = format!(
                "[edgemon] FIRING {SITE_RULE}: {} of {total} hosts unreachable on {id}",
                down.len()
            );
            let mut body = format!(
                "{} of the {total} hosts of appliance {id} became unreachable in the same round.\n\
                 One alert for the site instead of one per host; per-host unreachable alerts\n\
                 wait while it fires. Check the network, switch or power the hosts share.\n\n\
                 Unreachable hosts:\n",
                down.len()
            );
            for h in &down {
                let error = h.error.as_deref().unwrap_or("-");
                body.push_str(&format!("  {}  ({})  {error}\n", h.host, h.address));
            }
            body.push_str(&format!(
                "\nObserved:  {}\nAppliance: {id}\n",
                message::time(now)
            ));
            if mailed {
                operator_mail(alerting, &subject, &body, MailKey::Tag(TAG_SITE), plan);
            } else {
                plan.withheld += 1;
            }
            let state = SiteState {
                since: now,
                down: down.len(),
                total,
                mailed,
            };
            plan.kv.push((SITE_KEY, serde_json::to_string(&state).ok()));
            plan.logs.push(AlertLog::Site {
                line: subject.trim_start_matches("[edgemon] ").to_string(),
                mailed,
            });
            Site {
                firing: true,
                resolved_now: false,
            }
        }
        (Some(state), false) => {
            let subject = format!(
                "[edgemon] RESOLVED {SITE_RULE}: {} of {total} hosts reporting on {id}",
                total - down.len()
            );
            let body = format!(
                "The site of appliance {id} is reachable again: {} of {total} hosts reporting\n\
                 ({} were unreachable since {}). Hosts whose own alerts were mailed get their\n\
                 own RESOLVED; hosts still unreachable are alerted one by one.\n\nAppliance: {id}\n",
                total - down.len(),
                state.down,
                message::time(state.since)
            );
            if state.mailed {
                operator_mail(alerting, &subject, &body, MailKey::Tag(TAG_SITE), plan);
            }
            plan.kv.push((SITE_KEY, None));
            plan.logs.push(AlertLog::Site {
                line: subject.trim_start_matches("[edgemon] ").to_string(),
                mailed: state.mailed,
            });
            Site {
                firing: false,
                resolved_now: true,
            }
        }
        (site, _) => Site {
            firing: site.is_some(),
            resolved_now: false,
        },
    }
}

/// The bastion a failed host's error blames (`unreachable-via: via bastion NAME: ...`).
fn blamed_bastion(h: &HostInput) -> Option<&str> {
    let (class, message) = h.error.as_deref()?.split_once(": ")?;
    crate::collect::outcome::bastion_of(class, message)
}

/// The bastion alerts this round: which fire, the hosts behind them, whether one resolved now.
#[derive(Debug, Default)]
struct BastionAlerts {
    firing: BTreeSet<String>,
    hosts: BTreeSet<String>,
    resolved_now: bool,
}

/// Whether the host's attempt was still running at the round's close: no news about it.
fn in_flight(h: &HostInput) -> bool {
    matches!(h.observation, Observation::InFlight)
        || h.error
            .as_deref()
            .is_some_and(|e| e.starts_with("in-flight:"))
}

/// One alert per bastion whose hosts are unreachable through it (each for at least its
/// `unreachable_after` rounds), to the operators, naming the bastion and the hosts behind it;
/// their own unreachable alerts wait while it fires. Resolved when no host blames it any more.
fn plan_bastions(alerting: &Alerting, snap: &Snapshot, now: i64, plan: &mut Plan) -> BastionAlerts {
    let mut blamed: BTreeMap<&str, Vec<&HostInput>> = BTreeMap::new();
    for h in &snap.hosts {
        let Some(bastion) = blamed_bastion(h) else {
            continue;
        };
        let after = alerting
            .hosts
            .get(&h.host)
            .and_then(|r| r.limits.unreachable_after)
            .unwrap_or(1)
            .max(1);
        if matches!(h.observation, Observation::Failed { consecutive_failures } if consecutive_failures >= after)
        {
            blamed.entry(bastion).or_default().push(h);
        }
    }
    let id = &alerting.appliance_id;
    let mut out = BastionAlerts::default();
    let mut states = snap.bastions.clone();
    let names: BTreeSet<String> = states
        .keys()
        .cloned()
        .chain(blamed.keys().map(|k| k.to_string()))
        .collect();
    for (index, name) in names.iter().enumerate() {
        let tag = TAG_BASTION_BASE - index as i64;
        let down = blamed.get(name.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        match (states.get(name), down.is_empty()) {
            (None, false) => {
                let mailed = !snap.silenced(None, BASTION_RULE, now);
                let subject = format!(
                    "[edgemon] FIRING {BASTION_RULE}: bastion {name}, {} hosts behind it unreachable on {id}",
                    down.len()
                );
                let mut body = format!(
                    "The bastion (jump host) {name} of appliance {id} is down, refuses edgemon or\n\
                     dropped its connection: the {} hosts reached through it cannot be collected.\n\
                     One alert for the bastion instead of one per host; their own unreachable\n\
                     alerts wait while it fires. Check the bastion, its sshd and the network to it.\n\n\
                     Hosts behind it:\n",
                    down.len()
                );
                for h in down {
                    let error = h.error.as_deref().unwrap_or("-");
                    body.push_str(&format!("  {}  ({})  {error}\n", h.host, h.address));
                }
                body.push_str(&format!(
                    "\nObserved:  {}\nAppliance: {id}\n",
                    message::time(now)
                ));
                if mailed {
                    operator_mail(alerting, &subject, &body, MailKey::Tag(tag), plan);
                } else {
                    plan.withheld += 1;
                }
                states.insert(
                    name.clone(),
                    BastionState {
                        since: now,
                        hosts: down.iter().map(|h| h.host.clone()).collect(),
                        mailed,
                    },
                );
                plan.logs.push(AlertLog::Site {
                    line: subject.trim_start_matches("[edgemon] ").to_string(),
                    mailed,
                });
                out.firing.insert(name.clone());
            }
            (Some(state), true) => {
                // One host still blaming it, or one of its hosts still in flight (no news),
                // keeps the alert; hosts failing on their own errors do not.
                let still = snap.hosts.iter().any(|h| {
                    blamed_bastion(h) == Some(name.as_str())
                        || (in_flight(h) && state.hosts.contains(&h.host))
                });
                if still {
                    out.firing.insert(name.clone());
                    continue;
                }
                let subject = format!("[edgemon] RESOLVED {BASTION_RULE}: bastion {name} on {id}");
                let body = format!(
                    "The bastion {name} of appliance {id} carries its hosts again ({} were\n\
                     unreachable through it since {}).\n\nAppliance: {id}\n",
                    state.hosts.len(),
                    message::time(state.since)
                );
                if state.mailed {
                    operator_mail(alerting, &subject, &body, MailKey::Tag(tag), plan);
                }
                plan.logs.push(AlertLog::Site {
                    line: subject.trim_start_matches("[edgemon] ").to_string(),
                    mailed: state.mailed,
                });
                states.remove(name);
                out.resolved_now = true;
            }
            (Some(_), false) => {
                if let Some(state) = states.get_mut(name) {
                    for h in down {
                        if !state.hosts.contains(&h.host) {
                            state.hosts.push(h.host.clone());
                        }
                    }
                }
                out.firing.insert(name.clone());
            }
            (None, true) => {}
        }
    }
    for name in &out.firing {
        if let Some(state) = states.get(name) {
            out.hosts.extend(state.hosts.iter().cloned());
        }
    }
    if states != snap.bastions {
        let value = (!states.is_empty())
            .then(|| serde_json::to_string(&states).ok())
            .flatten();
        plan.kv.push((BASTIONS_KEY, value));
    }
    out
}

fn operator_mail(alerting: &Alerting, subject: &str, body: &str, key: MailKey, plan: &mut Plan) {
    for recipient in &alerting.recipients {
        plan.mails.push(PlannedMail {
            recipient: recipient.clone(),
            subject: subject.to_string(),
            body: body.to_string(),
            key,
        });
    }
}

/// Records one host's transitions and decides which of them are mailed.
fn plan_host(
    snap: &Snapshot,
    h: &HostInput,
    ev: &Evaluated,
    site: &Site,
    recent: &HashMap<i64, Vec<SampleBrief>>,
    now: i64,
    plan: &mut Plan,
) -> Vec<(AlertItem, EventRef)> {
    let mut unmailed = h.unmailed.clone();
    let mut transitions = ev.transitions.clone();
    // A host still unreachable when the site alert resolves is announced on its own now.
    if site.resolved_now
        && unmailed.contains(&Rule::Unreachable)
        && !transitions.iter().any(|t| t.rule == Rule::Unreachable)
        && matches!(h.observation, Observation::Failed { .. })
        && let Some(s) = ev.next.get(&Rule::Unreachable)
        && s.phase == Phase::Firing
    {
        transitions.push(Transition {
            rule: Rule::Unreachable,
            kind: EventKind::Firing,
            value: s.last_value,
            limit: None,
            clear: None,
            previous: None,
            since: s.since.unwrap_or(now),
            level: None,
        });
    }
    let mut items = Vec::new();
    for mut t in transitions {
        let name = t.rule.as_str();
        let silenced = snap.silenced(Some(&h.host), &name, now);
        let acked = snap.acks.contains(&(h.host_id, name.to_string()));
        let site_hold = t.rule == Rule::Unreachable && site.firing;
        let (mail, why) = match t.kind {
            EventKind::Firing | EventKind::Flapping => {
                let mail = !silenced && !site_hold;
                if mail {
                    unmailed.remove(&t.rule);
                } else {
                    unmailed.insert(t.rule.clone());
                }
                (
                    mail,
                    if silenced {
                        "silenced"
                    } else {
                        "site alert firing"
                    },
                )
            }
            EventKind::Reminder => {
                let mail = !silenced && !acked && !site_hold;
                // Nobody heard of this alert yet (its FIRING was withheld): announce it as such.
                if mail && unmailed.remove(&t.rule) {
                    t.kind = EventKind::Firing;
                }
                let why = if silenced {
                    "silenced"
                } else if acked {
                    "acknowledged"
                } else {
                    "site alert firing"
                };
                (mail, why)
            }
            // A step up to critical is news even while acknowledged; a silence holds it.
            EventKind::Escalated => {
                let mail = !silenced;
                if mail && unmailed.remove(&t.rule) {
                    t.kind = EventKind::Firing;
                }
                (mail, "silenced")
            }
            EventKind::Resolved => (!unmailed.remove(&t.rule), "its FIRING was not mailed"),
            EventKind::Stale | EventKind::Deescalated => (false, ""),
        };
        let line = message::headline(&h.host, &t);
        let event = EventRef::Planned(plan.events.len());
        plan.events.push(PlannedEvent {
            host_id: h.host_id,
            rule: t.rule.clone(),
            kind: t.kind,
            value: t.value,
            threshold: t.limit,
            message: line.clone(),
        });
        plan.logs.push(AlertLog::Transition {
            host: h.host.clone(),
            rule: t.rule.as_str().into_owned(),
            kind: t.kind.as_str(),
            line,
        });
        if !t.notifies() {
            continue;
        }
        if !mail {
            plan.withheld += 1;
            plan.logs.push(AlertLog::Withheld {
                host: h.host.clone(),
                rule: t.rule.as_str().into_owned(),
                kind: t.kind.as_str(),
                why,
            });
            continue;
        }
        let item = AlertItem {
            host: h.host.clone(),
            address: h.address.clone(),
            transition: t,
            event_id: 0,
            at: now,
            recent: recent.get(&h.host_id).cloned().unwrap_or_default(),
        };
        items.push((item, event));
    }
    let keys: BTreeSet<&Rule> = h.state.keys().chain(ev.next.keys()).collect();
    for rule in keys {
        let default = rules::RuleState::default();
        let old = h.state.get(rule).unwrap_or(&default);
        let new = ev.next.get(rule).unwrap_or(&default);
        // An episode that ended forgets whether it was mailed.
        let active = matches!(new.phase, Phase::Firing | Phase::Flapping | Phase::Stale);
        let was = h.unmailed.contains(rule);
        let is = active && unmailed.contains(rule);
        if old != new || was != is {
            plan.states.push(PlannedState {
                host_id: h.host_id,
                rule: rule.clone(),
                state: new.clone(),
                unmailed: is,
            });
        }
        let key = (h.host_id, rule.as_str().into_owned());
        if !active && snap.acks.contains(&key) {
            plan.clear_acks.push(key);
        }
    }
    items
}

/// One mail per recipient, or nothing while the recipient is over its rate limit.
fn plan_mail(
    alerting: &Alerting,
    snap: &Snapshot,
    mut by_recipient: BTreeMap<String, Vec<(AlertItem, EventRef)>>,
    now: i64,
    plan: &mut Plan,
) {
    let mut held: BTreeMap<String, Vec<EventRef>> = snap
        .held
        .iter()
        .map(|(r, ids)| {
            (
                r.clone(),
                ids.iter().map(|&id| EventRef::Stored(id)).collect(),
            )
        })
        .collect();
    let held_before = held.clone();
    for recipient in held.keys() {
        by_recipient.entry(recipient.clone()).or_default();
    }
    for (recipient, items) in by_recipient {
        let recent = snap.sent_in_window.get(&recipient).copied().unwrap_or(0);
        if alerting.rate_limit > 0 && recent >= i64::from(alerting.rate_limit) {
            plan.held_count += items.len();
            let refs = held.entry(recipient.clone()).or_default();
            refs.extend(items.iter().map(|(_, e)| *e));
            if !items.is_empty() {
                plan.logs.push(AlertLog::Held {
                    recipient: recipient.clone(),
                    held: refs.len(),
                });
            }
            continue;
        }
        let held_refs = held.remove(&recipient).unwrap_or_default();
        let held_lines: Vec<(i64, String)> = held_refs
            .iter()
            .filter_map(|e| match e {
                EventRef::Stored(id) => snap.held_lines.get(id).cloned(),
                EventRef::Planned(n) => plan.events.get(*n).map(|ev| (now, ev.message.clone())),
            })
            .collect();
        let alert_items: Vec<AlertItem> = items.iter().map(|(i, _)| i.clone()).collect();
        let composed = if alert_items.len() > message::DETAILED_MAX || !held_lines.is_empty() {
            message::summary(&alerting.appliance_id, &alert_items, &held_lines)
        } else {
            message::detailed(&alerting.appliance_id, &alert_items)
        };
        let Some(first) = items
            .first()
            .map(|(_, e)| *e)
            .or(held_refs.first().copied())
        else {
            continue;
        };
        plan.mails.push(PlannedMail {
            recipient,
            subject: composed.subject,
            body: composed.body,
            key: MailKey::Event(first),
        });
    }
    if held != held_before {
        plan.held = Some(held);
    }
}

/// Mails the global recipients once when retention raises its operator warning (a buffer
/// bound at 80%, before any unsynced sample must be shed), and re-arms when it clears.
fn plan_buffer_warning(alerting: &Alerting, snap: &Snapshot, _now: i64, plan: &mut Plan) {
    let warning = &snap.buffer_warning;
    if warning.is_empty() {
        if !snap.buffer_warning_mailed.is_empty() {
            plan.kv.push((BUFFER_WARNING_MAILED, None));
        }
        return;
    }
    if !snap.buffer_warning_mailed.is_empty() {
        return;
    }
    let id = &alerting.appliance_id;
    let subject = format!("[edgemon] WARNING buffer near its bound on {id}");
    let body = format!(
        "The local buffer of appliance {id} is close to a configured bound:\n\n  {warning}\n\n\
         Unsynced samples will be shed (and recorded as drops) if it is reached. Check the\n\
         sync to MySQL (`edgemon status`, last sync error) or raise the [buffer] bounds.\n"
    );
    operator_mail(
        alerting,
        &subject,
        &body,
        MailKey::Tag(TAG_BUFFER_WARNING),
        plan,
    );
    plan.logs.push(AlertLog::BufferWarning {
        warning: warning.clone(),
        recipients: alerting.recipients.len(),
    });
    plan.kv.push((BUFFER_WARNING_MAILED, Some(warning.clone())));
}
