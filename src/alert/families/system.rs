//! The host-wide family rules: `oom-kills` (the counter went up since the previous
//! sample; a reboot resets it, and then every kill since boot is new; it fires on the
//! first such sample, whatever `alert.for`, and resolves on the first sample without a
//! kill), `mem-available` (below a share of the total; clears above limit + margin),
//! `fds` and `procs` (above a share of `file-max` / `pid_max`), and `clock-skew` (the
//! report's `collected_at` off the appliance's arrival time by more than
//! `collect.max_clock_skew`; clears below 80 % of it).

use super::{Ctx, FamilyObservation, FamilyRule, Memory, fire_after, increase};
use crate::alert::rules::{Reading, Rule};
use crate::config::FamilyLimits;

/// The counter series of the OOM kills.
const OOM_SERIES: &str = "oom_kills";

fn host(rule: FamilyRule) -> Rule {
    Rule::Family(rule, String::new())
}

pub(super) fn evaluate(
    ctx: &mut Ctx<'_>,
    limits: &FamilyLimits,
    obs: &FamilyObservation,
    memory: &Memory,
) {
    clock(ctx, limits, obs);
    let Some(sys) = &obs.system else {
        return;
    };
    let margin = ctx.policy.clear_margin;
    // OOM kills.
    let rule = host(FamilyRule::OomKills);
    match (limits.oom_kills, sys.oom_kills) {
        (false, _) => ctx.off(rule),
        (true, None) => ctx.unmeasured(rule),
        (true, Some(kills)) => {
            let kills = kills as f64;
            ctx.counter(OOM_SERIES.to_string(), kills);
            match memory.counters.get(OOM_SERIES) {
                None => ctx.hold(rule),
                Some(&before) => {
                    let delta = increase(before, kills);
                    let reading = Reading {
                        value: delta,
                        breach: delta > 0.0,
                        clear: delta <= 0.0,
                        limit: 0.0,
                        clear_at: None,
                    };
                    ctx.plain(rule, reading, 1);
                }
            }
        }
    }
    // Memory available, a floor.
    let rule = host(FamilyRule::MemAvailable);
    match (limits.mem_available, sys.mem_available) {
        (None, _) => ctx.off(rule),
        (Some(_), None) => ctx.unmeasured(rule),
        (Some(_), Some(_)) if obs.mem_total == 0 => ctx.unmeasured(rule),
        (Some(limit), Some(avail)) => {
            let value = avail as f64 * 100.0 / obs.mem_total as f64;
            let limit = limit.value();
            let clear_at = (limit + margin.max(0.0)).min(100.0);
            let reading = Reading {
                value,
                breach: value < limit,
                clear: value > clear_at,
                limit,
                clear_at: Some(clear_at),
            };
            ctx.plain(rule, reading, fire_after(ctx.policy));
        }
    }
    // Open files and processes against the kernel's limits.
    for (kind, limit, used, max) in [
        (FamilyRule::Fds, limits.fds, sys.files_open, sys.files_max),
        (FamilyRule::Procs, limits.procs, sys.procs, sys.pid_max),
    ] {
        let rule = host(kind);
        let Some(limit) = limit else {
            ctx.off(rule);
            continue;
        };
        let (Some(used), Some(max)) = (used, max.filter(|m| *m > 0)) else {
            ctx.unmeasured(rule);
            continue;
        };
        let value = used as f64 * 100.0 / max as f64;
        let limit = limit.value();
        let clear_at = (limit - margin.max(0.0)).max(0.0);
        let reading = Reading {
            value,
            breach: value > limit,
            clear: value < clear_at,
            limit,
            clear_at: Some(clear_at),
        };
        ctx.plain(rule, reading, fire_after(ctx.policy));
    }
}

fn clock(ctx: &mut Ctx<'_>, limits: &FamilyLimits, obs: &FamilyObservation) {
    let rule = host(FamilyRule::ClockSkew);
    if !limits.clock_skew {
        ctx.off(rule);
        return;
    }
    // Whole seconds: the offset is a judgement in seconds, not a series.
    let value = (obs.clock_offset_ms.unsigned_abs() as f64 / 1000.0).round();
    let limit = ctx.policy.families.max_clock_skew.as_secs_f64();
    let clear_at = limit * 0.8;
    let reading = Reading {
        value,
        breach: value > limit,
        clear: value < clear_at,
        limit,
        clear_at: Some(clear_at),
    };
    ctx.plain(rule, reading, fire_after(ctx.policy));
}
