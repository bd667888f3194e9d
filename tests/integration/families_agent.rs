//! The agent's metric families on namespace hosts (issue 22): a tmpfs filled with `dd`
//! inside a host shows its used and available bytes, a second interface set down shows
//! `down`, a watched process killed counts 0, and a change of the watches on reconfigure
//! (SIGHUP) restarts the host's resident agent with them; a FUSE mount whose daemon is
//! stopped is reported `hanging` while the host's samples keep arriving, with one worker
//! stuck however many rounds pass; 500 interfaces are cut at `max_members` with the rest
//! counted.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use edgemon::collect::Collector;
use edgemon::collect::outcome::HostOutcome;
use edgemon::config::{AgentOptions, CollectConfig, HostConfig, HostKeyPolicy};
use edgemon::report::Report;
use edgemon::report::family::filesystems::Filesystem;
use edgemon::report::family::interfaces::{self, Interface};
use edgemon::report::family::options::{Watch, WatchBy};
use edgemon::report::family::processes::Watched;
use edgemon::report::family::system::System;

use crate::skip_or_fail;
use crate::support::netns::{Conditions, NetnsHost, Site};
use crate::support::{temp_dir, wait_until};

const MIB: u64 = 1 << 20;

fn settings() -> CollectConfig {
    CollectConfig {
        interval: Duration::from_secs(60),
        concurrency: 4,
        connect_timeout: Duration::from_secs(5),
        auth_timeout: Duration::from_secs(15),
        command_timeout: Duration::from_secs(30),
        known_hosts: None,
        host_key_policy: HostKeyPolicy::AcceptNew,
        agent_dir: "~/.cache/edgemon".to_string(),
        persistent_sessions: true,
        resident_agent: true,
        agent_idle_timeout: Duration::from_secs(300),
        max_reply_bytes: 1 << 20,
        max_clock_skew: Duration::from_secs(300),
    }
}

fn entry(site: &Site, host: &NetnsHost, agent: AgentOptions) -> HostConfig {
    HostConfig {
        os: Default::default(),
        agent,
        ..crate::ssh::ssh_entry(
            "fam",
            &host.address(),
            host.port(),
            site.user(),
            crate::ssh::key(site.key()),
        )
    }
}

fn collector(entries: Vec<HostConfig>, scratch: &Path) -> Collector {
    Collector::new(
        entries,
        settings(),
        scratch.join("unused-local-agent"),
        scratch.join("host-keys"),
    )
}

/// One round over the single host: its report (the round's outcome must be a sample).
fn sample(collector: &Collector, label: &str) -> Report {
    let outcomes: Vec<HostOutcome> = smol::block_on(collector.round());
    match outcomes.into_iter().next().map(|o| o.result) {
        Some(Ok(report)) => report,
        other => panic!("{label}: no sample: {other:?}"),
    }
}

/// Runs `script` as root inside the host; its stdout.
/// Mounts the host's own home over sshfs at `dir` (through its own sshd) and returns the
/// sshfs daemon's pid, so that a test can stop it and leave every statvfs on the mount waiting.
pub(crate) fn sshfs_to_itself(site: &Site, host: &NetnsHost, dir: &str) -> String {
    sh(
        host,
        &format!(
            "mkdir -p {dir} && sshfs -o allow_other,BatchMode=yes,StrictHostKeyChecking=no,\
             UserKnownHostsFile=/dev/null,IdentityFile={key} {user}@127.0.0.1: {dir}",
            key = site.key().display(),
            user = site.user(),
        ),
    );
    let daemon = sh(
        host,
        &format!(
            "for p in $(ls /proc | grep -E '^[0-9]+$'); do \
               [ \"$(cat /proc/$p/comm 2>/dev/null)\" = sshfs ] && grep -q {dir} /proc/$p/cmdline 2>/dev/null && echo $p; \
             done; true"
        ),
    );
    daemon
        .lines()
        .next()
        .expect("the sshfs daemon runs")
        .to_string()
}

/// Gives the host a 64 MiB tmpfs at `/tmp/fill` holding 20 MiB in `/tmp/fill/{file}`, a second
/// interface `eth1` (a veth, up) and a sleeping process whose command line carries `tag`;
/// returns that process's pid.
pub(crate) fn fill_link_and_worker(host: &NetnsHost, file: &str, tag: &str) -> String {
    let pid = sh(
        host,
        &format!(
            "mkdir -p /tmp/fill && mount -t tmpfs -o size=64m tmpfs /tmp/fill \
             && dd if=/dev/zero of=/tmp/fill/{file} bs=1M count=20 status=none \
             && ip link add eth1 type veth peer name eth1p \
             && ip link set eth1 up && ip link set eth1p up \
             && {{ python3 -c 'import time; time.sleep(3600)' {tag} >/dev/null 2>&1 & echo $!; }}"
        ),
    );
    assert!(
        wait_until(Duration::from_secs(10), || sh(
            host,
            "cat /sys/class/net/eth1/operstate"
        ) == "up"),
        "eth1 never came up"
    );
    pid
}

/// Runs `script` as root in the host's namespaces; its trimmed stdout.
pub(crate) fn sh(host: &NetnsHost, script: &str) -> String {
    let out = host
        .run_as(None, script)
        .unwrap_or_else(|e| panic!("in {}: {script}: {e:#}", host.namespace()));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn fs(report: &Report, mount: &str) -> Filesystem {
    report
        .typed::<Filesystem>()
        .into_iter()
        .find(|f| f.mount == mount)
        .unwrap_or_else(|| panic!("{mount} not reported: {:?}", report.typed::<Filesystem>()))
}

fn interface(report: &Report, name: &str) -> Interface {
    report
        .typed::<Interface>()
        .into_iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("{name} not reported: {:?}", report.typed::<Interface>()))
}

fn watched(report: &Report, name: &str) -> Option<u64> {
    report
        .typed::<Watched>()
        .into_iter()
        .find(|w| w.name == name)
        .and_then(|w| w.count)
}

fn watch(name: &str, by: WatchBy, pattern: &str) -> Watch {
    Watch {
        name: name.into(),
        by,
        pattern: pattern.into(),
    }
}

#[test]
fn a_filled_tmpfs_a_downed_link_and_a_killed_process_show_in_the_families() {
    let site = skip_or_fail!(Site::start());
    let host = skip_or_fail!(site.host(Conditions::default()));
    let scratch = temp_dir();
    let tag = format!("em-watch-{}", host.namespace());
    let pid = fill_link_and_worker(&host, "a", &tag);
    let options = AgentOptions {
        watch: vec![watch("worker", WatchBy::Cmdline, &format!("*{tag}*"))],
        ..AgentOptions::default()
    };
    let collector = collector(vec![entry(&site, &host, options.clone())], scratch.path());

    let first = sample(&collector, "round 1");
    let fill = fs(&first, "/tmp/fill");
    assert_eq!(fill.fstype.as_deref(), Some("tmpfs"));
    assert_eq!(fill.size, Some(64 * MIB), "{fill:?}");
    assert_eq!(fill.used, Some(20 * MIB), "{fill:?}");
    assert_eq!(fill.avail, Some(44 * MIB), "{fill:?}");
    assert_eq!(fill.used_percent().map(f64::round), Some(31.0));
    assert_eq!((fill.readonly, fill.hanging), (Some(false), false));
    assert_eq!(interface(&first, "eth1").oper.as_deref(), Some("up"));
    assert_eq!(interface(&first, "eth0").oper.as_deref(), Some("up"));
    assert!(
        first.typed::<Interface>().iter().all(|i| i.name != "lo"),
        "loopback excluded by default"
    );
    assert_eq!(watched(&first, "worker"), Some(1));
    let sys = first.typed::<System>();
    assert!(sys[0].mem_available.is_some_and(|m| m > 0), "{sys:?}");
    assert!(first.section(&interfaces::SPEC).is_some_and(|s| s.cut == 0));

    sh(
        &host,
        &format!(
            "dd if=/dev/zero of=/tmp/fill/b bs=1M count=20 status=none \
             && ip link set eth1 down && kill {pid}"
        ),
    );
    assert!(wait_until(Duration::from_secs(10), || sh(
        &host,
        &format!("kill -0 {pid} 2>/dev/null && echo alive || echo gone")
    ) == "gone"));
    let second = sample(&collector, "round 2");
    let fill = fs(&second, "/tmp/fill");
    assert_eq!((fill.used, fill.avail), (Some(40 * MIB), Some(24 * MIB)));
    assert_eq!(interface(&second, "eth1").oper.as_deref(), Some("down"));
    assert_eq!(watched(&second, "worker"), Some(0), "the killed process");

    // SIGHUP with a new watch: the resident agent is restarted with the new options.
    let mut changed = options.clone();
    changed
        .watch
        .push(watch("ssh server", WatchBy::Name, "sshd"));
    let collector = collector.reconfigure(
        vec![entry(&site, &host, changed)],
        settings(),
        scratch.path().join("unused-local-agent"),
        scratch.path().join("host-keys"),
    );
    let third = sample(&collector, "round 3, after reconfigure");
    assert!(
        watched(&third, "ssh server").is_some_and(|n| n >= 1),
        "the agent runs with the new watches: {:?}",
        third.typed::<Watched>()
    );
    assert_eq!(watched(&third, "worker"), Some(0));
}

/// Threads of the host's agent processes: (named `statvfs`, inside the `statfs` syscall).
fn statvfs_threads(host: &NetnsHost) -> (usize, usize) {
    let out = Command::new("ip")
        .args(["netns", "pids", host.namespace()])
        .output()
        .expect("ip netns pids");
    let (mut named, mut in_statfs) = (0, 0);
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.starts_with("edgemon-agent") {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if name.trim() != "statvfs" {
                continue;
            }
            named += 1;
            // x86_64: statfs(2) is syscall 137, what a statvfs blocked on FUSE sits in.
            let call = std::fs::read_to_string(task.path().join("syscall")).unwrap_or_default();
            if call.split_whitespace().next() == Some("137") {
                in_statfs += 1;
            }
        }
    }
    (named, in_statfs)
}

#[test]
fn a_mount_that_never_answers_is_hanging_and_the_sample_still_arrives() {
    let site = skip_or_fail!(Site::start());
    let host = skip_or_fail!(site.host(Conditions::default()));
    skip_or_fail!(crate::support::require_file("/usr/bin/sshfs", "sshfs"));
    let scratch = temp_dir();
    // sshfs to the host's own sshd; stopping its daemon makes every statvfs on the mount wait.
    let daemon = sshfs_to_itself(&site, &host, "/tmp/hang");
    let options = AgentOptions {
        statfs_timeout_ms: 1000,
        ..AgentOptions::default()
    };
    let collector = collector(vec![entry(&site, &host, options)], scratch.path());
    let before = sample(&collector, "before the stop");
    let mount = fs(&before, "/tmp/hang");
    assert!(!mount.hanging && mount.size.is_some(), "{mount:?}");

    sh(&host, &format!("kill -STOP {daemon}"));
    let mut counts = Vec::new();
    for round in 1..=4 {
        let report = sample(&collector, &format!("round {round} with the mount hung"));
        let hung = fs(&report, "/tmp/hang");
        assert!(hung.hanging, "round {round}: {hung:?}");
        assert_eq!((hung.size, hung.used, hung.avail), (None, None, None));
        assert_eq!(hung.fstype.as_deref(), Some("fuse.sshfs"));
        // The host's other filesystems are still measured.
        assert!(
            report
                .typed::<Filesystem>()
                .iter()
                .any(|f| f.mount == "/tmp" && f.size.is_some()),
            "round {round}: {:?}",
            report.typed::<Filesystem>()
        );
        counts.push(statvfs_threads(&host));
    }
    assert!(
        counts.iter().all(|&(_, stuck)| stuck == 1),
        "one worker stuck in statfs, not one per round: {counts:?}"
    );
    assert!(
        counts.windows(2).all(|w| w[1].0 <= w[0].0),
        "no thread piles up: {counts:?}"
    );

    // The server is back: the stuck call returns and the mount is measured again.
    sh(&host, &format!("kill -CONT {daemon}"));
    assert!(
        wait_until(Duration::from_secs(20), || {
            !fs(&sample(&collector, "after the resume"), "/tmp/hang").hanging
        }),
        "the mount never answered again"
    );
    assert_eq!(statvfs_threads(&host).1, 0);
    sh(&host, "umount -l /tmp/hang; true");
}

#[test]
fn five_hundred_interfaces_are_cut_at_max_members_and_counted() {
    let site = skip_or_fail!(Site::start());
    let host = skip_or_fail!(site.host(Conditions::default()));
    let scratch = temp_dir();
    sh(
        &host,
        "for i in $(seq -w 0 249); do echo \"link add v$i type veth peer name p$i\"; done \
         | ip -batch -",
    );
    let collector = collector(
        vec![entry(&site, &host, AgentOptions::default())],
        scratch.path(),
    );
    let report = sample(&collector, "500 interfaces");
    let section = report.section(&interfaces::SPEC).expect("interfaces");
    // eth0 and the 500 (lo excluded): 64 reported, the rest counted.
    assert_eq!(section.members.len(), 64);
    assert_eq!(section.cut, 501 - 64);
    let names: Vec<&str> = section.members.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(names[0], "eth0");
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted: {names:?}");
}
