//! Sync against a real MariaDB started by the harness: round trips with every
//! field, MariaDB killed (kill -9) before, during and after batches, the
//! edgemon process killed during a large drain, clear errors for refused
//! credentials, a dropped table and a newer schema, quarantine of a row
//! MySQL refuses, and two appliances at once.
//!
//! Completeness is checked one to one: the buffer's samples and MySQL's are
//! rendered as canonical lines (identity and every value, per-core values
//! included), compared by count and SHA-256, and the `sequence_gaps` view
//! must be empty, and so must the completeness view's unexplained loss.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use edgemon::buffer::{Buffer, StatusReader, SyncQueue};
use edgemon::collect::outcome::{CollectError, ErrorClass, HostOutcome};
use edgemon::config::secret::Secret;
use edgemon::config::{BufferConfig, MinFree, SyncConfig};
use edgemon::report::Report;
use edgemon::sync::SyncTask;
use mysql::prelude::Queryable;
use sha2::{Digest, Sha256};

use crate::skip_or_fail;
use crate::support::mariadb::MariaDb;
use crate::support::{Edgemon, temp_dir, wait_until};

/// Generous: the machine has two cores and cargo runs tests in parallel.
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);
pub(crate) const T0: i64 = 1_700_000_000_000;

pub(crate) fn sync_config(url: &str, batch_size: usize) -> SyncConfig {
    SyncConfig {
        urls: vec![Secret::new(url)],
        interval: Duration::from_millis(200),
        batch_size,
        max_backoff: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
        schedule: edgemon::sync::schedule::Schedule::always(),
        timezone: edgemon::sync::schedule::Zone::Utc,
        rate_limit: edgemon::sync::pace::RateLimit::Off,
    }
}

/// `times` times: waits until sync commits more samples, then kills MariaDB with SIGKILL and
/// restarts it, so each kill lands while batches are flowing.
pub(crate) fn kill_while_rows_flow(db: &mut MariaDb, times: usize) {
    for _ in 0..times {
        let seen = db.sample_count().unwrap_or(0);
        assert!(
            wait_until(PATIENCE, || db.sample_count().is_some_and(|n| n > seen)),
            "sync never resumed"
        );
        db.kill9().expect("kill -9 MariaDB");
        db.restart().expect("restart");
    }
}

pub(crate) fn buffer_config(path: &Path) -> BufferConfig {
    BufferConfig {
        path: path.to_path_buf(),
        max_size: 1 << 40,
        max_unsynced_age: Duration::from_secs(100 * 365 * 86_400),
        keep_synced: Duration::from_secs(100 * 365 * 86_400),
        min_free: MinFree::Bytes(0),
    }
}

pub(crate) fn report(i: i64, at: i64) -> Report {
    Report {
        version: 1,
        collected_at_ms: at - (i % 7),
        cpu_percent: (i * 37 % 1000) as f64 / 10.0,
        cores: (0..8)
            .map(|c| ((i + c) * 13 % 10_000) as f64 / 100.0)
            .collect(),
        mem_used: 1_000_000 + i as u64,
        mem_total: 8_000_000_000,
        swap_used: i as u64 % 3,
        swap_total: 2_000_000_000,
        uptime_s: 3600 + i as u64,
        boot_time_s: Some(1_699_990_000),
        load: Some([0.5, (i % 10) as f64 / 4.0, 0.125]),
        hostname: Some(format!("node-{}", i % 3)),
        os: Some("Debian 12 \"bookworm\"".into()),
        kernel: Some("6.1.0-18-amd64".into()),
        extras: vec![("disk".into(), format!("/:{}% o'clock \\", i % 100))],
        // Three samples in four carry the metric families; the fourth is a 1.0 agent's.
        sections: if i % 4 == 3 {
            Vec::new()
        } else {
            edgemon::buffer::example_sections(i as u64 % 5, i as u64)
        },
    }
}

/// Records `rounds` rounds over `hosts` (every 5th round, the last host fails), starting at
/// round `from`.
pub(crate) fn seed(path: &Path, hosts: usize, from: i64, rounds: i64) {
    let mut buffer = Buffer::open(path).expect("open the buffer");
    for round in from..from + rounds {
        let at = T0 + round * 60_000;
        let outcomes: Vec<HostOutcome> = (0..hosts)
            .map(|h| HostOutcome {
                host: format!("host-{h:03}"),
                address: format!("user@10.0.0.{h}:22"),
                started_at_ms: at,
                duration: Duration::from_millis(40),
                result: if h + 1 == hosts && round % 5 == 4 {
                    Err(CollectError::new(
                        ErrorClass::Timeout,
                        format!("host-{h:03}: no answer in 10s"),
                    ))
                } else {
                    Ok(report(round * 1000 + h as i64, at))
                },
            })
            .collect();
        buffer
            .record_round(&outcomes, Duration::from_secs(300), |_, _| Ok(()))
            .expect("record a round");
    }
}

/// Canonical lines of every sample of the buffer that is not quarantined.
pub(crate) fn buffer_lines(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).expect("open the buffer file");
    let mut stmt = conn
        .prepare(
            "SELECT h.name, s.seq, s.collected_at, s.received_at, s.clock_skewed, s.cpu, s.mem_used,
                    s.mem_total, s.swap_used, s.swap_total, s.uptime_s, s.boot_time_s, s.load1, s.load5,
                    s.load15, s.hostname, s.os, s.kernel, s.extras, s.cores
             FROM samples s JOIN hosts h ON h.id = s.host_id WHERE s.sync_state IN (0, 1)",
        )
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| {
            let cores: String = r.get(19)?;
            let cores: Vec<f64> = cores
                .split(',')
                .map(|c| c.parse().expect("core value"))
                .collect();
            Ok(line(
                r.get(0)?,
                [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
                r.get(5)?,
                [r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?],
                r.get::<_, Option<i64>>(11)?.map(|b| b * 1000),
                [r.get(12)?, r.get(13)?, r.get(14)?],
                [r.get(15)?, r.get(16)?, r.get(17)?, r.get(18)?],
                &cores,
            ))
        })
        .expect("query");
    rows.collect::<Result<_, _>>().expect("rows")
}

/// Canonical lines of every sample of `appliance` in MySQL.
fn central_lines(db: &MariaDb, appliance: &str) -> Vec<String> {
    central_lines_of(db, appliance, None)
}

/// Canonical lines of every sample of `appliance` in MySQL, of one buffer `epoch` or all.
pub(crate) fn central_lines_of(db: &MariaDb, appliance: &str, epoch: Option<i64>) -> Vec<String> {
    central_lines_on(&mut db.conn().expect("connect"), appliance, epoch)
}

/// [`central_lines_of`] over a given connection (e.g. one Galera node's).
pub(crate) fn central_lines_on(
    conn: &mut mysql::Conn,
    appliance: &str,
    epoch: Option<i64>,
) -> Vec<String> {
    conn.query_drop("SET time_zone = '+00:00'").expect("utc");
    let ms = |c: &str| format!("CAST(ROUND(UNIX_TIMESTAMP({c}) * 1000) AS SIGNED)");
    let of_epoch = |t: &str| match epoch {
        Some(e) => format!(" AND {t}.epoch = {e}"),
        None => String::new(),
    };
    let cores: Vec<(i64, String, i64, f64)> = conn
        .exec(
            format!(
                "SELECT c.epoch, h.name, c.seq, c.cpu FROM sample_cores c JOIN hosts h ON h.id = c.host_id
                 JOIN appliances a ON a.id = c.appliance_id WHERE a.name = ?{} ORDER BY c.epoch, h.name, c.seq, c.core",
                of_epoch("c")
            ),
            (appliance,),
        )
        .expect("cores");
    let mut by_sample: std::collections::HashMap<(i64, String, i64), Vec<f64>> = Default::default();
    for (epoch, host, seq, cpu) in cores {
        by_sample.entry((epoch, host, seq)).or_default().push(cpu);
    }
    let query = format!(
        "SELECT h.name, s.seq, {}, {}, s.clock_skewed, s.cpu, s.mem_used, s.mem_total, s.swap_used,
                s.swap_total, s.uptime_s, {}, s.load1, s.load5, s.load15, s.hostname, s.os, s.kernel, s.extras,
                s.epoch
         FROM samples s JOIN hosts h ON h.id = s.host_id JOIN appliances a ON a.id = s.appliance_id
         WHERE a.name = ?{}",
        ms("s.collected_at"),
        ms("s.received_at"),
        ms("s.boot_time"),
        of_epoch("s")
    );
    let rows: Vec<mysql::Row> = conn.exec(query, (appliance,)).expect("samples");
    rows.into_iter()
        .map(|r| {
            let get = |i: usize| -> Option<i64> { r.get::<Option<i64>, _>(i).flatten() };
            let f = |i: usize| -> Option<f64> { r.get::<Option<f64>, _>(i).flatten() };
            let s = |i: usize| -> Option<String> { r.get::<Option<String>, _>(i).flatten() };
            let host = s(0).unwrap_or_default();
            let seq = get(1).unwrap_or_default();
            let epoch = get(19).unwrap_or_default();
            let cores = by_sample
                .remove(&(epoch, host.clone(), seq))
                .unwrap_or_default();
            line(
                host,
                [
                    seq,
                    get(2).unwrap_or(-1),
                    get(3).unwrap_or(-1),
                    get(4).unwrap_or(-1),
                ],
                f(5).unwrap_or(f64::NAN),
                [get(6), get(7), get(8), get(9), get(10)].map(|v| v.unwrap_or(-1)),
                get(11),
                [f(12), f(13), f(14)],
                [s(15), s(16), s(17), s(18)],
                &cores,
            )
        })
        .collect()
}

#[allow(clippy::too_many_arguments)] // one canonical rendering for both sides, column by column
fn line(
    host: String,
    ids: [i64; 4],
    cpu: f64,
    sizes: [i64; 5],
    boot_ms: Option<i64>,
    load: [Option<f64>; 3],
    texts: [Option<String>; 4],
    cores: &[f64],
) -> String {
    format!("{host}|{ids:?}|{cpu:?}|{sizes:?}|{boot_ms:?}|{load:?}|{texts:?}|{cores:?}")
}

/// (count, SHA-256 of the sorted lines).
pub(crate) fn digest(mut lines: Vec<String>) -> (usize, String) {
    lines.sort();
    let mut hash = Sha256::new();
    for l in &lines {
        hash.update(l.as_bytes());
        hash.update(b"\n");
    }
    (lines.len(), hex::encode(hash.finalize()))
}

pub(crate) fn count(db: &MariaDb, sql: &str) -> i64 {
    let mut conn = db.conn().expect("connect");
    conn.query_first::<i64, _>(sql).expect("count").unwrap_or(0)
}

/// Runs `edgemon sync` on `config` in `dir` until the buffer is drained, as an operator
/// would after an outage, and asserts that it reported what was left.
pub(crate) fn sync_now(dir: &Path, config: &Path) {
    let out = Edgemon::new(dir)
        .args(["sync", "--config"])
        .arg(config)
        .stdout();
    assert!(out.contains("unsynced left"), "{out}");
}

/// MySQL holds exactly the buffer's samples of `appliance`, and no unexplained gap.
pub(crate) fn assert_complete(db: &MariaDb, buffer: &Path, appliance: &str) {
    let local = digest(buffer_lines(buffer));
    let central = digest(central_lines(db, appliance));
    assert!(local.0 > 0);
    assert_eq!(
        central, local,
        "MySQL differs from the buffer for appliance {appliance}"
    );
    let mut conn = db.conn().expect("connect");
    let gaps: Vec<mysql::Row> = conn.query("SELECT * FROM sequence_gaps").expect("gap view");
    assert!(gaps.is_empty(), "unexplained sequence gaps: {gaps:?}");
    assert_eq!(
        unexplained(db, appliance),
        0,
        "the completeness view shows loss for {appliance}"
    );
    crate::families::assert_families_complete(db, buffer, appliance);
}

/// Sum of the completeness view's `unexplained` over `appliance`'s rows.
pub(crate) fn unexplained(db: &MariaDb, appliance: &str) -> i64 {
    let mut conn = db.conn().expect("connect");
    conn.exec_first::<i64, _, _>(
        "SELECT CAST(COALESCE(SUM(unexplained), 0) AS SIGNED) FROM completeness WHERE appliance = ?",
        (appliance,),
    )
    .expect("completeness view")
    .unwrap_or(0)
}

pub(crate) fn unsynced(path: &Path) -> u64 {
    SyncQueue::open(path)
        .expect("open")
        .unsynced_depth()
        .expect("depth")
        .0
}

pub(crate) fn drain(task: &SyncTask) -> edgemon::sync::PassReport {
    task.drain(&AtomicBool::new(false), &mut |_| {})
        .expect("drain")
}

#[test]
fn a_round_trip_keeps_every_field_and_quarantines_only_the_refused_row() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 4, 0, 10);
    // One sample MySQL must refuse (hostname longer than VARCHAR(255)), amid good ones.
    let mut buffer = Buffer::open(&path).expect("open");
    let mut bad = report(99, T0);
    bad.hostname = Some("x".repeat(300));
    let outcome = |r: Report| HostOutcome {
        host: "host-000".into(),
        address: "user@10.0.0.0:22".into(),
        started_at_ms: T0 + 11 * 60_000,
        duration: Duration::ZERO,
        result: Ok(r),
    };
    buffer
        .record_round(&[outcome(bad)], Duration::from_secs(300), |_, _| Ok(()))
        .expect("bad row");
    buffer
        .record_round(
            &[outcome(report(100, T0))],
            Duration::from_secs(300),
            |_, _| Ok(()),
        )
        .expect("row");
    let raw = rusqlite::Connection::open(&path).expect("open raw");
    raw.execute(
        "INSERT INTO alert_events (host_id, rule, kind, value, threshold, at, message)
         VALUES (1, 'cpu', 'firing', 97.5, 95.0, ?1, 'host-000: cpu 97.5% > 95%')",
        [T0],
    )
    .expect("alert event");

    let task = SyncTask::new(&sync_config(&db.url(), 7), &buffer_config(&path), "site-a");
    let report = drain(&task);
    assert_eq!(report.quarantined, 1);
    assert_eq!(report.samples, 4 * 10 - 2 + 2 - 1);
    assert_eq!(unsynced(&path), 0);
    assert_complete(&db, &path, "site-a");

    let mut conn = db.conn().expect("connect");
    conn.query_drop("SET time_zone = '+00:00'").expect("utc");
    let row: Option<(String, String, String, String, i64)> = conn
        .query_first(
            "SELECT CAST(collected_at AS CHAR), CAST(boot_time AS CHAR), CAST(extras AS CHAR), os,
                    (SELECT COUNT(*) FROM sample_cores c WHERE c.host_id = s.host_id AND c.seq = s.seq)
             FROM samples s WHERE seq = 1 AND host_id = (SELECT id FROM hosts WHERE name = 'host-000')",
        )
        .expect("query");
    let (collected, boot, extras, os, cores) = row.expect("sample 1 of host-000");
    assert_eq!(collected, "2023-11-14 22:13:20.000");
    assert_eq!(boot, "2023-11-14 19:26:40");
    assert_eq!(extras, r#"{"disk":"/:0% o'clock \\"}"#);
    assert_eq!(os, "Debian 12 \"bookworm\"");
    assert_eq!(cores, 8);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM collection_errors WHERE class = 'timeout'"
        ),
        2
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM alert_events WHERE kind = 'firing' AND value = 97.5"
        ),
        1
    );
    // The refused sample is explained centrally by a drop record carrying MySQL's message.
    let reason: Option<String> = conn
        .query_first("SELECT reason FROM drops WHERE first_seq = 11 AND count = 1")
        .expect("drop");
    let reason = reason.expect("a drop record for the quarantined sample");
    assert!(
        reason.contains("quarantined") && reason.contains("hostname"),
        "{reason}"
    );
    let status = StatusReader::open(&path)
        .expect("open")
        .status()
        .expect("status");
    assert_eq!(status.quarantined, 1);
    assert!(status.last_sync_at.is_some() && status.last_sync_error.is_none());

    // Sending everything again changes nothing: every insert is idempotent.
    let raw = rusqlite::Connection::open(&path).expect("open raw");
    raw.execute("UPDATE samples SET sync_state = 0 WHERE sync_state = 1", [])
        .expect("reset");
    raw.execute("UPDATE collection_errors SET sync_state = 0", [])
        .expect("reset");
    let again = drain(&task);
    assert_eq!(again.samples, report.samples);
    assert_complete(&db, &path, "site-a");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM collection_errors"), 2);
}

#[test]
fn mariadb_killed_before_during_and_after_batches_loses_and_doubles_nothing() {
    let mut db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 10, 0, 1000);
    let task = SyncTask::new(&sync_config(&db.url(), 10), &buffer_config(&path), "site-k");
    let stop = edgemon::shutdown::Shutdown::new();
    std::thread::scope(|scope| {
        // Before: the server dies before the first batch; the task backs off meanwhile.
        db.kill9().expect("kill -9 MariaDB");
        let runner = scope.spawn(|| task.run(&stop));
        let refused = wait_until(PATIENCE, || {
            StatusReader::open(&path)
                .ok()
                .and_then(|b| b.sync_status().ok())
                .and_then(|s| s.last_error)
                .is_some_and(|e| e.contains("cannot reach MySQL"))
        });
        assert!(refused, "the task never noticed the dead server");
        db.restart().expect("restart");
        // During: kill it while batches are flowing, twice.
        kill_while_rows_flow(&mut db, 2);
        // After: let it drain, kill it, add samples, and let it drain again.
        assert!(
            wait_until(PATIENCE * 3, || unsynced(&path) == 0),
            "backlog never drained"
        );
        db.kill9().expect("kill -9 MariaDB");
        seed(&path, 10, 1000, 20);
        db.restart().expect("restart");
        assert!(
            wait_until(PATIENCE, || unsynced(&path) == 0),
            "new samples never synced"
        );
        stop.fire();
        runner.join().expect("sync loop panicked");
    });
    assert_complete(&db, &path, "site-k");
}

/// A daemon config for appliance `id`: the local host, the buffer at `buffer`, MySQL at `url`
/// (timeout 10 s) with `sync_extra` lines added to `[sync]`, and a `[mail]` section.
pub(crate) fn write_config(
    dir: &Path,
    id: &str,
    buffer: &Path,
    url: &str,
    sync_extra: &str,
) -> PathBuf {
    let config = dir.join("edgemon.toml");
    std::fs::write(
        &config,
        format!(
            r#"[appliance]
id = "{id}"
data_dir = "{data}"

[[hosts]]
name = "localhost"
transport = "local"

[buffer]
path = "{buffer}"

[sync]
url = "{url}"
timeout = "10s"
{sync_extra}

[mail]
from = "edgemon@localhost"
recipients = ["root@localhost"]
"#,
            data = dir.join("data").display(),
            buffer = buffer.display(),
        ),
    )
    .expect("write the config");
    config
}

#[test]
fn edgemon_killed_during_a_large_drain_resumes_without_loss_or_duplicates() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 50, 0, 1000);
    let config = write_config(
        dir.path(),
        "site-crash",
        &path,
        &db.url(),
        "batch_size = 50",
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edgemon"))
        .args(["sync", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start edgemon sync");
    let total: i64 = 50 * 1000 - 1000 / 5;
    let mid = wait_until(PATIENCE, || db.sample_count().is_some_and(|n| n > 2000));
    child.kill().expect("kill -9 edgemon");
    child.wait().expect("reap edgemon");
    assert!(mid, "the drain never got going");
    let partial = count(&db, "SELECT COUNT(*) FROM samples");
    assert!(
        partial < total,
        "the drain finished before the kill ({partial} rows)"
    );

    sync_now(dir.path(), &config);
    assert_eq!(unsynced(&path), 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM samples"), total);
    assert_complete(&db, &path, "site-crash");
}

#[test]
fn refused_credentials_an_unreachable_server_a_dropped_table_and_a_newer_schema_are_clear() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 2, 0, 5);
    let port = db.port();
    let server = format!("127.0.0.1:{port}");

    let wrong = format!("mysql://edgemon:wrong@127.0.0.1:{port}/edgemon");
    let config = write_config(dir.path(), "site-crash", &path, &wrong, "batch_size = 100");
    let out = Edgemon::new(dir.path())
        .args(["sync", "--config"])
        .arg(&config)
        .assert_err();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&server) && stderr.contains("refused user 'edgemon'"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong"), "the password leaked: {stderr}");

    let closed = crate::support::free_port();
    let config = write_config(
        dir.path(),
        "site-crash",
        &path,
        &format!("mysql://edgemon:edgemon@127.0.0.1:{closed}/edgemon"),
        "batch_size = 100",
    );
    let out = Edgemon::new(dir.path())
        .args(["sync", "--config"])
        .arg(&config)
        .assert_err();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot reach MySQL at 127.0.0.1:{closed}")),
        "{stderr}"
    );
    assert_eq!(unsynced(&path), 9);

    let task = SyncTask::new(
        &sync_config(&db.url(), 100),
        &buffer_config(&path),
        "site-e",
    );
    drain(&task);
    db.conn()
        .expect("connect")
        .query_drop("DROP TABLE sample_cores")
        .expect("drop");
    seed(&path, 2, 5, 1);
    let fresh = SyncTask::new(
        &sync_config(&db.url(), 100),
        &buffer_config(&path),
        "site-e",
    );
    let err = fresh
        .drain(&AtomicBool::new(false), &mut |_| {})
        .expect_err("a dropped table")
        .to_string();
    assert!(
        err.contains("sample_cores") && err.contains("missing"),
        "{err}"
    );
    // The running task's connection finds out at the insert, just as clearly.
    let err = task
        .drain(&AtomicBool::new(false), &mut |_| {})
        .expect_err("a dropped table")
        .to_string();
    assert!(
        err.contains("sample_cores") && err.contains("doesn't exist"),
        "{err}"
    );
    assert_eq!(unsynced(&path), 2, "the samples stay buffered");
    let status = StatusReader::open(&path)
        .expect("open")
        .status()
        .expect("status");
    assert!(
        status
            .last_sync_error
            .is_some_and(|e| e.contains("sample_cores"))
    );

    db.conn()
        .expect("connect")
        .query_drop("INSERT INTO schema_version (version, applied_by) VALUES (5, 'future')")
        .expect("v5");
    let err = fresh
        .drain(&AtomicBool::new(false), &mut |_| {})
        .expect_err("a newer schema")
        .to_string();
    assert!(err.contains("version 5 is newer"), "{err}");
}

#[test]
fn two_appliances_sync_into_one_database_at_once_without_colliding() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let paths = [dir.path().join("a.sqlite"), dir.path().join("b.sqlite")];
    // Same host names and sequence numbers on both: only the appliance tells them apart.
    for path in &paths {
        seed(path, 5, 0, 200);
    }
    std::thread::scope(|scope| {
        for (path, name) in paths.iter().zip(["site-1", "site-2"]) {
            let url = db.url();
            scope.spawn(move || {
                let task = SyncTask::new(&sync_config(&url, 25), &buffer_config(path), name);
                drain(&task)
            });
        }
    });
    for (path, name) in paths.iter().zip(["site-1", "site-2"]) {
        assert_eq!(unsynced(path), 0);
        assert_complete(&db, path, name);
    }
    assert_eq!(count(&db, "SELECT COUNT(*) FROM hosts"), 10);
}

/// The issue's "done when": the real daemon collects (local transport, two
/// hosts, one-second rounds) and syncs while MariaDB is killed with kill -9 in
/// the middle and restarted; after SIGTERM, `edgemon sync` brings MySQL to
/// exactly the buffer's samples, and the gap view is empty.
#[test]
fn a_mariadb_outage_during_collection_ends_with_mysql_equal_to_the_buffer() {
    let mut db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let buffer = dir.path().join("buffer.sqlite");
    let config = dir.path().join("edgemon.toml");
    let metrics_port = crate::support::free_port();
    std::fs::write(
        &config,
        format!(
            "[appliance]\nid = \"site-outage\"\ndata_dir = \"{data}\"\n\n\
             [collect]\ninterval = \"1s\"\n\n\
             [[hosts]]\nname = \"self-a\"\ntransport = \"local\"\n\n\
             [[hosts]]\nname = \"self-b\"\ntransport = \"local\"\n\n\
             [buffer]\npath = \"{buffer}\"\n\n\
             [sync]\nurl = \"{url}\"\ninterval = \"1s\"\nbatch_size = 3\nmax_backoff = \"2s\"\ntimeout = \"5s\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n",
            data = dir.path().join("data").display(),
            buffer = buffer.display(),
            url = db.url(),
            metrics = metrics_port,
        ),
    )
    .expect("write the config");
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_edgemon"))
        .args(["run", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start edgemon run");
    let central = |db: &MariaDb| db.sample_count().unwrap_or(0);
    assert!(
        wait_until(PATIENCE, || central(&db) >= 4),
        "nothing reached MySQL"
    );

    db.kill9().expect("kill -9 MariaDB");
    let stored_at_kill = StatusReader::open(&buffer)
        .expect("open")
        .status()
        .expect("status")
        .samples;
    // Collection goes on while MySQL is down.
    assert!(
        wait_until(PATIENCE, || {
            StatusReader::open(&buffer)
                .and_then(|b| b.status())
                .is_ok_and(|s| s.samples >= stored_at_kill + 6)
        }),
        "collection stalled while MySQL was down"
    );
    db.restart().expect("restart MariaDB");
    let synced_after_restart = central(&db);
    assert!(
        wait_until(PATIENCE, || central(&db) > synced_after_restart),
        "sync did not resume after the restart"
    );
    // /metrics counts the rows that reached MySQL and the passes the outage broke.
    let counted = |name: &str| {
        crate::daemon::http_get(metrics_port, "/metrics")
            .and_then(|page| crate::daemon::metric(&page, name))
    };
    assert!(
        wait_until(PATIENCE, || counted("edgemon_sync_rows_total")
            .is_some_and(|r| r >= 4.0)),
        "sync rows are not counted on /metrics"
    );
    assert!(
        counted("edgemon_sync_errors_total").is_some_and(|e| e >= 1.0),
        "the outage's sync errors are not counted on /metrics"
    );

    let pid = daemon.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = daemon.wait().expect("reap edgemon run");
    assert!(status.success(), "edgemon run exited with {status}");

    sync_now(dir.path(), &config);
    assert_eq!(unsynced(&buffer), 0);
    assert_complete(&db, &buffer, "site-outage");
}
