//! Table tests of the family rules: each case is a script of rounds (minute, what the
//! report said) and the transitions expected after each, written `rule=kind` or
//! `rule=kind/level`, run through one `check` helper that carries the state and the
//! buckets and counters from round to round as the buffer would.

use std::time::Duration;

use super::*;
use crate::config::units::Percent;
use crate::config::{FamilyPolicy, InterfaceOverride, MountLimits, MountOverride};

const T0: i64 = 1_800_000_000_000;
const GIB: u64 = 1 << 30;

fn pct(v: f64) -> Option<Percent> {
    Percent::new(v)
}

/// The shipped defaults, as `[defaults.alerts]` resolves them.
fn limits() -> FamilyLimits {
    FamilyLimits {
        fs: MountLimits {
            used: pct(80.0),
            used_critical: pct(90.0),
            inodes: pct(80.0),
            inodes_critical: pct(90.0),
            readonly: true,
            hanging: true,
            filling: true,
        },
        iface: crate::config::InterfaceLimits {
            down: true,
            errors: pct(1.0),
        },
        unit_failed: true,
        process_missing: true,
        oom_kills: true,
        mem_available: pct(10.0),
        fds: pct(90.0),
        procs: pct(90.0),
        clock_skew: true,
        ..FamilyLimits::default()
    }
}

fn policy() -> AlertPolicy {
    AlertPolicy {
        fire_after: 1,
        clear_margin: 5.0,
        repeat: Duration::from_secs(3600 * 24),
        flap_window: Duration::from_secs(3600),
        flap_threshold: 6,
        site_unreachable_share: 0.5,
        site_min_hosts: 4,
        loss_horizon: Duration::ZERO,
        families: FamilyPolicy::default(),
    }
}

/// A filesystem of 100 GiB (used + avail) at `used` percent.
fn fs(mount: &str, used: f64) -> Filesystem {
    let all = 100 * GIB;
    let used = (all as f64 * used / 100.0) as u64;
    Filesystem {
        mount: mount.into(),
        fstype: Some("ext4".into()),
        size: Some(all),
        used: Some(used),
        avail: Some(all - used),
        files: Some(1000),
        files_free: Some(900),
        readonly: Some(false),
        ..Filesystem::default()
    }
}

fn obs_fs(list: Vec<Filesystem>) -> FamilyObservation {
    FamilyObservation {
        filesystems: Some(list),
        ..FamilyObservation::default()
    }
}

/// Runs `script` (minute, observation or `None` for a failed round, expected) from a
/// clean state; returns the final state.
fn check(
    name: &str,
    limits: &FamilyLimits,
    policy: &AlertPolicy,
    script: Vec<(i64, Option<FamilyObservation>, &str)>,
) -> HostState {
    let mut state = HostState::new();
    let mut memory = Memory::default();
    for (minute, obs, want) in script {
        let now = T0 + minute * 60_000;
        let v = evaluate(limits, policy, &state, obs.as_ref(), &memory, now);
        let got: Vec<String> = v
            .transitions
            .iter()
            .map(|t| match t.level {
                Some(l) => format!("{}={}/{}", t.rule, t.kind.as_str(), l.as_str()),
                None => format!("{}={}", t.rule, t.kind.as_str()),
            })
            .collect();
        let want: Vec<&str> = want.split_whitespace().collect();
        assert_eq!(got, want, "case `{name}` at minute {minute}");
        // What the buffer does with the writes.
        let w = &v.writes;
        for (mount, b) in &w.buckets {
            let list = memory.buckets.entry(mount.clone()).or_default();
            list.retain(|x| x.start != b.start);
            list.push(*b);
            list.sort_by_key(|x| x.start);
        }
        if let Some(before) = w.prune_before {
            for list in memory.buckets.values_mut() {
                list.retain(|b| b.start >= before);
            }
        }
        for (k, val) in &w.counters {
            memory.counters.insert(k.clone(), *val);
        }
        for k in &w.drop_counters {
            memory.counters.remove(k);
        }
        state = v.next;
    }
    state
}

#[test]
fn used_fires_warning_escalates_to_critical_steps_back_and_resolves_once() {
    let s = |u| Some(obs_fs(vec![fs("/var", u)]));
    check(
        "levels",
        &limits(),
        &policy(),
        vec![
            (0, s(50.0), ""),
            (1, s(85.0), "fs-used:/var=firing/warning"),
            (2, s(86.0), ""),
            // One escalation, not a RESOLVED and a new FIRING.
            (3, s(93.0), "fs-used:/var=escalated/critical"),
            (4, s(89.0), ""),
            // Below critical - margin: back to warning, recorded only.
            (5, s(84.0), "fs-used:/var=deescalated/warning"),
            (6, s(77.0), ""),
            (7, s(70.0), "fs-used:/var=resolved/warning"),
            (8, s(70.0), ""),
        ],
    );
}

#[test]
fn used_past_critical_fires_as_critical_and_a_failed_round_makes_it_stale() {
    let s = |u| Some(obs_fs(vec![fs("/var", u)]));
    check(
        "critical",
        &limits(),
        &policy(),
        vec![
            (0, s(95.0), "fs-used:/var=firing/critical"),
            (1, None, "fs-used:/var=stale/critical"),
            (2, s(95.0), ""),
            (3, s(10.0), "fs-used:/var=resolved/critical"),
        ],
    );
}

#[test]
fn inodes_have_their_own_levels() {
    let inodes = |free| {
        let mut f = fs("/srv", 10.0);
        f.files_free = Some(free);
        Some(obs_fs(vec![f]))
    };
    check(
        "inodes",
        &limits(),
        &policy(),
        vec![
            (0, inodes(150), "fs-inodes:/srv=firing/warning"),
            (1, inodes(50), "fs-inodes:/srv=escalated/critical"),
            (2, inodes(900), "fs-inodes:/srv=resolved/critical"),
        ],
    );
}

#[test]
fn per_mount_entries_override_by_glob_and_ignored_mounts_never_alert() {
    let mut l = limits();
    l.mounts = vec![MountOverride {
        pattern: "/backup*".into(),
        used: Some(pct(95.0)),
        used_critical: Some(None),
        ..MountOverride::default()
    }];
    l.fs_ignore = vec!["/snap/*".into()];
    let s = |u| {
        Some(obs_fs(vec![
            fs("/backup/daily", u),
            fs("/snap/core/1", 100.0),
        ]))
    };
    check(
        "patterns",
        &l,
        &policy(),
        vec![
            (0, s(93.0), ""),
            // The critical level is off for /backup*: the warning level alone.
            (1, s(99.0), "fs-used:/backup/daily=firing/warning"),
        ],
    );
}

#[test]
fn turned_read_only_fires_only_when_it_was_writable() {
    let ro = |mount: &str, ro| {
        let mut f = fs(mount, 10.0);
        f.readonly = Some(ro);
        f
    };
    check(
        "readonly",
        &limits(),
        &policy(),
        vec![
            (
                0,
                Some(obs_fs(vec![ro("/data", false), ro("/iso", true)])),
                "",
            ),
            (
                1,
                Some(obs_fs(vec![ro("/data", true), ro("/iso", true)])),
                "fs-readonly:/data=firing",
            ),
            (
                2,
                Some(obs_fs(vec![ro("/data", true), ro("/iso", true)])),
                "",
            ),
            (
                3,
                Some(obs_fs(vec![ro("/data", false), ro("/iso", true)])),
                "fs-readonly:/data=resolved",
            ),
        ],
    );
}

#[test]
fn a_hanging_mount_alerts_and_its_size_alerts_wait() {
    let hanging = |h| {
        let mut f = fs("/mnt/nfs", 95.0);
        if h {
            f = Filesystem {
                mount: "/mnt/nfs".into(),
                hanging: true,
                ..Filesystem::default()
            };
        }
        Some(obs_fs(vec![f]))
    };
    check(
        "hanging",
        &limits(),
        &policy(),
        vec![
            (0, hanging(false), "fs-used:/mnt/nfs=firing/critical"),
            (
                1,
                hanging(true),
                "fs-used:/mnt/nfs=stale/critical fs-hanging:/mnt/nfs=firing",
            ),
            (2, hanging(false), "fs-hanging:/mnt/nfs=resolved"),
        ],
    );
}

#[test]
fn an_unmounted_filesystem_resolves_its_alerts_and_keeps_no_state() {
    let state = check(
        "gone",
        &limits(),
        &policy(),
        vec![
            (
                0,
                Some(obs_fs(vec![fs("/var", 85.0)])),
                "fs-used:/var=firing/warning",
            ),
            (1, Some(obs_fs(vec![])), "fs-used:/var=resolved/warning"),
        ],
    );
    assert!(state.is_empty(), "{state:?}");
}

/// A mount losing `rate` GiB a minute from `start` GiB available (of 100).
fn filling(minute: i64, start: f64, rate: f64) -> Option<FamilyObservation> {
    let avail = ((start - rate * minute as f64).max(0.0) * GIB as f64) as u64;
    let mut f = fs("/var", 0.0);
    f.avail = Some(avail);
    f.used = Some(100 * GIB - avail);
    Some(obs_fs(vec![f]))
}

fn fill_policy() -> AlertPolicy {
    let mut p = policy();
    p.families.fill_window = Duration::from_secs(60 * 60);
    p.families.fill_warning = Duration::from_secs(24 * 3600);
    p.families.fill_critical = Duration::from_secs(4 * 3600);
    p.families.fill_hold = Duration::from_secs(10 * 60);
    p.families.interval = Duration::from_secs(60);
    p
}

#[test]
fn a_steady_fill_is_predicted_after_the_hold_and_escalates_as_the_horizon_nears() {
    // 30.05 GiB free, 0.1 GiB a minute: full in about 5 h, under 24 h: warning.
    let mut l = limits();
    l.fs.used = None;
    l.fs.used_critical = None;
    let mut script = Vec::new();
    for m in 0..=80 {
        let want = match m {
            // 15 minutes of history (a quarter of the window), then held 10 samples.
            24 => "fs-filling:/var=firing/warning",
            // Full in less than 4 h at minute 61 (30.05 - 6.1 = 23.95 GiB, 239.5 minutes).
            61 => "fs-filling:/var=escalated/critical",
            _ => "",
        };
        script.push((m, filling(m, 30.05, 0.1), want));
    }
    let state = check("filling", &l, &fill_policy(), script);
    let s = &state[&Rule::Family(FamilyRule::FsFilling, "/var".into())];
    // Full in (30.05 - 8) / 0.1 = 220.5 minutes, and the fit is exact on a straight line.
    let left = s.last_value.expect("a prediction");
    assert!((left - 220.5 * 60.0).abs() < 1.0, "{left}");
}

#[test]
fn filling_is_silent_while_space_is_plentiful_or_the_mount_read_only() {
    let mut l = limits();
    l.fs.used = None;
    l.fs.used_critical = None;
    // 80 GiB free, falling fast (full in 13 h) but above 40 % available.
    let mut script: Vec<(i64, Option<FamilyObservation>, &str)> =
        (0..=40).map(|m| (m, filling(m, 80.0, 0.1), "")).collect();
    // Read-only mounts do not fill.
    script.extend((41..=80).map(|m| {
        let mut o = filling(m, 30.0, 0.1).expect("obs");
        if let Some(list) = o.filesystems.as_mut() {
            list[0].readonly = Some(true);
        }
        (
            m,
            Some(o),
            if m == 41 {
                "fs-readonly:/var=firing"
            } else {
                ""
            },
        )
    }));
    check("plentiful", &l, &fill_policy(), script);
}

#[test]
fn bucketed_least_squares_equals_the_fit_over_the_samples() {
    let samples: Vec<(i64, f64)> = (0..50)
        .map(|i| {
            let t = T0 + i * 37_000;
            let y = 5e11 - 1.3e6 * i as f64 + if i % 3 == 0 { 4e7 } else { -2e7 };
            (t, y)
        })
        .collect();
    let window = Duration::from_secs(3600);
    let width = filling::width(window);
    let mut buckets: Vec<Bucket> = Vec::new();
    for &(t, y) in &samples {
        let start = filling::bucket_start(t, width);
        match buckets.iter_mut().find(|b| b.start == start) {
            Some(b) => b.add(t, y),
            None => {
                let mut b = Bucket {
                    start,
                    ..Bucket::default()
                };
                b.add(t, y);
                buckets.push(b);
            }
        }
    }
    let now = samples.last().map(|s| s.0).unwrap_or(T0);
    let fit = filling::fit(&buckets, window, now).expect("a fit");
    // The textbook fit over the samples themselves.
    let n = samples.len() as f64;
    let ts: Vec<f64> = samples
        .iter()
        .map(|s| (s.0 - now) as f64 / 1000.0)
        .collect();
    let mt = ts.iter().sum::<f64>() / n;
    let my = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let sxy: f64 = ts
        .iter()
        .zip(&samples)
        .map(|(t, s)| (t - mt) * (s.1 - my))
        .sum();
    let sxx: f64 = ts.iter().map(|t| (t - mt) * (t - mt)).sum();
    let slope = sxy / sxx;
    let at_now = my - slope * mt;
    assert!(
        (fit.slope - slope).abs() < 1e-6 * slope.abs(),
        "{} vs {slope}",
        fit.slope
    );
    assert!(
        (fit.at_now - at_now).abs() < 1e-6 * at_now.abs(),
        "{} vs {at_now}",
        fit.at_now
    );
    assert_eq!(fit.samples, n);
}

fn iface(name: &str, oper: &str, errors: u64, packets: u64) -> Interface {
    Interface {
        name: name.into(),
        oper: Some(oper.into()),
        rx_errors: Some(errors),
        tx_errors: Some(0),
        rx_packets: Some(packets),
        tx_packets: Some(0),
        ..Interface::default()
    }
}

fn obs_if(list: Vec<Interface>) -> Option<FamilyObservation> {
    Some(FamilyObservation {
        interfaces: Some(list),
        ..FamilyObservation::default()
    })
}

#[test]
fn a_link_that_goes_down_alerts_one_never_up_does_not() {
    let mut l = limits();
    l.interfaces = vec![InterfaceOverride {
        pattern: "wg*".into(),
        down: Some(false),
        errors: None,
    }];
    check(
        "links",
        &l,
        &policy(),
        vec![
            (
                0,
                obs_if(vec![
                    iface("eth0", "up", 0, 0),
                    iface("eth9", "down", 0, 0),
                    iface("wg0", "up", 0, 0),
                ]),
                "",
            ),
            (
                1,
                obs_if(vec![
                    iface("eth0", "down", 0, 0),
                    iface("eth9", "down", 0, 0),
                    iface("wg0", "down", 0, 0),
                ]),
                "if-down:eth0=firing",
            ),
            (
                2,
                obs_if(vec![
                    iface("eth0", "up", 0, 0),
                    iface("eth9", "down", 0, 0),
                    iface("wg0", "down", 0, 0),
                ]),
                "if-down:eth0=resolved",
            ),
        ],
    );
}

#[test]
fn the_error_ratio_is_over_the_interval_and_a_counter_reset_is_skipped() {
    let e = |errors, packets| obs_if(vec![iface("eth0", "up", errors, packets)]);
    let state = check(
        "errors",
        &limits(),
        &policy(),
        vec![
            (0, e(1000, 1_000_000), ""),
            // 50 errors in 10 000 packets: 0.5 %.
            (1, e(1050, 1_010_000), ""),
            // 300 in 10 000: 3 %.
            (2, e(1350, 1_020_000), "if-errors:eth0=firing"),
            // Reset (a reboot): that interval says nothing.
            (3, e(10, 100), ""),
            // 0.6 %: not below half the limit yet.
            (4, e(70, 10_100), ""),
            (5, e(70, 20_100), "if-errors:eth0=resolved"),
        ],
    );
    assert_eq!(
        state
            .get(&Rule::Family(FamilyRule::IfErrors, "eth0".into()))
            .map(|s| s.phase),
        Some(Phase::Ok),
        "resolved, its flips kept for flap detection"
    );
}

fn sys(oom: u64, avail_pct: f64, files: u64, procs: u64) -> Option<FamilyObservation> {
    Some(FamilyObservation {
        system: Some(System {
            oom_kills: Some(oom),
            mem_available: Some((avail_pct * 10.0) as u64),
            files_open: Some(files),
            files_max: Some(1000),
            procs: Some(procs),
            pid_max: Some(1000),
            ..System::default()
        }),
        mem_total: 1000,
        ..FamilyObservation::default()
    })
}

#[test]
fn oom_kills_fire_on_an_increase_and_after_a_reboot_resets_the_counter() {
    check(
        "oom",
        &limits(),
        &policy(),
        vec![
            // The first sample knows no increase.
            (0, sys(7, 50.0, 10, 10), ""),
            (1, sys(7, 50.0, 10, 10), ""),
            (2, sys(9, 50.0, 10, 10), "oom-kills=firing"),
            (3, sys(9, 50.0, 10, 10), "oom-kills=resolved"),
            // Rebooted: the counter starts again, and its 1 is new.
            (4, sys(1, 50.0, 10, 10), "oom-kills=firing"),
            (5, sys(1, 50.0, 10, 10), "oom-kills=resolved"),
        ],
    );
}

#[test]
fn memory_available_files_and_processes_against_their_limits() {
    check(
        "limits",
        &limits(),
        &policy(),
        vec![
            (0, sys(0, 50.0, 100, 100), ""),
            (1, sys(0, 8.0, 950, 100), "mem-available=firing fds=firing"),
            // 12 % is not above 10 + 5: still firing; procs now breach.
            (2, sys(0, 12.0, 950, 920), "procs=firing"),
            (
                3,
                sys(0, 20.0, 800, 100),
                "mem-available=resolved fds=resolved procs=resolved",
            ),
        ],
    );
}

#[test]
fn failed_units_and_missing_processes_by_name_with_ignore_patterns() {
    let mut l = limits();
    l.unit_ignore = vec!["user@*".into()];
    let o = |units: &[&str], nginx: u64| {
        Some(FamilyObservation {
            units: Some(
                units
                    .iter()
                    .map(|u| FailedUnit {
                        name: (*u).into(),
                        sub: Some("failed".into()),
                        result: Some("exit-code".into()),
                    })
                    .collect(),
            ),
            processes: Some(vec![Watched {
                name: "nginx".into(),
                count: Some(nginx),
            }]),
            ..FamilyObservation::default()
        })
    };
    check(
        "services",
        &l,
        &policy(),
        vec![
            (0, o(&[], 2), ""),
            (
                1,
                o(&["postgresql.service", "user@1000.service"], 0),
                "unit-failed:postgresql.service=firing process-missing:nginx=firing",
            ),
            (
                2,
                o(&[], 1),
                "process-missing:nginx=resolved unit-failed:postgresql.service=resolved",
            ),
        ],
    );
}

#[test]
fn clock_offset_beyond_max_clock_skew() {
    let o = |offset_s: i64| {
        Some(FamilyObservation {
            clock_offset_ms: offset_s * 1000,
            ..FamilyObservation::default()
        })
    };
    check(
        "clock",
        &limits(),
        &policy(),
        vec![
            (0, o(10), ""),
            (1, o(-400), "clock-skew=firing"),
            (2, o(260), ""),
            (3, o(100), "clock-skew=resolved"),
        ],
    );
}

#[test]
fn an_older_agent_without_sections_keeps_family_alerts_as_they_are() {
    let mut l = limits();
    l.clock_skew = false;
    check(
        "v1",
        &l,
        &policy(),
        vec![
            (
                0,
                Some(obs_fs(vec![fs("/var", 95.0)])),
                "fs-used:/var=firing/critical",
            ),
            // No filesystems section: not measured, so not resolved.
            (
                1,
                Some(FamilyObservation::default()),
                "fs-used:/var=stale/critical",
            ),
        ],
    );
}

#[test]
fn rule_names_round_trip_and_members_are_required_where_they_belong() {
    for r in FamilyRule::ALL {
        let member = if r.has_members() { "/var" } else { "" };
        let rule = Rule::Family(r, member.into());
        assert_eq!(Rule::parse(&rule.as_str()), Some(rule.clone()), "{rule}");
    }
    assert_eq!(Rule::parse("fs-used"), None);
    assert_eq!(Rule::parse("oom-kills:x"), None);
    assert_eq!(
        Rule::parse("fs-used:/var/lib:x"),
        Some(Rule::Family(FamilyRule::FsUsed, "/var/lib:x".into()))
    );
}
