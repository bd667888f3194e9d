//! The interface rules of one host: `if-down` (the link went down: it was up; an
//! interface that was never up never fires) and `if-errors` (receive and transmit errors
//! over packets in the interval since the previous sample, from the counters kept in
//! [`Memory`]; a counter that went down was reset and that interval is skipped; the alert
//! clears below half its limit, since a margin in points means little at 1 %).

use super::{Ctx, FamilyObservation, FamilyRule, Memory, fire_after, flag};
use crate::alert::rules::{Phase, Reading, Rule};
use crate::config::FamilyLimits;
use edgemon_proto::report::family::interfaces::Interface;

/// Counter series of an interface: errors and packets, both directions summed.
fn series(name: &str) -> (String, String) {
    (format!("if:{name}:errors"), format!("if:{name}:packets"))
}

pub(super) fn evaluate(
    ctx: &mut Ctx<'_>,
    limits: &FamilyLimits,
    obs: &FamilyObservation,
    memory: &Memory,
) {
    let Some(interfaces) = &obs.interfaces else {
        return;
    };
    let mut kept = Vec::new();
    for iface in interfaces {
        let down_rule = Rule::Family(FamilyRule::IfDown, iface.name.clone());
        let errors_rule = Rule::Family(FamilyRule::IfErrors, iface.name.clone());
        let Some(lim) = limits.interface(&iface.name) else {
            ctx.off(down_rule);
            ctx.off(errors_rule);
            continue;
        };
        if lim.down {
            down(ctx, down_rule, iface);
        } else {
            ctx.off(down_rule);
        }
        match lim.errors {
            Some(limit) => {
                kept.push(iface.name.as_str());
                errors(ctx, errors_rule, iface, limit.value(), memory);
            }
            None => ctx.off(errors_rule),
        }
    }
    // Counters of interfaces no longer reported (or no longer watched) are forgotten.
    for key in memory.counters.keys() {
        if let Some(rest) = key.strip_prefix("if:")
            && let Some((name, _)) = rest.rsplit_once(':')
            && !kept.contains(&name)
        {
            ctx.verdict.writes.drop_counters.push(key.clone());
        }
    }
}

fn down(ctx: &mut Ctx<'_>, rule: Rule, iface: &Interface) {
    let state = iface.oper.as_deref();
    let is_down = matches!(state, Some("down" | "lowerlayerdown" | "notpresent"));
    if !iface.is_up() && !is_down {
        // dormant, testing, unknown, or not measured: neither up nor down.
        ctx.unmeasured(rule);
        return;
    }
    let old = ctx.old(&rule);
    let was_up = old.last_value == Some(0.0) || old.phase != Phase::Ok;
    // The flag is "down": 1 while down; it breaches only after the link was up.
    ctx.plain(
        rule,
        flag(is_down, is_down && was_up),
        fire_after(ctx.policy),
    );
}

fn errors(ctx: &mut Ctx<'_>, rule: Rule, iface: &Interface, limit: f64, memory: &Memory) {
    let (errors_key, packets_key) = series(&iface.name);
    let errors = iface
        .rx_errors
        .zip(iface.tx_errors)
        .map(|(r, t)| r.saturating_add(t));
    let packets = iface
        .rx_packets
        .zip(iface.tx_packets)
        .map(|(r, t)| r.saturating_add(t));
    let (Some(errors), Some(packets)) = (errors, packets) else {
        ctx.unmeasured(rule);
        return;
    };
    let (errors, packets) = (errors as f64, packets as f64);
    let previous = memory
        .counters
        .get(&errors_key)
        .zip(memory.counters.get(&packets_key));
    ctx.counter(errors_key, errors);
    ctx.counter(packets_key, packets);
    let Some((&e0, &p0)) = previous else {
        ctx.hold(rule);
        return;
    };
    if errors < e0 || packets < p0 {
        // Reset (a reboot, a driver reload): this interval says nothing.
        ctx.hold(rule);
        return;
    }
    let (de, dp) = (errors - e0, packets - p0);
    let ratio = if dp > 0.0 { de * 100.0 / dp } else { 0.0 };
    let clear_at = limit / 2.0;
    let reading = Reading {
        value: ratio,
        breach: ratio > limit,
        clear: ratio < clear_at,
        limit,
        clear_at: Some(clear_at),
    };
    ctx.plain(rule, reading, fire_after(ctx.policy));
}
