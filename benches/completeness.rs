//! Completeness benchmark: the `completeness` view (watermarks plus one index
//! dive per host) against the schema-1 `sequence_gaps` window query, over the
//! same N central samples, and the per-host `sequence_gaps` drill-down
//! filtered to one host. The samples are generated server-side (MariaDB's
//! `seq_1_to_N` sequence engine) in a throwaway MariaDB, with planted loss
//! the views must find: silent holes in one host, a vanished tail in another,
//! a whole host gone, and a recorded drop that must not count. Results go to
//! stdout; see BENCHMARKS.md.
//!
//! Run: `cargo bench --bench completeness` (N = 10,000,000, 3 runs of each
//! query, median reported); `cargo test --all-targets` runs it as a smoke test
//! (200,000 samples, one run, the same checks of the planted loss); `EDGEMON_BENCH_SAMPLES=200000` for a quick run,
//! `EDGEMON_BENCH_RUNS` for the run count. Needs mariadbd and
//! mariadb-install-db; the server runs on a free 127.0.0.1 port and is
//! killed at the end. Nothing touches the system instance on port 3306.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use edgemon::config::secret::Secret;
use edgemon::sync::central::Central;
use mysql::Conn;
use mysql::prelude::Queryable;

#[path = "support/mariadb.rs"]
mod mariadb;
use mariadb::Server;

const HOSTS: i64 = 100;
const EPOCH: i64 = 0x5eed_cafe;
/// Host 7 misses every seq ending in 500 (never inserted, never dropped).
const HOLES_HOST: i64 = 7;
/// Host 8 lost its newest 50 rows after they were stored (a restore from an older backup).
const TAIL_HOST: i64 = 8;
const TAIL: i64 = 50;
/// Host 9 lost every row after they were stored (deleted).
const GONE_HOST: i64 = 9;
/// Host 10 misses seq 1000..=1099, explained by a drops row.
const DROP_HOST: i64 = 10;

fn main() -> Result<()> {
    // Under `cargo test --all-targets` (no --bench) this is a smoke run: the smallest data set
    // that holds the planted loss, one run of each query, the same checks of what is found.
    let bench = std::env::args().any(|a| a == "--bench");
    let (default_n, default_runs) = if bench { (10_000_000, 3) } else { (0, 1) };
    let n = env_or("EDGEMON_BENCH_SAMPLES", default_n).max(HOSTS * 2000);
    let runs = env_or("EDGEMON_BENCH_RUNS", default_runs).max(1) as usize;
    let per_host = n / HOSTS;
    let dir = tempfile::Builder::new()
        .prefix("edgemon-bench-")
        .tempdir()?;
    let server = Server::start(
        dir.path(),
        &[
            "--innodb-buffer-pool-size=1G",
            "--innodb-log-file-size=512M",
            "--innodb-flush-log-at-trx-commit=2",
            "--performance-schema=OFF",
        ],
    )?;
    let url = format!("mysql://root@127.0.0.1:{}/edgemon", server.port);
    // The real schema, applied by edgemon itself.
    drop(Central::connect(
        &Secret::new(url.clone()),
        Duration::from_secs(600),
        Duration::from_secs(600),
        "bench",
        EPOCH,
    )?);
    let mut conn = server.root()?;
    conn.query_drop("USE edgemon")?;
    let appliance: u32 = conn
        .query_first("SELECT id FROM appliances WHERE name = 'bench'")?
        .context("the bench appliance")?;

    let t = Instant::now();
    generate(&mut conn, appliance, per_host)?;
    println!(
        "generated {} samples ({HOSTS} hosts x {per_host}) in {:.1} s",
        per_host * HOSTS,
        t.elapsed().as_secs_f64()
    );
    conn.query_drop("ANALYZE TABLE samples, watermarks, drops, hosts")?;
    // Let InnoDB purge the planted deletes first, as it long has on a real server: until then
    // every index dive past a deleted tail walks the delete-marked records.
    let t = Instant::now();
    if let Err(err) = conn.query_drop("SET GLOBAL innodb_max_purge_lag_wait = 0") {
        println!("could not wait for the purge ({err}); figures include it");
    }
    println!(
        "purge of the planted deletes: {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The schema-1 view, verbatim, over the same rows (it ignores the epoch column).
    let v1 = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mysql-v1.sql"),
    )?;
    let old = v1
        .split(";\n")
        .find(|s| s.contains("CREATE OR REPLACE VIEW sequence_gaps"))
        .context("the v1 sequence_gaps view")?
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("VIEW sequence_gaps AS", "VIEW sequence_gaps_v1 AS");
    conn.query_drop(old)?;

    let host_id = |conn: &mut Conn, n: i64| -> Result<u32> {
        conn.query_first(format!(
            "SELECT id FROM hosts WHERE appliance_id = {appliance} AND name = 'host-{n:03}'"
        ))?
        .context("host id")
    };
    let holes = host_id(&mut conn, HOLES_HOST)?;
    let queries: Vec<(&str, String)> = vec![
        (
            "completeness view (all hosts)",
            "SELECT * FROM completeness".into(),
        ),
        (
            "schema-1 sequence_gaps (all hosts)",
            "SELECT * FROM sequence_gaps_v1".into(),
        ),
        (
            "sequence_gaps drill-down (one host)",
            format!(
                "SELECT * FROM sequence_gaps WHERE appliance_id = {appliance} AND epoch = {EPOCH} AND host_id = {holes}"
            ),
        ),
    ];
    let mut medians = Vec::new();
    for (name, query) in &queries {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let result: Vec<mysql::Row> = conn.query(query)?;
            times.push(t.elapsed().as_secs_f64());
            rows = result.len();
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{name}: median {:.3} s of {runs} ({}), {rows} rows",
            median,
            times
                .iter()
                .map(|t| format!("{t:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        medians.push(median);
    }
    println!(
        "ratio schema-1 sequence_gaps / completeness view: {:.0}x; drill-down / completeness: {:.1}x",
        medians[1] / medians[0],
        medians[2] / medians[0]
    );

    // The figures mean something only if the views find the planted loss.
    let loss: Vec<(String, i64, i64, i64)> = conn.query(
        "SELECT host, CAST(unsent AS SIGNED), CAST(vanished AS SIGNED), CAST(unexplained AS SIGNED)
         FROM completeness WHERE unexplained > 0 ORDER BY host",
    )?;
    let holes_missing = per_host / 1000 + i64::from(per_host % 1000 >= 500);
    let expected = vec![
        (
            format!("host-{HOLES_HOST:03}"),
            holes_missing,
            0,
            holes_missing,
        ),
        (format!("host-{TAIL_HOST:03}"), 0, TAIL, TAIL),
        (format!("host-{GONE_HOST:03}"), 0, per_host, per_host),
    ];
    ensure!(
        loss == expected,
        "completeness found {loss:?}, planted {expected:?}"
    );
    let gaps: Option<i64> = conn.query_first(format!(
        "SELECT COUNT(*) FROM sequence_gaps WHERE appliance_id = {appliance} AND epoch = {EPOCH} AND host_id = {holes}"
    ))?;
    ensure!(
        gaps == Some(holes_missing),
        "the drill-down found {gaps:?} gaps, planted {holes_missing}"
    );
    println!(
        "planted loss found: {loss:?}; drill-down: {holes_missing} gaps in host-{HOLES_HOST:03}"
    );
    Ok(())
}

/// Hosts, samples, a drop, and the watermarks sync would have written, all server-side.
fn generate(conn: &mut Conn, appliance: u32, per_host: i64) -> Result<()> {
    conn.query_drop(format!(
        "INSERT INTO hosts (appliance_id, name, address)
         SELECT {appliance}, CONCAT('host-', LPAD(seq, 3, '0')), CONCAT('10.0.0.', seq) FROM seq_1_to_{HOSTS}"
    ))?;
    let hosts: Vec<(u32, String)> = conn.query(format!(
        "SELECT id, CAST(name AS CHAR) FROM hosts WHERE appliance_id = {appliance} ORDER BY name"
    ))?;
    for (i, (id, _)) in hosts.iter().enumerate() {
        let n = i as i64 + 1;
        let filter = match n {
            HOLES_HOST => "WHERE seq % 1000 <> 500".to_string(),
            DROP_HOST => "WHERE seq NOT BETWEEN 1000 AND 1099".to_string(),
            _ => String::new(),
        };
        conn.query_drop(format!(
            "INSERT INTO samples (appliance_id, epoch, host_id, seq, collected_at, received_at, cpu,
                                  mem_used, mem_total, swap_used, swap_total, uptime_s, checksum)
             SELECT {appliance}, {EPOCH}, {id}, seq,
                    '2026-01-01 00:00:00' + INTERVAL seq MINUTE, '2026-01-01 00:00:01' + INTERVAL seq MINUTE,
                    seq % 100, 1000000 + seq, 8000000000, 0, 0, seq * 60, seq
               FROM seq_1_to_{per_host} {filter}"
        ))?;
        let stored: i64 = conn
            .query_first(format!(
                "SELECT COUNT(*) FROM samples WHERE appliance_id = {appliance} AND epoch = {EPOCH} AND host_id = {id}"
            ))?
            .unwrap_or(0);
        let dropped = if n == DROP_HOST { 100 } else { 0 };
        conn.query_drop(format!(
            "INSERT INTO watermarks (appliance_id, epoch, host_id, first_seq, last_seq, stored_last_seq,
                                     samples_stored, samples_dropped)
             VALUES ({appliance}, {EPOCH}, {id}, 1, {per_host}, {per_host}, {stored}, {dropped})"
        ))?;
        match n {
            DROP_HOST => conn.query_drop(format!(
                "INSERT INTO drops (appliance_id, epoch, local_id, host_id, first_seq, last_seq, count, reason, at)
                 VALUES ({appliance}, {EPOCH}, 1, {id}, 1000, 1099, 100, 'max_size', '2026-01-02 00:00:00')"
            ))?,
            TAIL_HOST => conn.query_drop(format!(
                "DELETE FROM samples WHERE appliance_id = {appliance} AND epoch = {EPOCH} AND host_id = {id}
                   AND seq > {}",
                per_host - TAIL
            ))?,
            GONE_HOST => conn.query_drop(format!(
                "DELETE FROM samples WHERE appliance_id = {appliance} AND epoch = {EPOCH} AND host_id = {id}"
            ))?,
            _ => {}
        }
    }
    Ok(())
}

fn env_or(key: &str, default: i64) -> i64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}
