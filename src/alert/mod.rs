//! Alerts: rule evaluation each round, the durable outbox, and the mailer.
//!
//! Invariant: a transition, its `alert_events` row and the mail it causes are
//! written in the same SQLite transaction as the samples of the round
//! ([`Alerting::record`] runs inside `Buffer::record_round`), so a restart
//! neither forgets a firing alert nor mails it twice. Mail leaves the outbox
//! only through [`Mailer`], which marks a row sent after the server accepted it.
//!
//! - `rules`: the pure lifecycle (`evaluate`), no IO;
//! - `families`: the rules of the metric families (filesystems, interfaces, units,
//!   watched processes, system limits) on the same lifecycle, no IO;
//! - `message`: mail text and Message-IDs, no IO;
//! - `mail`: the only module that knows SMTP (lettre).
//!
//! Grouping and the storm guard live here: every alert of one round for one
//! recipient goes in one mail (a summary beyond a few alerts), and a
//! recipient who already had `rate_limit` mails within `rate_window` gets
//! nothing until the window allows, then one summary of what was held back.

pub mod families;
pub mod mail;
pub mod message;
pub mod operator;
pub mod plan;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

pub use mail::{Mailer, SendReport};
use plan::{EventRef, HostInput, MailKey, Plan, Snapshot};
use rules::{HostState, Measures, Observation, Phase, Rule, RuleState};

use crate::buffer::{self, AlertRow, NewAlertEvent, NewMail, Recorded, RoundTx};
use crate::collect::outcome::{ErrorClass, HostOutcome};
use crate::config::{AlertLimits, AlertPolicy, Config, HostConfig};

/// Samples listed in a detailed mail.
const RECENT_SAMPLES: usize = 5;
/// kv key of the alerts held back by the rate limit: JSON `{recipient: [event ids]}`.
const HELD_KEY: &str = buffer::kv_key::ALERT_HELD;

/// What [`Alerting::record`] did in one round. Its log lines are written by
/// [`RoundAlerts::log`] once the round's transaction committed: a round that fails
/// to commit announces nothing it did not store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoundAlerts {
    /// Transitions recorded as alert events.
    pub transitions: usize,
    /// Mails queued in the outbox.
    pub mails: usize,
    /// Alerts held back by the rate limit this round.
    pub held: usize,
    /// Mailable transitions withheld by a silence, an acknowledgement or a site alert.
    pub withheld: usize,
    /// What to log once the round committed, in order.
    pub logs: Vec<AlertLog>,
}

/// One line the alert step logs after its round committed.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertLog {
    /// A transition (FIRING, RESOLVED, ...).
    Transition {
        /// Host name.
        host: String,
        /// Rule name.
        rule: String,
        /// Event kind.
        kind: &'static str,
        /// The headline.
        line: String,
    },
    /// A recipient is over the mail rate limit; alerts are held for a summary.
    Held {
        /// The recipient.
        recipient: String,
        /// Alerts held for them so far.
        held: usize,
    },
    /// A transition that would be mailed was not (silence, acknowledgement, site alert).
    Withheld {
        /// Host name.
        host: String,
        /// Rule name.
        rule: String,
        /// Event kind.
        kind: &'static str,
        /// Why.
        why: &'static str,
    },
    /// The site alert fired or resolved.
    Site {
        /// The headline.
        line: String,
        /// Whether it was mailed.
        mailed: bool,
    },
    /// The buffer warning was queued for the operators.
    BufferWarning {
        /// The warning.
        warning: String,
        /// Recipients mailed.
        recipients: usize,
    },
}

impl RoundAlerts {
    /// Writes the round's alert lines; call it only after the round committed.
    pub fn log(&self) {
        for entry in &self.logs {
            match entry {
                AlertLog::Transition {
                    host,
                    rule,
                    kind,
                    line,
                } => tracing::info!(host = %host, rule = %rule, kind = %kind, "{line}"),
                AlertLog::Held { recipient, held } => tracing::warn!(
                    %recipient,
                    held,
                    "mail rate limit reached; alerts held for a summary"
                ),
                AlertLog::Withheld {
                    host,
                    rule,
                    kind,
                    why,
                } => tracing::info!(host = %host, rule = %rule, kind = %kind, "not mailed: {why}"),
                AlertLog::Site { line, mailed } => tracing::warn!(mailed, "{line}"),
                AlertLog::BufferWarning {
                    warning,
                    recipients,
                } => {
                    tracing::warn!(%warning, recipients, "buffer warning queued for the operators")
                }
            }
        }
    }
}

/// The alert rules of one host.
#[derive(Debug, Clone)]
pub struct HostRules {
    /// Its limits.
    pub limits: AlertLimits,
    /// Its own recipient, if any.
    pub mail: Option<String>,
}

/// The alert step of a round: the hosts' rules, the policy and who gets mail.
#[derive(Debug, Clone)]
pub struct Alerting {
    appliance_id: String,
    policy: AlertPolicy,
    recipients: Vec<String>,
    rate_limit: u32,
    rate_window: Duration,
    hosts: HashMap<String, HostRules>,
    /// The buffer's bounds and the collection interval, for time-to-first-loss.
    horizon: Option<(crate::config::BufferConfig, Duration)>,
    /// Recurring silences of the configuration (`[[silence]]`).
    weekly: Vec<crate::config::WeeklySilence>,
}

impl Alerting {
    /// The alert step for `config`'s hosts, policy and mail settings.
    pub fn new(config: &Config) -> Alerting {
        // Only mail text and Message-IDs carry it here, never a central row.
        let appliance = crate::identity::appliance_id(&config.appliance).unwrap_or_else(|error| {
            tracing::warn!(error = %format!("{error:#}"), "no appliance id for alert mail");
            "unnamed-appliance".to_string()
        });
        Alerting::from_parts(&appliance, &config.alert, &config.mail, &config.hosts)
            .with_loss_horizon(&config.buffer, config.collect.interval)
            .with_weekly_silences(&config.silences)
    }

    /// Also honours these recurring silences.
    pub fn with_weekly_silences(mut self, silences: &[crate::config::WeeklySilence]) -> Alerting {
        self.weekly = silences.to_vec();
        self
    }

    /// Also computes time-to-first-loss each round (from `buffer`'s bounds and samples
    /// arriving every `interval`), and alerts the operators on it.
    pub fn with_loss_horizon(
        mut self,
        buffer: &crate::config::BufferConfig,
        interval: Duration,
    ) -> Alerting {
        self.horizon = Some((buffer.clone(), interval));
        self
    }

    /// The alert step from its parts (tests, or a daemon that reloads a section).
    pub fn from_parts(
        appliance_id: &str,
        policy: &AlertPolicy,
        mail: &crate::config::MailConfig,
        hosts: &[HostConfig],
    ) -> Alerting {
        Alerting {
            appliance_id: appliance_id.to_string(),
            policy: policy.clone(),
            recipients: mail.recipients.clone(),
            rate_limit: mail.rate_limit,
            rate_window: mail.rate_window,
            hosts: hosts
                .iter()
                .map(|h| {
                    let rules = HostRules {
                        limits: h.alerts.clone(),
                        mail: h.mail.clone(),
                    };
                    (h.name.clone(), rules)
                })
                .collect(),
            horizon: None,
            weekly: Vec::new(),
        }
    }

    /// Records a round and its alerts in one explicit transaction: begin, record the
    /// samples, read the alert snapshot, plan (pure), apply the plan, commit. Log the
    /// returned [`RoundAlerts`] only after this returns `Ok`.
    pub fn record_round(
        &self,
        buffer: &mut buffer::Buffer,
        outcomes: &[HostOutcome],
        max_clock_skew: Duration,
        now: i64,
    ) -> buffer::Result<(buffer::RoundTotals, RoundAlerts)> {
        let mut round = buffer.begin_round()?;
        let recorded = round.record(outcomes, max_clock_skew)?.to_vec();
        let loss_horizon_s = match &self.horizon {
            Some((config, interval)) => {
                let stored = recorded.iter().filter(|r| r.seq.is_some()).count();
                let per_s = stored as f64 / interval.as_secs_f64().max(1.0);
                Some(round.store_loss_horizon(config, per_s, now)?)
            }
            None => None,
        };
        let alerts = self.record_with(round.tx_mut(), outcomes, &recorded, loss_horizon_s, now)?;
        let totals = round.commit()?;
        Ok((totals, alerts))
    }

    /// The alert step inside an open round (`recorded` is what the round stored for
    /// `outcomes`, in the same order): snapshot, [`plan::evaluate`], the recent samples
    /// of hosts that may be mailed, [`plan::plan`], then the plan's writes through `tx`.
    pub fn record(
        &self,
        tx: &mut RoundTx<'_>,
        outcomes: &[HostOutcome],
        recorded: &[Recorded],
        now: i64,
    ) -> buffer::Result<RoundAlerts> {
        self.record_with(tx, outcomes, recorded, None, now)
    }

    fn record_with(
        &self,
        tx: &mut RoundTx<'_>,
        outcomes: &[HostOutcome],
        recorded: &[Recorded],
        loss_horizon_s: Option<i64>,
        now: i64,
    ) -> buffer::Result<RoundAlerts> {
        let mut snap = self.snapshot(tx, outcomes, recorded, now)?;
        snap.loss_horizon_s = loss_horizon_s;
        let evaluated = plan::evaluate(self, &snap, now);
        let mut recent = HashMap::new();
        for host_id in plan::needs_samples(&snap, &evaluated) {
            recent.insert(host_id, tx.recent_samples(host_id, RECENT_SAMPLES)?);
        }
        let plan = plan::plan(self, &snap, &evaluated, &recent, now);
        self.apply(tx, plan, now)
    }

    /// Reads what [`plan::plan`] needs, inside the round's transaction.
    fn snapshot(
        &self,
        tx: &RoundTx<'_>,
        outcomes: &[HostOutcome],
        recorded: &[Recorded],
        now: i64,
    ) -> buffer::Result<Snapshot> {
        let mut snap = Snapshot::default();
        for (outcome, rec) in outcomes.iter().zip(recorded) {
            if !self.hosts.contains_key(&rec.host) {
                continue;
            }
            let rows = tx.alert_states(rec.host_id)?;
            let state: HostState = rows.iter().filter_map(from_row).collect();
            let unmailed = rows
                .iter()
                .filter(|r| r.unmailed)
                .filter_map(|r| Rule::parse(&r.rule))
                .collect();
            let (families, memory) = match &outcome.result {
                Ok(report) => {
                    let received_at = outcome.started_at_ms + outcome.duration.as_millis() as i64;
                    let obs = families::FamilyObservation::from_report(report, received_at);
                    (Some(obs), family_memory(tx, rec.host_id, report)?)
                }
                Err(_) => (None, families::Memory::default()),
            };
            let (observation, error) = match &outcome.result {
                Ok(report) => (
                    Observation::Sample(Measures {
                        cpu: report.cpu_percent,
                        memory: percent(report.mem_used, report.mem_total),
                        swap: percent(report.swap_used, report.swap_total),
                        uptime_s: report.uptime_s,
                    }),
                    None,
                ),
                Err(e) if e.class == ErrorClass::InFlight => (
                    Observation::InFlight,
                    Some(format!("{}: {}", e.class.as_str(), e.message)),
                ),
                Err(e) => (
                    Observation::Failed {
                        consecutive_failures: u32::try_from(rec.consecutive_failures)
                            .unwrap_or(u32::MAX),
                    },
                    Some(format!("{}: {}", e.class.as_str(), e.message)),
                ),
            };
            snap.hosts.push(HostInput {
                host_id: rec.host_id,
                host: rec.host.clone(),
                address: outcome.address.clone(),
                observation,
                error,
                state,
                unmailed,
                families,
                memory,
            });
        }
        snap.silences = tx.silences(now)?;
        snap.silences.extend(weekly_in_force(&self.weekly, now));
        snap.acks = tx
            .acks()?
            .into_iter()
            .map(|a| (a.host_id, a.rule))
            .collect();
        snap.held = tx
            .kv_get(HELD_KEY)?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        let held_ids: Vec<i64> = snap.held.values().flatten().copied().collect();
        snap.held_lines = tx
            .alert_event_lines(&held_ids)?
            .into_iter()
            .map(|(id, at, line)| (id, (at, line)))
            .collect();
        let window_start = now - self.rate_window.as_millis() as i64;
        let mut recipients: BTreeSet<String> = self.recipients.iter().cloned().collect();
        recipients.extend(self.hosts.values().filter_map(|h| h.mail.clone()));
        recipients.extend(snap.held.keys().cloned());
        for recipient in recipients {
            let n = tx.outbox_count_since(&recipient, window_start)?;
            snap.sent_in_window.insert(recipient, n);
        }
        snap.buffer_warning = tx.kv_get(buffer::WARNING_KEY)?.unwrap_or_default();
        snap.buffer_warning_mailed = tx.kv_get(plan::BUFFER_WARNING_MAILED)?.unwrap_or_default();
        snap.site = tx
            .kv_get(plan::SITE_KEY)?
            .and_then(|v| serde_json::from_str(&v).ok());
        snap.bastions = tx
            .kv_get(plan::BASTIONS_KEY)?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        snap.loss_alert = tx.kv_get(plan::LOSS_KEY)?.map(|v| v == "mailed");
        Ok(snap)
    }

    /// Writes a plan through the round's transaction.
    fn apply(&self, tx: &RoundTx<'_>, plan: Plan, now: i64) -> buffer::Result<RoundAlerts> {
        for s in &plan.states {
            // A family alert back to nothing (its member gone, or ended) leaves no row.
            if matches!(s.rule, Rule::Family(..)) && s.state == RuleState::default() && !s.unmailed
            {
                tx.delete_alert_state(s.host_id, &s.rule.as_str())?;
                continue;
            }
            let mut row = to_row(&s.rule, &s.state);
            row.unmailed = s.unmailed;
            tx.save_alert_state(s.host_id, &row)?;
        }
        for (host_id, w) in &plan.family_writes {
            apply_family_writes(tx, *host_id, w)?;
        }
        let mut ids = Vec::with_capacity(plan.events.len());
        for e in &plan.events {
            ids.push(tx.insert_alert_event(&NewAlertEvent {
                host_id: e.host_id,
                rule: &e.rule.as_str(),
                kind: e.kind.as_str(),
                value: e.value,
                threshold: e.threshold,
                at: now,
                message: &e.message,
            })?);
        }
        let resolve = |e: &EventRef| match e {
            EventRef::Planned(n) => ids.get(*n).copied().unwrap_or_default(),
            EventRef::Stored(id) => *id,
        };
        let mut mails = 0;
        for m in &plan.mails {
            let tag = match &m.key {
                MailKey::Event(e) => resolve(e),
                MailKey::Tag(t) => *t,
            };
            let message_id = message::message_id(&self.appliance_id, now, tag, &m.recipient);
            mails += usize::from(tx.insert_outbox(&NewMail {
                message_id: &message_id,
                recipient: &m.recipient,
                subject: &m.subject,
                body: &m.body,
                created_at: now,
            })?);
        }
        if let Some(held) = &plan.held {
            let held: BTreeMap<&String, Vec<i64>> = held
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k, v.iter().map(resolve).collect()))
                .collect();
            let value = serde_json::to_string(&held).unwrap_or_default();
            tx.kv_set(HELD_KEY, (!held.is_empty()).then_some(value.as_str()))?;
        }
        for (key, value) in &plan.kv {
            tx.kv_set(key, value.as_deref())?;
        }
        for (host_id, rule) in &plan.clear_acks {
            tx.delete_ack(*host_id, rule)?;
        }
        Ok(RoundAlerts {
            transitions: plan.events.len(),
            mails,
            held: plan.held_count,
            withheld: plan.withheld,
            logs: plan.logs,
        })
    }

    fn recipients_of(&self, rules: &HostRules) -> Vec<String> {
        let mut all: Vec<String> = rules.mail.iter().cloned().collect();
        for r in &self.recipients {
            if !all.contains(r) {
                all.push(r.clone());
            }
        }
        all
    }
}

/// The recurring silences in force at `now`, as silence rows (negative ids, by `config`).
pub fn weekly_in_force(
    weekly: &[crate::config::WeeklySilence],
    now: i64,
) -> Vec<buffer::SilenceRow> {
    let mut out = Vec::new();
    for (n, w) in weekly.iter().enumerate() {
        let Some((starts_at, ends_at)) = w.window_at(now) else {
            continue;
        };
        let hosts: Vec<Option<String>> = if w.hosts.is_empty() {
            vec![None]
        } else {
            w.hosts.iter().cloned().map(Some).collect()
        };
        for host in hosts {
            out.push(buffer::SilenceRow {
                id: -(n as i64 + 1),
                host,
                rules: w.rules.clone(),
                starts_at,
                ends_at,
                comment: format!("weekly {}: {}", w.weekly, w.comment),
                created_by: "config".into(),
                created_at: starts_at,
            });
        }
    }
    out
}

fn percent(used: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        used as f64 * 100.0 / total as f64
    }
}

/// What the family rules kept for a host, read only for the sections its report carries.
fn family_memory(
    tx: &RoundTx<'_>,
    host_id: i64,
    report: &crate::report::Report,
) -> buffer::Result<families::Memory> {
    use crate::report::family;
    let mut memory = families::Memory::default();
    if report.section(&family::filesystems::SPEC).is_some() {
        for b in tx.fill_buckets(host_id)? {
            memory
                .buckets
                .entry(b.mount)
                .or_default()
                .push(families::Bucket {
                    start: b.start,
                    n: b.n,
                    su: b.su,
                    sy: b.sy,
                    suu: b.suu,
                    suy: b.suy,
                });
        }
    }
    if report.section(&family::system::SPEC).is_some()
        || report.section(&family::interfaces::SPEC).is_some()
    {
        memory.counters = tx.alert_counters(host_id)?.into_iter().collect();
    }
    Ok(memory)
}

fn apply_family_writes(tx: &RoundTx<'_>, host_id: i64, w: &families::Writes) -> buffer::Result<()> {
    if let Some(before) = w.prune_before {
        tx.prune_fill_buckets(host_id, before)?;
    }
    for (mount, b) in &w.buckets {
        tx.save_fill_bucket(
            host_id,
            &buffer::FillBucketRow {
                mount: mount.clone(),
                start: b.start,
                n: b.n,
                su: b.su,
                sy: b.sy,
                suu: b.suu,
                suy: b.suy,
            },
        )?;
    }
    for (series, value) in &w.counters {
        tx.save_alert_counter(host_id, series, *value)?;
    }
    for series in &w.drop_counters {
        tx.delete_alert_counter(host_id, series)?;
    }
    Ok(())
}

fn from_row(row: &AlertRow) -> Option<(Rule, RuleState)> {
    let rule = Rule::parse(&row.rule)?;
    let state = RuleState {
        phase: Phase::parse(&row.state),
        breaches: u32::try_from(row.breaches).unwrap_or(0),
        since: row.since,
        last_value: row.last_value,
        last_notified_at: row.last_notified_at,
        flips: row
            .flips
            .split(',')
            .filter_map(|t| t.trim().parse().ok())
            .collect(),
        level: rules::Level::from_code(row.level),
    };
    Some((rule, state))
}

fn to_row(rule: &Rule, s: &RuleState) -> AlertRow {
    AlertRow {
        rule: rule.as_str().into_owned(),
        state: s.phase.as_str().to_string(),
        breaches: i64::from(s.breaches),
        since: s.since,
        last_value: s.last_value,
        last_notified_at: s.last_notified_at,
        flips: s
            .flips
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(","),
        unmailed: false,
        level: rules::Level::code(s.level),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod plan_tests;
