//! The service rules of one host: `unit-failed:NAME` for each failed systemd unit not
//! matched by `unit_ignore` (a unit that recovers leaves the section, which resolves its
//! alert), and `process-missing:WATCH` for each watched process with no running
//! instance, not matched by `process_ignore`.

use super::{Ctx, FamilyObservation, FamilyRule, fire_after};
use crate::alert::rules::{Reading, Rule};
use crate::config::FamilyLimits;
use edgemon_proto::report::family::options::any_match;

pub(super) fn evaluate(ctx: &mut Ctx<'_>, limits: &FamilyLimits, obs: &FamilyObservation) {
    if let Some(units) = &obs.units {
        for unit in units {
            let rule = Rule::Family(FamilyRule::UnitFailed, unit.name.clone());
            if !limits.unit_failed || any_match(&limits.unit_ignore, &unit.name) {
                ctx.off(rule);
                continue;
            }
            let reading = Reading {
                value: 1.0,
                breach: true,
                clear: false,
                limit: 0.0,
                clear_at: None,
            };
            ctx.plain(rule, reading, fire_after(ctx.policy));
        }
    }
    if let Some(processes) = &obs.processes {
        for watch in processes {
            let rule = Rule::Family(FamilyRule::ProcessMissing, watch.name.clone());
            if !limits.process_missing || any_match(&limits.process_ignore, &watch.name) {
                ctx.off(rule);
                continue;
            }
            let Some(count) = watch.count else {
                ctx.unmeasured(rule);
                continue;
            };
            let reading = Reading {
                value: count as f64,
                breach: count == 0,
                clear: count > 0,
                limit: 0.0,
                clear_at: None,
            };
            ctx.plain(rule, reading, fire_after(ctx.policy));
        }
    }
}
