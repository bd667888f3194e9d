//! The filesystem rules of one host: `fs-used` and `fs-inodes` (warning and critical),
//! `fs-readonly` (turned read-only: it was writable), `fs-hanging` (`statvfs` did not
//! answer), `fs-filling` (predicted full within the warning or critical horizon, only
//! while available space is below `alert.fill_below` and the mount is writable, held
//! `alert.fill_hold`). Limits per mount come from [`FamilyLimits::mount`].

use super::filling::{self, Bucket};
use super::levels::{Leveled, Threshold};
use super::{Ctx, FamilyObservation, FamilyRule, Memory, fire_after, flag};
use crate::alert::rules::{Phase, Rule};
use crate::config::{FamilyLimits, MountLimits};
use edgemon_proto::report::family::filesystems::Filesystem;

pub(super) fn evaluate(
    ctx: &mut Ctx<'_>,
    limits: &FamilyLimits,
    obs: &FamilyObservation,
    memory: &Memory,
) {
    let Some(filesystems) = &obs.filesystems else {
        return;
    };
    let policy = &ctx.policy.families;
    let width = filling::width(policy.fill_window);
    let mut any_buckets = false;
    for fs in filesystems {
        let rule = |r: FamilyRule| Rule::Family(r, fs.mount.clone());
        let Some(lim) = limits.mount(&fs.mount) else {
            for r in [
                FamilyRule::FsUsed,
                FamilyRule::FsInodes,
                FamilyRule::FsReadonly,
                FamilyRule::FsHanging,
                FamilyRule::FsFilling,
            ] {
                ctx.off(rule(r));
            }
            continue;
        };
        used_and_inodes(ctx, &lim, fs);
        readonly(ctx, &lim, fs);
        if lim.hanging {
            ctx.plain(
                rule(FamilyRule::FsHanging),
                flag(fs.hanging, fs.hanging),
                fire_after(ctx.policy),
            );
        } else {
            ctx.off(rule(FamilyRule::FsHanging));
        }
        if lim.filling {
            any_buckets |= fill(ctx, fs, memory, width);
        } else {
            ctx.off(rule(FamilyRule::FsFilling));
        }
    }
    if any_buckets || !memory.buckets.is_empty() {
        ctx.verdict.writes.prune_before =
            Some(ctx.now - policy.fill_window.as_millis() as i64 - width);
    }
}

fn used_and_inodes(ctx: &mut Ctx<'_>, lim: &MountLimits, fs: &Filesystem) {
    let margin = ctx.policy.clear_margin;
    for (kind, warning, critical, value) in [
        (
            FamilyRule::FsUsed,
            lim.used,
            lim.used_critical,
            fs.used_percent(),
        ),
        (
            FamilyRule::FsInodes,
            lim.inodes,
            lim.inodes_critical,
            fs.inodes_used_percent(),
        ),
    ] {
        let rule = Rule::Family(kind, fs.mount.clone());
        if warning.is_none() && critical.is_none() {
            ctx.off(rule);
            continue;
        }
        let Some(value) = value.filter(|_| !fs.hanging) else {
            // A hanging mount has no sizes; a filesystem without fixed inodes has no %.
            ctx.unmeasured(rule);
            continue;
        };
        let reading = Leveled {
            value,
            warning: warning.map(|p| Threshold::above(value, p.value(), margin)),
            critical: critical.map(|p| Threshold::above(value, p.value(), margin)),
        };
        ctx.leveled(rule, reading, fire_after(ctx.policy));
    }
}

/// Fires when a writable mount turns read-only; a mount read-only from the start never does.
fn readonly(ctx: &mut Ctx<'_>, lim: &MountLimits, fs: &Filesystem) {
    let rule = Rule::Family(FamilyRule::FsReadonly, fs.mount.clone());
    if !lim.readonly {
        ctx.off(rule);
        return;
    }
    let Some(ro) = fs.readonly.filter(|_| !fs.hanging) else {
        ctx.unmeasured(rule);
        return;
    };
    let old = ctx.old(&rule);
    let was_rw = old.last_value == Some(0.0) || old.phase != Phase::Ok;
    ctx.plain(rule, flag(ro, ro && was_rw), fire_after(ctx.policy));
}

/// Adds the sample to the mount's bucket and judges the prediction; whether it wrote a bucket.
fn fill(ctx: &mut Ctx<'_>, fs: &Filesystem, memory: &Memory, width: i64) -> bool {
    let policy = &ctx.policy.families;
    let rule = Rule::Family(FamilyRule::FsFilling, fs.mount.clone());
    let (Some(avail), Some(used)) = (fs.avail, fs.used) else {
        ctx.unmeasured(rule);
        return false;
    };
    if fs.hanging {
        ctx.unmeasured(rule);
        return false;
    }
    let now = ctx.now;
    let start = filling::bucket_start(now, width);
    let mut buckets: Vec<Bucket> = memory.buckets.get(&fs.mount).cloned().unwrap_or_default();
    let current = match buckets.iter_mut().find(|b| b.start == start) {
        Some(b) => b,
        None => {
            buckets.push(Bucket {
                start,
                ..Bucket::default()
            });
            buckets.last_mut().expect("just pushed")
        }
    };
    current.add(now, avail as f64);
    let written = *current;
    ctx.verdict.writes.buckets.push((fs.mount.clone(), written));

    let all = used.saturating_add(avail);
    let avail_pct = if all == 0 {
        100.0
    } else {
        avail as f64 * 100.0 / all as f64
    };
    let gated = avail_pct < policy.fill_below.value() && fs.readonly != Some(true);
    let seconds = filling::fit(&buckets, policy.fill_window, now).and_then(|f| f.seconds_to_full());
    // -1: not filling (no falling line, or too little history).
    let value = seconds.unwrap_or(-1.0);
    let within = |horizon: std::time::Duration| {
        let h = horizon.as_secs_f64();
        Threshold {
            limit: h,
            clear_at: h,
            breach: gated && seconds.is_some_and(|s| s < h),
            clear: !(gated && seconds.is_some_and(|s| s < h)),
        }
    };
    let reading = Leveled {
        value,
        warning: Some(within(policy.fill_warning)),
        critical: Some(within(policy.fill_critical)),
    };
    let hold = policy.fill_hold.as_secs_f64() / policy.interval.as_secs_f64().max(1.0);
    let samples = (hold.ceil() as u32).max(fire_after(ctx.policy));
    ctx.leveled(rule, reading, samples);
    true
}
