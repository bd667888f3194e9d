//! Alerts: rule evaluation each round, the durable outbox, and the mailer.
//!
//! Invariant: a transition, its `alert_events` row and the mail it causes are
//! written in the same SQLite transaction as the samples of the round
//! ([`Alerting::record`] runs inside `Buffer::record_round`), so a restart
//! neither forgets a firing alert nor mails it twice. Mail leaves the outbox
//! only through [`Mailer`], which marks a row sent after the server accepted it.
//!
//! - `rules`: the pure lifecycle (`evaluate`), no IO;
//! - `message`: mail text and Message-IDs, no IO;
//! - `mail`: the only module that knows SMTP (lettre).
//!
//! Grouping and the storm guard live here: every alert of one round for one
//! recipient goes in one mail (a summary beyond a few alerts), and a
//! recipient who already had `rate_limit` mails within `rate_window` gets
//! nothing until the window allows, then one summary of what was held back.

pub mod mail;
pub mod message;
pub mod rules;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub use mail::{Mailer, SendReport};
use message::AlertItem;
use rules::{HostState, Measures, Observation, Phase, Rule, RuleState};

use crate::buffer::{self, AlertRow, NewAlertEvent, NewMail, Recorded, RoundTx};
use crate::collect::outcome::HostOutcome;
use crate::config::{AlertLimits, AlertPolicy, Config, HostConfig};

/// Samples listed in a detailed mail.
const RECENT_SAMPLES: usize = 5;
/// kv key of the alerts held back by the rate limit: JSON `{recipient: [event ids]}`.
const HELD_KEY: &str = "alert.held";

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
        rule: &'static str,
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
        }
    }

    /// Evaluates the round's outcomes (`recorded` is what `record_round` stored for
    /// them, in the same order) and writes alert state, events and mail through `tx`.
    /// Call it as the `also` step of [`buffer::Buffer::record_round`].
    pub fn record(
        &self,
        tx: &mut RoundTx<'_>,
        outcomes: &[HostOutcome],
        recorded: &[Recorded],
        now: i64,
    ) -> buffer::Result<RoundAlerts> {
        let mut totals = RoundAlerts::default();
        let mut by_recipient: BTreeMap<String, Vec<AlertItem>> = BTreeMap::new();
        for (outcome, rec) in outcomes.iter().zip(recorded) {
            let Some(rules) = self.hosts.get(&rec.host) else {
                continue;
            };
            let items = self.evaluate_host(tx, rules, outcome, rec, now, &mut totals)?;
            if items.is_empty() {
                continue;
            }
            for recipient in self.recipients_of(rules) {
                by_recipient
                    .entry(recipient)
                    .or_default()
                    .extend(items.iter().cloned());
            }
        }
        self.queue_mail(tx, by_recipient, now, &mut totals)?;
        self.queue_buffer_warning(tx, now, &mut totals)?;
        Ok(totals)
    }

    /// Mails the global recipients once when retention raises its operator warning (a buffer
    /// bound at 80%, before any unsynced sample must be shed), and re-arms when it clears.
    /// The figures in the warning change from pass to pass; one mail per episode.
    fn queue_buffer_warning(
        &self,
        tx: &mut RoundTx<'_>,
        now: i64,
        totals: &mut RoundAlerts,
    ) -> buffer::Result<()> {
        const MAILED: &str = "alert.buffer_warning_mailed";
        let warning = tx.kv_get(buffer::WARNING_KEY)?.unwrap_or_default();
        let mailed = tx.kv_get(MAILED)?.unwrap_or_default();
        if warning.is_empty() {
            if !mailed.is_empty() {
                tx.kv_set(MAILED, None)?;
            }
            return Ok(());
        }
        if !mailed.is_empty() {
            return Ok(());
        }
        let subject = format!(
            "[edgemon] WARNING buffer near its bound on {}",
            self.appliance_id
        );
        let body = format!(
            "The local buffer of appliance {} is close to a configured bound:\n\n  {warning}\n\n\
             Unsynced samples will be shed (and recorded as drops) if it is reached. Check the\n\
             sync to MySQL (`edgemon status`, last sync error) or raise the [buffer] bounds.\n",
            self.appliance_id
        );
        for recipient in &self.recipients {
            let message_id = message::message_id(&self.appliance_id, now, 0, recipient);
            tx.insert_outbox(&NewMail {
                message_id: &message_id,
                recipient,
                subject: &subject,
                body: &body,
                created_at: now,
            })?;
        }
        totals.logs.push(AlertLog::BufferWarning {
            warning: warning.clone(),
            recipients: self.recipients.len(),
        });
        tx.kv_set(MAILED, Some(&warning))
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

    /// Runs the rules of one host and records its transitions; returns the ones to mail.
    fn evaluate_host(
        &self,
        tx: &RoundTx<'_>,
        rules: &HostRules,
        outcome: &HostOutcome,
        rec: &Recorded,
        now: i64,
        totals: &mut RoundAlerts,
    ) -> buffer::Result<Vec<AlertItem>> {
        let rows = tx.alert_states(rec.host_id)?;
        let state: HostState = rows.iter().filter_map(from_row).collect();
        let observation = match &outcome.result {
            Ok(report) => Observation::Sample(Measures {
                cpu: report.cpu_percent,
                memory: percent(report.mem_used, report.mem_total),
                swap: percent(report.swap_used, report.swap_total),
                uptime_s: report.uptime_s,
            }),
            Err(_) => Observation::Failed {
                consecutive_failures: u32::try_from(rec.consecutive_failures).unwrap_or(u32::MAX),
            },
        };
        let (next, transitions) =
            rules::evaluate(&rules.limits, &self.policy, &state, &observation, now);
        for rule in Rule::ALL {
            let old = state.get(&rule);
            let new = next.get(&rule);
            if old != new {
                let default = RuleState::default();
                tx.save_alert_state(rec.host_id, &to_row(rule, new.unwrap_or(&default)))?;
            }
        }
        let mut items = Vec::new();
        let mut recent = None;
        for t in transitions {
            let line = message::headline(&rec.host, &t);
            let event_id = tx.insert_alert_event(&NewAlertEvent {
                host_id: rec.host_id,
                rule: t.rule.as_str(),
                kind: t.kind.as_str(),
                value: t.value,
                threshold: t.limit,
                at: now,
                message: &line,
            })?;
            totals.transitions += 1;
            totals.logs.push(AlertLog::Transition {
                host: rec.host.clone(),
                rule: t.rule.as_str(),
                kind: t.kind.as_str(),
                line: line.clone(),
            });
            if !t.notifies() {
                continue;
            }
            if recent.is_none() {
                recent = Some(tx.recent_samples(rec.host_id, RECENT_SAMPLES)?);
            }
            items.push(AlertItem {
                host: rec.host.clone(),
                address: outcome.address.clone(),
                transition: t,
                event_id,
                at: now,
                recent: recent.clone().unwrap_or_default(),
            });
        }
        Ok(items)
    }

    /// One mail per recipient, or nothing while the recipient is over its rate limit.
    fn queue_mail(
        &self,
        tx: &RoundTx<'_>,
        mut by_recipient: BTreeMap<String, Vec<AlertItem>>,
        now: i64,
        totals: &mut RoundAlerts,
    ) -> buffer::Result<()> {
        let mut held: BTreeMap<String, Vec<i64>> = tx
            .kv_get(HELD_KEY)?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        let held_before = held.clone();
        for recipient in held.keys() {
            by_recipient.entry(recipient.clone()).or_default();
        }
        let window_start = now - self.rate_window.as_millis() as i64;
        for (recipient, items) in by_recipient {
            let recent = tx.outbox_count_since(&recipient, window_start)?;
            if self.rate_limit > 0 && recent >= i64::from(self.rate_limit) {
                totals.held += items.len();
                let ids = held.entry(recipient.clone()).or_default();
                ids.extend(items.iter().map(|i| i.event_id));
                if !items.is_empty() {
                    totals.logs.push(AlertLog::Held {
                        recipient: recipient.clone(),
                        held: ids.len(),
                    });
                }
                continue;
            }
            let held_ids = held.remove(&recipient).unwrap_or_default();
            let held_lines = tx.alert_event_lines(&held_ids)?;
            let composed = if items.len() > message::DETAILED_MAX || !held_lines.is_empty() {
                message::summary(&self.appliance_id, &items, &held_lines)
            } else {
                message::detailed(&self.appliance_id, &items)
            };
            let Some(first_event) = items
                .first()
                .map(|i| i.event_id)
                .or(held_ids.first().copied())
            else {
                continue;
            };
            let message_id = message::message_id(&self.appliance_id, now, first_event, &recipient);
            let queued = tx.insert_outbox(&NewMail {
                message_id: &message_id,
                recipient: &recipient,
                subject: &composed.subject,
                body: &composed.body,
                created_at: now,
            })?;
            totals.mails += usize::from(queued);
        }
        if held != held_before {
            let value = serde_json::to_string(&held).unwrap_or_default();
            tx.kv_set(HELD_KEY, (!held.is_empty()).then_some(value.as_str()))?;
        }
        Ok(())
    }
}

fn percent(used: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        used as f64 * 100.0 / total as f64
    }
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
    };
    Some((rule, state))
}

fn to_row(rule: Rule, s: &RuleState) -> AlertRow {
    AlertRow {
        rule: rule.as_str().to_string(),
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
    }
}

#[cfg(test)]
mod tests;
