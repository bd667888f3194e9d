//! Collector-side cost of the family alert rules in a steady round: 1000 hosts, each
//! report with 8 mounts, 4 interfaces, the system section and 2 watched processes,
//! recorded through `Alerting::record_round` on a real buffer file, with every family
//! rule on (shipped defaults, filling-up included) and, in the same run, with every
//! family rule off. The difference is what the rules cost: evaluation, the snapshot's
//! reads of buckets and counters, and their writes, in the round's transaction.
//!
//! Run: `cargo bench --bench family_alerts` (env `HOSTS`, default 1000; `ROUNDS`, default 15).
//! Prints the median round of each mode and the per-host difference.

use std::time::{Duration, Instant};

use edgemon::alert::Alerting;
use edgemon::buffer::Buffer;
use edgemon::collect::outcome::HostOutcome;
use edgemon::config::units::Percent;
use edgemon::config::{
    AlertLimits, AlertPolicy, FamilyLimits, FamilyPolicy, HostConfig, InterfaceLimits, MailConfig,
    MountLimits, Transport,
};
use edgemon::report::Report;
use edgemon::report::family::Section;
use edgemon::report::family::filesystems::Filesystem;
use edgemon::report::family::interfaces::Interface;
use edgemon::report::family::processes::Watched;
use edgemon::report::family::system::System;

const GIB: u64 = 1 << 30;
const MIN: i64 = 60_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn limits(on: bool) -> AlertLimits {
    let families = if on {
        FamilyLimits {
            fs: MountLimits {
                used: Percent::new(80.0),
                used_critical: Percent::new(90.0),
                inodes: Percent::new(80.0),
                inodes_critical: Percent::new(90.0),
                readonly: true,
                hanging: true,
                filling: true,
            },
            iface: InterfaceLimits {
                down: true,
                errors: Percent::new(1.0),
            },
            unit_failed: true,
            process_missing: true,
            oom_kills: true,
            mem_available: Percent::new(10.0),
            fds: Percent::new(90.0),
            procs: Percent::new(90.0),
            clock_skew: true,
            ..FamilyLimits::default()
        }
    } else {
        FamilyLimits::default()
    };
    AlertLimits {
        cpu: Percent::new(90.0),
        memory: Percent::new(90.0),
        swap: Percent::new(80.0),
        reboot: true,
        unreachable_after: Some(3),
        families,
    }
}

fn report(i: usize, round: i64, now: i64) -> Report {
    let mounts: Vec<Filesystem> = (0..8)
        .map(|m| {
            let avail = (20 + m as u64) * GIB - (round as u64 * (i as u64 % 7)) * (1 << 20);
            Filesystem {
                mount: format!("/data{m}"),
                fstype: Some("ext4".into()),
                device: Some(format!("/dev/sd{m}")),
                size: Some(100 * GIB),
                used: Some(100 * GIB - avail),
                avail: Some(avail),
                files: Some(6_000_000),
                files_free: Some(5_000_000),
                readonly: Some(false),
                hanging: false,
            }
        })
        .collect();
    let interfaces: Vec<Interface> = (0..4)
        .map(|n| Interface {
            name: format!("eth{n}"),
            oper: Some("up".into()),
            speed: Some(1000),
            rx_bytes: Some(round as u64 * 1_000_000),
            rx_packets: Some(round as u64 * 10_000),
            rx_errors: Some(round as u64),
            rx_drops: Some(0),
            tx_bytes: Some(round as u64 * 900_000),
            tx_packets: Some(round as u64 * 9_000),
            tx_errors: Some(0),
            tx_drops: Some(0),
        })
        .collect();
    let system = System {
        cpu_user: Some(10.0),
        cpu_system: Some(5.0),
        cpu_iowait: Some(1.0),
        cpu_steal: Some(0.0),
        cpu_idle: Some(84.0),
        mem_available: Some(8 * GIB),
        oom_kills: Some(3),
        procs: Some(400),
        pid_max: Some(4_194_304),
        files_open: Some(3000),
        files_max: Some(9_000_000),
    };
    let watched = [
        Watched {
            name: "nginx".into(),
            count: Some(4),
        },
        Watched {
            name: "postgres".into(),
            count: Some(9),
        },
    ];
    Report {
        version: 1,
        collected_at_ms: now,
        cpu_percent: 12.0,
        cores: vec![12.0; 4],
        mem_used: 8 * GIB,
        mem_total: 16 * GIB,
        swap_used: 0,
        swap_total: 0,
        uptime_s: 86_400 + round as u64 * 60,
        boot_time_s: None,
        load: None,
        hostname: None,
        os: None,
        kernel: None,
        extras: Vec::new(),
        sections: vec![
            Section::from_typed(&[system]),
            Section::from_typed(&mounts),
            Section::from_typed(&interfaces),
            Section::from_typed(&[] as &[edgemon::report::family::units::FailedUnit]),
            Section::from_typed(&watched),
        ],
    }
}

fn run(on: bool, hosts: usize, rounds: usize) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).expect("buffer");
    let configs: Vec<HostConfig> = (0..hosts)
        .map(|i| HostConfig {
            os: Default::default(),
            name: format!("host-{i:04}"),
            transport: Transport::Local,
            mail: None,
            alerts: limits(on),
            agent: Default::default(),
        })
        .collect();
    let policy = AlertPolicy {
        fire_after: 1,
        clear_margin: 5.0,
        repeat: Duration::from_secs(3600),
        flap_window: Duration::from_secs(3600),
        flap_threshold: 6,
        site_unreachable_share: 0.5,
        site_min_hosts: 4,
        loss_horizon: Duration::ZERO,
        families: FamilyPolicy::default(),
    };
    let mail = MailConfig {
        from: "edgemon@x.test".into(),
        recipients: vec!["ops@x.test".into()],
        smtp: None,
        file_dir: dir.path().join("mail"),
        rate_limit: 10,
        rate_window: Duration::from_secs(3600),
    };
    let alerting = Alerting::from_parts("bench", &policy, &mail, &configs);
    let t0 = 1_800_000_000_000_i64;
    let mut times = Vec::new();
    for round in 0..rounds as i64 {
        let now = t0 + round * MIN;
        let outcomes: Vec<HostOutcome> = (0..hosts)
            .map(|i| HostOutcome {
                host: format!("host-{i:04}"),
                address: "local".into(),
                started_at_ms: now,
                duration: Duration::from_millis(5),
                result: Ok(report(i, round, now)),
            })
            .collect();
        let start = Instant::now();
        alerting
            .record_round(&mut buffer, &outcomes, Duration::from_secs(300), now)
            .expect("round");
        // The first rounds create the rows; steady rounds are what a fleet pays.
        if round >= 3 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    times[times.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs benches as tests: do nothing there.
        return;
    }
    let hosts = env("HOSTS", 1000);
    let rounds = env("ROUNDS", 15).max(5);
    let off = run(false, hosts, rounds);
    let on = run(true, hosts, rounds);
    let per_host = (on.as_secs_f64() - off.as_secs_f64()) * 1000.0 / hosts as f64;
    println!(
        "family_alerts: {hosts} hosts x (8 mounts, 4 interfaces, system, 2 watches), median of {} steady rounds",
        rounds - 3
    );
    println!(
        "  round, family rules off: {:.1} ms",
        off.as_secs_f64() * 1000.0
    );
    println!(
        "  round, family rules on:  {:.1} ms ({:.2}x)",
        on.as_secs_f64() * 1000.0,
        on.as_secs_f64() / off.as_secs_f64()
    );
    println!("  family rules: {per_host:.3} ms per host per round");
}
