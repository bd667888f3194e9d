//! Rules with a warning and a critical level (filesystem used, inodes, filling up).
//!
//! The episode is one alert: it fires when the warning level is breached (for-N, as
//! every rule), and resolves only when the value clears the warning level (with
//! hysteresis). The level rides on top: a firing alert whose value breaches the
//! critical level **escalates** (one `escalated` event, mailed: "ESCALATED ... critical"),
//! never a RESOLVED plus a new FIRING; one that clears the critical level (with
//! hysteresis) steps back to warning (a `deescalated` event, recorded and not mailed; the
//! next reminder says warning). An alert that fires straight past the critical level
//! fires as critical. With the warning level off, the critical level alone is the
//! episode's limit.

use super::super::rules::{self, EventKind, Level, Reading, Rule, RuleState, Transition};
use crate::config::AlertPolicy;

/// One level's limit and what the value is against it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Threshold {
    /// The limit shown.
    pub(crate) limit: f64,
    /// The clear threshold shown.
    pub(crate) clear_at: f64,
    /// Whether the value breaches it.
    pub(crate) breach: bool,
    /// Whether the value is clear of it (with hysteresis).
    pub(crate) clear: bool,
}

impl Threshold {
    /// A limit the value must stay below (used %): breach above `limit`, clear below
    /// `limit - margin`.
    pub(crate) fn above(value: f64, limit: f64, margin: f64) -> Threshold {
        let clear_at = (limit - margin.max(0.0)).max(0.0);
        Threshold {
            limit,
            clear_at,
            breach: value > limit || limit <= 0.0,
            clear: value < clear_at,
        }
    }
}

/// What a two-level rule reads from a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Leveled {
    /// The observed value.
    pub(crate) value: f64,
    /// The warning level, if on.
    pub(crate) warning: Option<Threshold>,
    /// The critical level, if on.
    pub(crate) critical: Option<Threshold>,
}

impl Leveled {
    fn level_now(&self) -> Level {
        match (self.warning, self.critical) {
            (_, Some(c)) if c.breach => Level::Critical,
            (None, Some(_)) => Level::Critical,
            _ => Level::Warning,
        }
    }

    fn threshold(&self, level: Level) -> Option<Threshold> {
        match level {
            Level::Critical => self.critical.or(self.warning),
            Level::Warning => self.warning.or(self.critical),
        }
    }
}

/// Steps a two-level rule: the lifecycle of [`rules::step`] on the lower level, then
/// the level changes of a firing alert.
pub(crate) fn step(
    rule: &Rule,
    old: &RuleState,
    r: Leveled,
    fire_after: u32,
    policy: &AlertPolicy,
    now: i64,
) -> (RuleState, Vec<Transition>) {
    let Some(base) = r.warning.or(r.critical) else {
        return (RuleState::default(), Vec::new());
    };
    let reading = Reading {
        value: r.value,
        breach: r.warning.is_some_and(|w| w.breach) || r.critical.is_some_and(|c| c.breach),
        clear: base.clear,
        limit: base.limit,
        clear_at: Some(base.clear_at),
    };
    let (mut s, t) = rules::step(rule, old, Some(reading), fire_after, policy, now);
    let mut out = Vec::new();
    let shown = |t: &mut Transition, level: Option<Level>| {
        if let Some(th) = level.and_then(|l| r.threshold(l)) {
            t.limit = Some(th.limit);
            t.clear = Some(th.clear_at);
        }
        t.level = level;
    };
    match t {
        Some(mut t) if matches!(t.kind, EventKind::Firing | EventKind::Flapping) => {
            let level = r.level_now();
            s.level = Some(level);
            shown(&mut t, Some(level));
            out.push(t);
        }
        Some(mut t) if t.kind == EventKind::Resolved => {
            let was = old.level;
            s.level = None;
            shown(&mut t, was);
            t.limit = Some(base.limit);
            t.clear = Some(base.clear_at);
            out.push(t);
        }
        other => {
            if s.phase == rules::Phase::Firing {
                let level = s.level.unwrap_or(r.level_now());
                let critical = r.critical.filter(|_| r.warning.is_some());
                let change = match (level, critical) {
                    (Level::Warning, Some(c)) if c.breach => Some(Level::Critical),
                    (Level::Critical, Some(c)) if c.clear => Some(Level::Warning),
                    _ => None,
                };
                s.level = Some(change.unwrap_or(level));
                if let Some(to) = change {
                    let kind = if to == Level::Critical {
                        s.last_notified_at = Some(now);
                        EventKind::Escalated
                    } else {
                        EventKind::Deescalated
                    };
                    let mut e = Transition {
                        rule: rule.clone(),
                        kind,
                        value: Some(r.value),
                        limit: None,
                        clear: None,
                        previous: None,
                        since: s.since.unwrap_or(now),
                        level: None,
                    };
                    shown(&mut e, Some(to));
                    out.push(e);
                    // An escalation is news enough: no reminder in the same round.
                    if to == Level::Critical {
                        return (s, out);
                    }
                }
            }
            if let Some(mut t) = other {
                shown(&mut t, s.level);
                out.push(t);
            }
        }
    }
    (s, out)
}
