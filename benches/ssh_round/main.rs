//! `cargo bench --bench ssh_round -- CONFIG ROUNDS`: runs ROUNDS collection
//! rounds in one process with edgemon's real collector (persistent sessions
//! and resident agents as the configuration says) and prints, per round, the
//! wall time, the CPU seconds this process spent and the outcome counts, then
//! the process's peak RSS. Round 1 pays for connect, handshake, auth and
//! agent upload; later rounds are the steady state. Driven by `run.sh`.

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
        let start = Instant::now();
        let outcomes = smol::block_on(collector.round());
        let wall = start.elapsed().as_secs_f64();
        let ok = outcomes.iter().filter(|o| o.result.is_ok()).count();
        println!(
            "round {round}: wall {wall:.3} s  cpu {:.3} s  ok {ok}/{}",
            cpu_seconds() - cpu,
            outcomes.len()
        );
        if let Some(err) = outcomes.iter().find_map(|o| o.result.as_ref().err()) {
            println!("  first error: {err}");
        }
    }
    println!("peak RSS: {} KiB", peak_rss_kib());
    Ok(())
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

/// VmHWM from /proc/self/status.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
