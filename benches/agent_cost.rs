//! The agent's own cost per sample on the monitored host: CPU time (all its threads, from
//! `/proc/PID/task/*/schedstat`, nanoseconds) and memory (`VmHWM`, `VmRSS`), of a resident
//! agent answering one request every 120 ms (above the agent's 100 ms reuse threshold, so
//! each sample's CPU window starts at the previous one, as in a real round). It compares the
//! embedded agent with the metric families on against an agent binary from before them
//! (`BEFORE=path`), alternately before/after/before/after in one run.
//!
//! The agent runs in a network namespace with two veth pairs (4 interfaces, `lo` excluded)
//! and a mount namespace with 7 extra tmpfs mounts; the options cap every family at 8
//! members (so 8 mounts are statted), keep 4 block devices (`vda`, `loop0`..`loop2` on the
//! reference box) and watch 2 processes (one by name, one by command line: a full `/proc`
//! scan per sample). This box has no systemd, so `units` costs nothing here (on a systemd host
//! one `systemctl list-units` per sample adds its own CPU, not counted).
//!
//! Run (root): `BEFORE=/path/to/old/edgemon-agent cargo bench --bench agent_cost`
//! (`SAMPLES`, default 300). Without `BEFORE` only the new agent is measured.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgemon::report::family::options::{AgentOptions, Watch, WatchBy};
use edgemon::report::family::{devices, filesystems, interfaces, processes};
use edgemon_proto::envelope::{Initiator, read_frame, write_frame};

const GAP: Duration = Duration::from_millis(120);
const MAX_REPLY: usize = 1 << 20;

struct Run {
    cpu_us_per_sample: f64,
    reply_ms_median: f64,
    hwm_kib: u64,
    rss_kib: u64,
    members: [usize; 4],
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("agent_cost: needs root (network and mount namespaces); skipped");
        return;
    }
    let samples: usize = std::env::var("SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    // Under /var/tmp: the agent's mount namespace gets its tmpfs mounts below `mounts`.
    let dir = tempfile::tempdir_in("/var/tmp").expect("temp dir");
    let after = dir.path().join("edgemon-agent");
    std::fs::write(&after, edgemon::agent_bin::AGENT).expect("write the agent");
    std::fs::set_permissions(&after, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let before = std::env::var_os("BEFORE").map(|path| {
        let copy = dir.path().join("edgemon-agent-before");
        std::fs::copy(PathBuf::from(path), &copy).expect("copy BEFORE");
        copy
    });
    let mounts = dir.path().join("mnt");
    std::fs::create_dir(&mounts).expect("mkdir");

    let ns = Netns::new(format!("emagentbench{}", std::process::id()));
    let ns = &ns.0;
    for (a, b) in [("a0", "b0"), ("a1", "b1")] {
        ip(&[
            "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b,
        ]);
        ip(&["-n", ns, "link", "set", a, "up"]);
        ip(&["-n", ns, "link", "set", b, "up"]);
    }
    let options = AgentOptions {
        max_members: 8,
        dev_exclude: [
            "zram*", "loop3", "loop4", "loop5", "loop6", "loop7", "sr*", "ram*",
        ]
        .map(String::from)
        .to_vec(),
        watch: vec![
            Watch {
                name: "sshd".into(),
                by: WatchBy::Name,
                pattern: "sshd".into(),
            },
            Watch {
                name: "pg".into(),
                by: WatchBy::Cmdline,
                pattern: "*postgres -D*".into(),
            },
        ],
        ..AgentOptions::default()
    };
    let token = options.to_token();
    let unwatched = AgentOptions {
        watch: Vec::new(),
        ..options.clone()
    }
    .to_token();

    println!("agent_cost: {samples} samples per run, one request every {GAP:?}");
    println!(
        "| run | agent | CPU µs/sample | reply ms (median) | VmHWM KiB | VmRSS KiB | fs/if/dev/proc members |"
    );
    println!("|---|---|---:|---:|---:|---:|---|");
    for round in 1..=2 {
        let mut runs: Vec<(&str, &Path, Option<&str>)> = Vec::new();
        if let Some(before) = &before {
            runs.push(("before", before, None));
        }
        runs.push(("families on", &after, Some(&token)));
        runs.push(("families on, no watch", &after, Some(&unwatched)));
        for (label, agent, token) in runs {
            let r = run(ns, &mounts, agent, token, samples);
            println!(
                "| {round} | {label} | {:.0} | {:.2} | {} | {} | {:?} |",
                r.cpu_us_per_sample, r.reply_ms_median, r.hwm_kib, r.rss_kib, r.members
            );
        }
    }
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        ip(&["netns", "add", &name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

fn run(ns: &str, mounts: &Path, agent: &Path, token: Option<&str>, samples: usize) -> Run {
    let script = format!(
        "d='{}' && mount -t tmpfs tmpfs \"$d\" && for i in 0 1 2 3 4 5 6; do \
         mkdir \"$d/m$i\" && mount -t tmpfs -o size=16m tmpfs \"$d/m$i\"; done \
         && exec \"$0\" \"$@\"",
        mounts.display()
    );
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        ns,
        "unshare",
        "-m",
        "--propagation",
        "private",
    ])
    .args(["sh", "-c", &script])
    .arg(agent);
    if let Some(token) = token {
        cmd.args(["--options", token]);
    }
    // ip, unshare and sh exec in turn: the child's pid is the agent's.
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the agent");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut ask = || {
        let init = Initiator::new();
        let t = Instant::now();
        write_frame(&mut stdin, &init.request()).expect("request");
        stdin.flush().expect("flush");
        let reply = read_frame(&mut stdout, MAX_REPLY)
            .expect("reply frame")
            .expect("a reply");
        let took = t.elapsed();
        let xml = init.open(&reply, MAX_REPLY).expect("open");
        (edgemon::report::parse(&xml).expect("parse"), took)
    };
    for _ in 0..3 {
        ask();
        std::thread::sleep(GAP);
    }
    let cpu0 = cpu_ns(pid);
    let mut took = Vec::with_capacity(samples);
    let mut last = None;
    for _ in 0..samples {
        std::thread::sleep(GAP);
        let (report, t) = ask();
        took.push(t);
        last = Some(report);
    }
    let cpu1 = cpu_ns(pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let (hwm_kib, rss_kib) = (kib("VmHWM:"), kib("VmRSS:"));
    drop(stdin);
    let _ = child.wait();
    took.sort();
    let report = last.expect("a sample");
    let count = |spec| report.section(spec).map_or(0, |s| s.members.len());
    Run {
        cpu_us_per_sample: (cpu1 - cpu0) as f64 / 1000.0 / samples as f64,
        reply_ms_median: took[took.len() / 2].as_secs_f64() * 1000.0,
        hwm_kib,
        rss_kib,
        members: [
            count(&filesystems::SPEC),
            count(&interfaces::SPEC),
            count(&devices::SPEC),
            count(&processes::SPEC),
        ],
    }
}

/// CPU time of every thread of `pid` so far, nanoseconds.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| {
            std::fs::read_to_string(t.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}
