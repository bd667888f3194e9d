//! Drain benchmark: N buffered samples (8 per-core values each, 100 hosts)
//! synced by `SyncTask::drain` into a throwaway MariaDB, compared in the same
//! run with `LOAD DATA LOCAL INFILE` of the same rows by the `mariadb` client
//! (the practical ceiling). Results go to stdout; see BENCHMARKS.md.
//!
//! Run: `cargo bench --bench sync_drain` (N = 1,000,000), or with
//! `EDGEMON_BENCH_SAMPLES=200000` for a shorter run, `EDGEMON_BENCH_BATCH`
//! for the batch size (default 10000), `EDGEMON_BENCH_LOCAL_INFILE=0` to drain
//! with the server's `local_infile` off (the INSERT path), `EDGEMON_BENCH_FAMILIES=1` for samples
//! carrying the metric families (`buffer::example_sections`: 8 mounts, 4 interfaces, 4 devices,
//! system, a failed unit, 2 watched processes: 26 child rows a sample, which the LOAD DATA side
//! loads too). Needs mariadbd, mariadb-install-db and
//! the mariadb client; the server runs on a free 127.0.0.1 port and is killed
//! at the end. Nothing touches the system instance on port 3306.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use edgemon::buffer::Buffer;
use edgemon::config::secret::Secret;
use edgemon::config::{BufferConfig, MinFree, SyncConfig};
use edgemon::sync::SyncTask;
use mysql::prelude::Queryable;

#[path = "support/mariadb.rs"]
mod mariadb;
use mariadb::Server;

const HOSTS: usize = 100;
const CORES: usize = 8;
const T0: i64 = 1_700_000_000_000;

fn main() -> Result<()> {
    // `cargo test --all-targets` would run this too; only `cargo bench` passes --bench.
    if !std::env::args().any(|a| a == "--bench") {
        println!("sync_drain: run with `cargo bench --bench sync_drain`");
        return Ok(());
    }
    let n: usize = env_or("EDGEMON_BENCH_SAMPLES", 1_000_000);
    let batch: usize = env_or("EDGEMON_BENCH_BATCH", 10_000);
    let dir = tempfile::Builder::new()
        .prefix("edgemon-bench-")
        .tempdir()?;
    let server = Server::start(
        dir.path(),
        &[
            "--innodb-buffer-pool-size=512M",
            "--innodb-log-file-size=256M",
            "--performance-schema=OFF",
        ],
    )?;
    let buffer = dir.path().join("buffer.sqlite");

    let families = std::env::var("EDGEMON_BENCH_FAMILIES").is_ok_and(|v| v == "1");
    let t = Instant::now();
    if families {
        generate_with_families(&buffer, n)?;
    } else {
        generate(&buffer, n)?;
    }
    println!(
        "generated {n} samples x {CORES} cores in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let config = SyncConfig {
        urls: vec![Secret::new(format!(
            "mysql://root@127.0.0.1:{}/edgemon",
            server.port
        ))],
        interval: Duration::from_secs(30),
        batch_size: batch,
        max_backoff: Duration::from_secs(30),
        timeout: Duration::from_secs(60),
        schedule: edgemon::sync::schedule::Schedule::always(),
        timezone: edgemon::sync::schedule::Zone::Utc,
        rate_limit: edgemon::sync::pace::RateLimit::Off,
    };
    let buffer_config = BufferConfig {
        path: buffer.clone(),
        max_size: u64::MAX,
        max_unsynced_age: Duration::from_secs(u32::MAX.into()),
        keep_synced: Duration::from_secs(u32::MAX.into()),
        min_free: MinFree::Bytes(0),
    };
    let bulk = std::env::var("EDGEMON_BENCH_LOCAL_INFILE").map_or(true, |v| v != "0");
    if !bulk {
        // The server refuses LOAD DATA LOCAL: the drain takes the INSERT path.
        server.root()?.query_drop("SET GLOBAL local_infile = 0")?;
    }
    println!(
        "load average at start: {}; drain path: {}",
        loadavg(),
        if bulk {
            "LOAD DATA LOCAL INFILE"
        } else {
            "INSERT (local_infile = 0)"
        }
    );
    let task = SyncTask::new(&config, &buffer_config, "bench");
    let report = task.drain(&AtomicBool::new(false), &mut |_| {})?;
    let drain_s = report.elapsed.as_secs_f64();
    anyhow::ensure!(
        report.samples as usize == n,
        "drained {} of {n}",
        report.samples
    );
    let drain_rate = n as f64 / drain_s;
    let per_sample = rows_per_sample(&server)?;
    println!(
        "edgemon sync drain: {n} samples in {drain_s:.1} s = {drain_rate:.0} samples/s ({:.0} rows/s with cores{}), batch {batch}",
        n as f64 * per_sample / drain_s,
        if families { " and family rows" } else { "" }
    );

    if !bulk {
        server.root()?.query_drop("SET GLOBAL local_infile = 1")?;
    }
    // The same rows, as files in primary-key order (the best case for InnoDB) and in
    // arrival order (as an appliance produces them, and as the drain sends them).
    for (name, order) in [
        ("key order", "appliance_id, host_id, seq"),
        ("arrival order", "seq, appliance_id, host_id"),
    ] {
        let load_s = load_data_ceiling(&server, dir.path(), name, order)?;
        let load_rate = n as f64 / load_s;
        println!(
            "LOAD DATA LOCAL INFILE ({name}): {n} samples in {load_s:.1} s = {load_rate:.0} samples/s ({:.0} rows/s); drain = {:.0}% of it",
            n as f64 * per_sample / load_s,
            100.0 * drain_rate / load_rate
        );
    }
    println!("load average at end: {}", loadavg());
    Ok(())
}

/// The 1-, 5- and 15-minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Writes `n` samples straight into a fresh buffer (schema by `Buffer::open`), one transaction.
fn generate(path: &Path, n: usize) -> Result<()> {
    drop(Buffer::open(path)?);
    let mut conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    let tx = conn.transaction()?;
    for h in 0..HOSTS {
        tx.execute(
            "INSERT INTO hosts (id, name, address, next_seq) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                h as i64 + 1,
                format!("host-{h:03}"),
                format!("bench@10.0.{}.{}:22", h / 250, h % 250),
                (n / HOSTS + 2) as i64
            ],
        )?;
    }
    {
        let mut insert = tx.prepare(
            "INSERT INTO samples (host_id, seq, collected_at, received_at, cpu, cores, mem_used, mem_total,
                                  swap_used, swap_total, uptime_s, boot_time_s, load1, load5, load15,
                                  hostname, os, kernel, extras)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 8000000000, ?8, 2000000000, ?9, 1699990000, ?10, 0.5, 0.25,
                     ?11, 'Debian 12', '6.1.0-18-amd64', NULL)",
        )?;
        for i in 0..n {
            let host = (i % HOSTS) as i64 + 1;
            let seq = (i / HOSTS) as i64 + 1;
            let at = T0 + seq * 60_000;
            let cores: Vec<String> = (0..CORES)
                .map(|c| format!("{:.2}", ((i + c) * 13 % 10_000) as f64 / 100.0))
                .collect();
            insert.execute(rusqlite::params![
                host,
                seq,
                at - 3,
                at,
                (i * 37 % 1000) as f64 / 10.0,
                cores.join(","),
                1_000_000 + i as i64,
                (i % 1000) as i64,
                3600 + seq * 60,
                (i % 10) as f64 / 4.0,
                format!("node-{host}"),
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Central rows per sample: the sample, its cores and its family child rows.
fn rows_per_sample(server: &Server) -> Result<f64> {
    let mut conn = server.root()?;
    let mut rows = 0i64;
    let samples: Option<i64> = conn.query_first("SELECT COUNT(*) FROM edgemon.samples")?;
    for table in ["samples".to_string(), "sample_cores".to_string()]
        .into_iter()
        .chain(edgemon::sync::families::tables())
    {
        let n: Option<i64> = conn.query_first(format!("SELECT COUNT(*) FROM edgemon.{table}"))?;
        rows += n.unwrap_or(0);
    }
    Ok(rows as f64 / samples.unwrap_or(1).max(1) as f64)
}

/// Writes `n` samples with the metric families through the round writer (one round of all
/// hosts per transaction), as the daemon stores them.
fn generate_with_families(path: &Path, n: usize) -> Result<()> {
    use edgemon::collect::outcome::HostOutcome;
    let mut buffer = Buffer::open(path)?;
    let rounds = n / HOSTS;
    for round in 0..rounds {
        let at = T0 + round as i64 * 60_000;
        let outcomes: Vec<HostOutcome> = (0..HOSTS)
            .map(|h| {
                let i = round * HOSTS + h;
                HostOutcome {
                    host: format!("host-{h:03}"),
                    address: format!("bench@10.0.{}.{}:22", h / 250, h % 250),
                    started_at_ms: at,
                    duration: Duration::from_millis(3),
                    result: Ok(edgemon::report::Report {
                        version: 1,
                        collected_at_ms: at - 3,
                        cpu_percent: (i * 37 % 1000) as f64 / 10.0,
                        cores: (0..CORES)
                            .map(|c| ((i + c) * 13 % 10_000) as f64 / 100.0)
                            .collect(),
                        mem_used: 1_000_000 + i as u64,
                        mem_total: 8_000_000_000,
                        swap_used: (i % 1000) as u64,
                        swap_total: 2_000_000_000,
                        uptime_s: 3600 + round as u64 * 60,
                        boot_time_s: Some(1_699_990_000),
                        load: Some([(i % 10) as f64 / 4.0, 0.5, 0.25]),
                        hostname: Some(format!("node-{h}")),
                        os: Some("Debian 12".into()),
                        kernel: Some("6.1.0-18-amd64".into()),
                        extras: Vec::new(),
                        sections: edgemon::buffer::example_sections(h as u64, round as u64),
                    }),
                }
            })
            .collect();
        buffer.record_round(&outcomes, Duration::from_secs(1 << 40), |_, _| Ok(()))?;
    }
    Ok(())
}

/// Copies the drained rows out as tab-separated files (samples, cores and the family child
/// tables), then times the mariadb client loading them into an empty copy of the schema.
fn load_data_ceiling(server: &Server, dir: &Path, name: &str, order: &str) -> Result<f64> {
    let mut conn = server.root()?;
    let tag = name.replace(' ', "_");
    let db = format!("edgemon_load_{tag}");
    conn.query_drop(format!("CREATE DATABASE {db}"))?;
    let mut loads = String::from("SET time_zone = '+00:00';");
    let tables = ["samples".to_string(), "sample_cores".to_string()]
        .into_iter()
        .chain(edgemon::sync::families::tables());
    for table in tables {
        let file = dir.join(format!("{table}_{tag}.tsv"));
        // The table's whole primary key after `order`'s columns.
        let key: Vec<String> = conn.query(format!(
            "SELECT CAST(column_name AS CHAR) FROM information_schema.key_column_usage
             WHERE table_schema = 'edgemon' AND table_name = '{table}' AND constraint_name = 'PRIMARY'
             ORDER BY ordinal_position"
        ))?;
        let by = format!(
            "{order}, {}",
            key.iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        conn.query_drop(format!(
            "SELECT * FROM edgemon.{table} ORDER BY {by} INTO OUTFILE '{}'",
            file.display()
        ))?;
        conn.query_drop(format!("CREATE TABLE {db}.{table} LIKE edgemon.{table}"))?;
        loads.push_str(&format!(
            " LOAD DATA LOCAL INFILE '{}' INTO TABLE {table};",
            file.display()
        ));
    }
    for table in ["appliances", "hosts"] {
        conn.query_drop(format!("CREATE TABLE {db}.{table} LIKE edgemon.{table}"))?;
        conn.query_drop(format!(
            "INSERT INTO {db}.{table} SELECT * FROM edgemon.{table}"
        ))?;
    }
    let sql = loads;
    let start = Instant::now();
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "--local-infile=1",
            "-h",
            "127.0.0.1",
            "-u",
            "root",
            &db,
        ])
        .arg(format!("-P{}", server.port))
        .arg("-e")
        .arg(&sql)
        .output()
        .context("running the mariadb client")?;
    let elapsed = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("LOAD DATA failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let loaded: Option<i64> = conn.query_first(format!("SELECT COUNT(*) FROM {db}.samples"))?;
    let expected: Option<i64> = conn.query_first("SELECT COUNT(*) FROM edgemon.samples")?;
    anyhow::ensure!(
        loaded == expected,
        "LOAD DATA loaded {loaded:?} of {expected:?} rows"
    );
    Ok(elapsed)
}
