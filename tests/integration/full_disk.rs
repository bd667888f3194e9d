//! A full disk never wedges the appliance: `edgemon run` (the real binary)
//! with its buffer on a 3 MiB tmpfs, hosts collected every second through the
//! local transport, and the harness MariaDB down until the disk is full.
//!
//! Each test asserts what an operator sees: MySQL ends with every sample the
//! buffer committed or a drop row explaining it (no duplicates, no silent
//! hole), collection goes on, drops are recorded for what could not be
//! stored, `edgemon status` says "disk full" in plain words, and every alert
//! line in the log (FIRING, REMINDER, ESCALATED, ...) belongs to an alert event that reached
//! MySQL (a round that did not commit announces nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use crate::local::status_json;
use crate::skip_or_fail;
use crate::support::daemon::Daemon;
use crate::support::mariadb::MariaDb;
use crate::support::tmpfs::Tmpfs;
use crate::support::{Edgemon, temp_dir, wait_for, wait_until};

const HOSTS: usize = 20;

/// Free space left beside the ballast when a test starts: a 3 MiB disk holding other data,
/// so that the buffer reaches the disk's end in a minute or two rather than ten.
const ROOM: u64 = 1 << 20;

/// Mounts the 3 MiB tmpfs and puts the ballast (an operator's other file) on it.
fn small_disk(dir: &Path) -> anyhow::Result<Tmpfs> {
    let disk = Tmpfs::mount(&dir.join("disk"), "3m")?;
    let ballast = disk.avail().saturating_sub(ROOM);
    std::fs::write(disk.path().join("ballast"), vec![0x5Au8; ballast as usize])?;
    Ok(disk)
}

/// The configuration: `HOSTS` local hosts every second, the buffer on `disk`, alert lines
/// all along (memory above 0%, a reminder every 5 s), quick sync retries.
fn config(dir: &Path, disk: &Path, db: &MariaDb, extra: &str) -> PathBuf {
    let mut text = format!(
        "[appliance]\nid = \"full\"\ndata_dir = \"{}\"\n\n\
         [collect]\ninterval = \"1s\"\n\n\
         [buffer]\npath = \"{}\"\nmax_size = \"1GiB\"\n{extra}\n\n\
         [sync]\nurl = \"{}\"\ninterval = \"1s\"\nmax_backoff = \"2s\"\ntimeout = \"5s\"\n\n\
         [alert]\nrepeat = \"5s\"\n\n\
         [defaults.alerts]\nmemory = \"0%\"\ncpu = \"off\"\nswap = \"off\"\n\n",
        dir.join("data").display(),
        disk.join("buffer.sqlite").display(),
        db.url()
    );
    for i in 0..HOSTS {
        text.push_str(&format!(
            "[[hosts]]\nname = \"full-{i}\"\ntransport = \"local\"\n\n"
        ));
    }
    let path = dir.join("edgemon.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `edgemon status --json`, or `None` before the daemon created the buffer.
fn status(dir: &Path, config: &Path) -> Option<serde_json::Value> {
    let out = Edgemon::new(dir)
        .args(["status", "--json", "--config"])
        .arg(config)
        .output();
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn status_text(dir: &Path, config: &Path) -> String {
    Edgemon::new(dir)
        .args(["status", "--config"])
        .arg(config)
        .stdout()
}

/// Per host: the sequence numbers in central `samples` (each once) and the central drop ranges.
struct Central {
    samples: BTreeMap<String, Vec<i64>>,
    drops: BTreeMap<String, Vec<(i64, i64, String)>>,
    events: BTreeMap<(String, String), usize>,
}

fn central(db: &MariaDb) -> Central {
    let mut conn = db.conn().expect("connect to MariaDB");
    let rows: Vec<(String, i64)> = conn
        .query("SELECT h.name, s.seq FROM samples s JOIN hosts h ON h.id = s.host_id ORDER BY 1, 2")
        .expect("read central samples");
    let mut samples: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (host, seq) in rows {
        samples.entry(host).or_default().push(seq);
    }
    let rows: Vec<(String, i64, i64, String)> = conn
        .query(
            "SELECT h.name, d.first_seq, d.last_seq, d.reason FROM drops d
             JOIN hosts h ON h.id = d.host_id ORDER BY 1, 2",
        )
        .expect("read central drops");
    let mut drops: BTreeMap<String, Vec<(i64, i64, String)>> = BTreeMap::new();
    for (host, first, last, reason) in rows {
        drops.entry(host).or_default().push((first, last, reason));
    }
    let rows: Vec<(String, String, i64)> = conn
        .query(
            "SELECT h.name, e.kind, COUNT(*) FROM alert_events e
             JOIN hosts h ON h.id = e.host_id GROUP BY 1, 2",
        )
        .expect("read central alert events");
    let events = rows
        .into_iter()
        .map(|(h, k, n)| ((h, k), n as usize))
        .collect();
    Central {
        samples,
        drops,
        events,
    }
}

/// The hosts' next sequence numbers in the buffer (read after the daemon stopped).
fn local_next_seq(buffer: &Path) -> BTreeMap<String, i64> {
    let conn =
        rusqlite::Connection::open_with_flags(buffer, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the buffer");
    let mut stmt = conn
        .prepare("SELECT name, next_seq FROM hosts")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("read hosts")
}

/// Every sequence number each host was given is in MySQL exactly once, as a sample or
/// inside exactly one drop range; returns the drop reasons seen.
fn assert_complete(central: &Central, next_seq: &BTreeMap<String, i64>) -> BTreeSet<String> {
    let mut reasons = BTreeSet::new();
    for (host, next) in next_seq {
        let mut seen: BTreeMap<i64, &str> = BTreeMap::new();
        for seq in central.samples.get(host).into_iter().flatten() {
            assert!(
                seen.insert(*seq, "sample").is_none(),
                "{host}: seq {seq} twice in MySQL samples"
            );
        }
        for (first, last, reason) in central.drops.get(host).into_iter().flatten() {
            reasons.insert(reason.clone());
            for seq in *first..=*last {
                if let Some(was) = seen.insert(seq, "drop") {
                    panic!(
                        "{host}: seq {seq} both a {was} and in drop {first}..={last} ({reason})"
                    );
                }
            }
        }
        let missing: Vec<i64> = (1..*next).filter(|s| !seen.contains_key(s)).collect();
        assert!(
            missing.is_empty(),
            "{host}: seqs {missing:?} neither in MySQL nor explained by a drop (next_seq {next})"
        );
        assert!(
            seen.keys().all(|s| *s < *next),
            "{host}: MySQL has seqs beyond the buffer's next_seq {next}"
        );
    }
    reasons
}

/// Alert transition lines per (host, kind) in the log: every kind (FIRING, REMINDER, and the
/// ESCALATED, DEESCALATED, RESOLVED of the filesystem alert on the test's own small disk), one
/// line per recorded event; the "not mailed" line beside a withheld one is not an event.
fn alert_lines(log: &str) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for line in log.lines() {
        if !line.contains(" edgemon::alert: ") || line.contains(" edgemon::alert: not mailed: ") {
            continue;
        }
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .map(str::to_string)
        };
        if let (Some(host), Some(kind)) = (field("host="), field("kind=")) {
            *counts.entry((host, kind)).or_default() += 1;
        }
    }
    counts
}

/// After the daemon stopped: one `edgemon sync` drains what is left, then MySQL must hold
/// every sample or its drop, and every logged alert line its event.
fn assert_the_end(
    dir: &Path,
    config: &Path,
    disk: &Tmpfs,
    db: &MariaDb,
    log: &str,
) -> BTreeSet<String> {
    Edgemon::new(dir)
        .args(["sync", "--config"])
        .arg(config)
        .stdout();
    let central = central(db);
    let next_seq = local_next_seq(&disk.path().join("buffer.sqlite"));
    assert_eq!(next_seq.len(), HOSTS);
    let reasons = assert_complete(&central, &next_seq);
    let lines = alert_lines(log);
    assert!(!lines.is_empty(), "no alert line in the log:\n{log}");
    assert_eq!(
        lines, central.events,
        "alert lines in the log (left) differ from the alert events that reached MySQL (right)"
    );
    reasons
}

#[test]
fn the_buffer_filling_its_disk_sheds_with_records_and_drains_when_mysql_returns() {
    let dir = temp_dir();
    let disk = skip_or_fail!(small_disk(dir.path()));
    let mut db = skip_or_fail!(MariaDb::start());
    db.stop().expect("stop MariaDB");
    let config = config(dir.path(), disk.path(), &db, "");
    let mut daemon = Daemon::start(dir.path(), &config);

    // MySQL is down: the buffer grows until the filesystem reaches buffer.min_free, where
    // retention sheds the oldest unsynced samples, each recorded.
    let status = wait_for(Duration::from_secs(300), || {
        let status = status(dir.path(), &config)?;
        (status["dropped"].as_i64()? > 0).then_some(status)
    })
    .unwrap_or_else(|| panic!("no drop after 300 s; log:\n{}", daemon.log()));
    assert!(
        status["disk"]["total_bytes"].as_u64() > Some(0),
        "{status:#}"
    );
    let text = status_text(dir.path(), &config);
    assert!(text.contains("MiB free of"), "{text}");
    // Collection goes on beside the shedding.
    let rounds = daemon.log_count("round recorded");
    assert!(
        wait_until(Duration::from_secs(60), || daemon
            .log_count("round recorded")
            >= rounds + 3),
        "collection stopped at the disk's bound; log:\n{}",
        daemon.log()
    );

    db.restart().expect("start MariaDB");
    let resumed = Instant::now();
    // Sync drains; collection goes on.
    let drained = wait_until(Duration::from_secs(120), || {
        status_json(dir.path(), &config)["last_sync_at"]
            .as_i64()
            .is_some()
    });
    assert!(
        drained,
        "no successful sync after MySQL returned; log:\n{}",
        daemon.log()
    );
    let rounds = daemon.log_count("round recorded");
    assert!(
        wait_until(Duration::from_secs(60), || daemon
            .log_count("round recorded")
            > rounds),
        "no round recorded after MySQL returned; log:\n{}",
        daemon.log()
    );
    eprintln!(
        "first sync and a new round {:?} after MySQL returned",
        resumed.elapsed()
    );
    daemon.stop();
    let log = daemon.log();
    let reasons = assert_the_end(dir.path(), &config, &disk, &db, &log);
    assert!(
        reasons.iter().any(|r| r.contains("buffer.min_free")),
        "no min_free drop in {reasons:?}"
    );
}

#[test]
fn a_disk_filled_by_another_file_stops_nothing_for_good() {
    let dir = temp_dir();
    let disk = skip_or_fail!(small_disk(dir.path()));
    let mut db = skip_or_fail!(MariaDb::start());
    db.stop().expect("stop MariaDB");
    let config = config(dir.path(), disk.path(), &db, "");
    let mut daemon = Daemon::start(dir.path(), &config);
    assert!(
        wait_until(Duration::from_secs(300), || {
            status(dir.path(), &config).and_then(|s| s["size_bytes"].as_u64()) >= Some(450_000)
        }),
        "the buffer never grew; log:\n{}",
        daemon.log()
    );

    // Another program fills the disk while the buffer holds plenty: nobody deletes anything,
    // and min_free shedding makes the room to go on.
    assert!(disk.fill("other-0.log") > 0);
    let rounds = daemon.log_count("round recorded");
    assert!(
        wait_until(Duration::from_secs(60), || daemon
            .log_count("round recorded")
            >= rounds + 3),
        "collection stopped on a disk filled by another file; log:\n{}",
        daemon.log()
    );

    // It fills whatever is freed (never the reserve's space) until nothing is left to shed.
    let mut fills = 1;
    let full = wait_for(Duration::from_secs(300), || {
        let status = status_json(dir.path(), &config);
        if status["disk"]["full"] == true && status["disk"]["unstored_samples"].as_u64()? > 0 {
            return Some(status);
        }
        if status["disk"]["reserve_in_place"] == true && disk.avail() > 0 {
            disk.fill(&format!("other-{fills}.log"));
            fills += 1;
        }
        std::thread::sleep(Duration::from_secs(1));
        None
    })
    .unwrap_or_else(|| panic!("status never said the disk is full; log:\n{}", daemon.log()));
    let hosts = full["hosts"].as_array().expect("hosts");
    assert!(
        hosts
            .iter()
            .any(|h| h["unstored_samples"].as_u64() > Some(0)),
        "{full:#}"
    );
    let text = status_text(dir.path(), &config);
    assert!(
        text.contains("DISK FULL") && text.contains("could not be stored"),
        "{text}"
    );
    let log = daemon.log();
    assert!(
        log.contains("round not stored") && log.contains("lost"),
        "a lost round does not say what was lost:\n{log}"
    );

    // MySQL returns: sync drains and marks on the full disk (through the reserve).
    db.restart().expect("start MariaDB");
    let synced = wait_until(Duration::from_secs(120), || {
        let status = status_json(dir.path(), &config);
        status["last_sync_at"].as_i64().is_some() && status["unsynced"] == 0
    });
    assert!(
        synced,
        "sync did not drain on the full disk; log:\n{}",
        daemon.log()
    );

    // The operator deletes the files: collection resumes on its own, and what could not be
    // stored is recorded as drops.
    let rounds = daemon.log_count("round recorded");
    for k in 0..fills {
        let _ = std::fs::remove_file(disk.path().join(format!("other-{k}.log")));
    }
    let made_room = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), || daemon
            .log_count("round recorded")
            > rounds),
        "no round recorded after room was made; log:\n{}",
        daemon.log()
    );
    eprintln!(
        "collection resumed {:?} after room was made",
        made_room.elapsed()
    );
    let status = status_json(dir.path(), &config);
    assert_eq!(status["disk"]["full"], false, "{status:#}");
    assert_eq!(status["disk"]["unstored_samples"], 0, "{status:#}");

    daemon.stop();
    let log = daemon.log();
    let reasons = assert_the_end(dir.path(), &config, &disk, &db, &log);
    assert!(
        reasons.iter().any(|r| r.contains("not stored")),
        "no drop for the samples that could not be stored: {reasons:?}"
    );
}
