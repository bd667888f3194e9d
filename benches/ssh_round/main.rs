//! `cargo bench --bench ssh_round -- CONFIG ROUNDS`: runs ROUNDS collection
//! rounds in one process with edgemon's real collector (persistent sessions
//! and resident agents as the configuration says) and prints, per round, the
//! wall time, the CPU seconds this process spent and the outcome counts, then
//! the process's peak RSS. Each round line also says how busy the whole machine
//! was (all cores, /proc/stat) and the RSS after the round. Round 1 pays for connect, handshake, auth and
//! agent upload; later rounds are the steady state. After each round, the
//! collector's key generation for the next round (done while the daemon waits
//! for its interval) is awaited and reported on its own `keys N:` line.
//! Driven by `run.sh` and `fleet.sh`.

use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let all: Vec<String> = std::env::args().collect();
    // `cargo test --all-targets` runs bench targets too, without `--bench`: nothing to do then.
    if !all.iter().any(|a| a == "--bench") {
        println!("ssh_round: run through benches/ssh_round/run.sh");
        return Ok(());
    }
    let args: Vec<&String> = all.iter().filter(|a| !a.starts_with("--")).collect();
    let (Some(config), Some(rounds)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: cargo bench --bench ssh_round -- CONFIG ROUNDS");
    };
    let rounds: usize = rounds.parse()?;
    let config = edgemon::config::load_default_or(Some(std::path::Path::new(config)))?;
    let collector = edgemon::app::collector(&config)?;
    for round in 1..=rounds {
        let cpu = cpu_seconds();
        let machine = machine_ticks();
        let start = Instant::now();
        let outcomes = smol::block_on(collector.round());
        let wall = start.elapsed().as_secs_f64();
        let ok = outcomes.iter().filter(|o| o.result.is_ok()).count();
        let (busy, total) = machine_ticks();
        let busy_share = (busy - machine.0) / (total - machine.1).max(1.0);
        println!(
            "round {round}: wall {wall:.3} s  cpu {:.3} s  ok {ok}/{}  machine busy {:.0}%  rss {} KiB  bastions {}  tcp {}",
            cpu_seconds() - cpu,
            outcomes.len(),
            busy_share * 100.0,
            status_kib("VmRSS:"),
            collector.open_bastions(),
            tcp_connections()
        );
        if let Some(err) = outcomes.iter().find_map(|o| o.result.as_ref().err()) {
            println!("  first error: {err}");
        }
        // The collector makes the next round's envelope key pairs after a round, while the
        // daemon waits for its interval; wait for that here and time it apart.
        let cpu = cpu_seconds();
        let start = Instant::now();
        smol::block_on(collector.prepared());
        println!(
            "keys {round}: wall {:.3} s  cpu {:.3} s",
            start.elapsed().as_secs_f64(),
            cpu_seconds() - cpu
        );
    }
    println!("peak RSS: {} KiB", status_kib("VmHWM:"));
    Ok(())
}

/// Established TCP connections this process holds (its socket inodes in /proc/net/tcp{,6}):
/// one per direct host, one per bastion behind which hosts are collected.
fn tcp_connections() -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // state 01 = ESTABLISHED; field 9 is the inode.
            f.get(3) == Some(&"01") && f.get(9).is_some_and(|i| inodes.contains(*i))
        })
        .count()
}

/// User + system CPU seconds of this process (all threads), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'); utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A field of /proc/self/status in KiB: `VmHWM:` (peak RSS) or `VmRSS:`.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// (busy, total) CPU ticks of the whole machine, all cores, from /proc/stat:
/// how much of the machine a round had (the agents, sshd and other work share
/// it with the collector).
fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = ticks.iter().sum();
    // idle and iowait are fields 4 and 5.
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}
