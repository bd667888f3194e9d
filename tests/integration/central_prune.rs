//! Central retention against a real MariaDB: `edgemon central prune` deletes exactly the rows
//! older than the cutoff (samples with their per-core values, collection errors, drop records
//! whose range is below the horizon) and nothing newer nor of another appliance; the
//! completeness and sequence_gaps views show no loss afterwards; a later sync does not bring
//! pruned rows back (a host whose every central row was pruned, a journal emptied by the
//! prune); a second run is a no-op; `--dry-run` changes nothing and reports the counts; a run
//! stopped after a batch resumes; a late old sample is inserted and pruned by the next run; the
//! binary's output and exit codes, an unreachable server included.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgemon::buffer::Buffer;
use edgemon::collect::outcome::{CollectError, ErrorClass, HostOutcome};
use edgemon::config::secret::Secret;
use edgemon::sync::SyncTask;
use edgemon::sync::prune::{PruneOptions, prune};
use mysql::prelude::Queryable;

use crate::skip_or_fail;
use crate::support::mariadb::MariaDb;
use crate::support::{Edgemon, temp_dir};
use crate::sync::{
    T0, buffer_config, central_lines_of, count, digest, drain, report, sync_config, unexplained,
};

/// The cutoff falls between round 49 and round 50 (rounds are a minute apart).
const CUT_ROUND: i64 = 50;

/// Rounds 0..`rounds` of `hosts` hosts from round `from`. host-003 reports only before round 40
/// (then it is retired: every central row of it ends up pruned); host-002 fails every 5th
/// round before the cutoff (collection errors, all old); `bad` lists (round, host) samples
/// MySQL refuses (a hostname too long): quarantined, recorded as drops.
fn seed(path: &Path, hosts: usize, from: i64, rounds: i64, bad: &[(i64, usize)]) {
    let mut buffer = Buffer::open(path).expect("open the buffer");
    for round in from..from + rounds {
        let at = T0 + round * 60_000;
        let outcomes: Vec<HostOutcome> = (0..hosts)
            .filter(|&h| h != 3 || round < 40)
            .map(|h| HostOutcome {
                host: format!("host-{h:03}"),
                address: format!("user@10.0.0.{h}:22"),
                started_at_ms: at,
                duration: Duration::from_millis(40),
                result: if h == 2 && round % 5 == 4 && round < CUT_ROUND {
                    Err(CollectError::new(
                        ErrorClass::Timeout,
                        format!("host-{h:03}: no answer in 10s"),
                    ))
                } else {
                    let mut r = report(round * 1000 + h as i64, at);
                    if bad.contains(&(round, h)) {
                        r.hostname = Some("x".repeat(300));
                    }
                    Ok(r)
                },
            })
            .collect();
        buffer
            .record_round(&outcomes, Duration::from_secs(300), |_, _| Ok(()))
            .expect("record a round");
    }
}

/// `--older-than` putting the cutoff half a minute before round [`CUT_ROUND`].
fn age_arg() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let cutoff = T0 + CUT_ROUND * 60_000 - 30_000;
    format!("{}s", (now - cutoff) / 1000)
}

fn age() -> Duration {
    humantime::parse_duration(&age_arg()).expect("age")
}

/// The received time (ms) of a canonical line of `sync::central_lines_of`.
fn received_ms(line: &str) -> i64 {
    let ids = line.split('|').nth(1).expect("ids");
    ids.trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .nth(2)
        .expect("received")
        .parse()
        .expect("a number")
}

fn newer(lines: Vec<String>) -> Vec<String> {
    let cutoff = T0 + CUT_ROUND * 60_000 - 30_000;
    lines
        .into_iter()
        .filter(|l| received_ms(l) >= cutoff)
        .collect()
}

fn write_config(dir: &Path, id: &str, buffer: &Path, url: &str, extra: &str) -> PathBuf {
    let config = dir.join(format!("{id}.toml"));
    std::fs::write(
        &config,
        format!(
            "[appliance]\nid = \"{id}\"\ndata_dir = \"{data}\"\n\n\
             [[hosts]]\nname = \"localhost\"\ntransport = \"local\"\n\n\
             [buffer]\npath = \"{buffer}\"\nkeep_synced = \"3650d\"\nmax_unsynced_age = \"3650d\"\n\n\
             [sync]\nurl = \"{url}\"\ntimeout = \"10s\"\n{extra}",
            data = dir.join(format!("data-{id}")).display(),
            buffer = buffer.display(),
        ),
    )
    .expect("write the config");
    config
}

fn prune_cli(dir: &Path, config: &Path, extra: &[&str]) -> String {
    let mut cmd = Edgemon::new(dir);
    cmd.arg("central")
        .arg("prune")
        .arg("-c")
        .arg(config)
        .args(["--older-than", &age_arg()])
        .args(extra);
    cmd.stdout()
}

fn sync(db: &MariaDb, path: &Path, appliance: &str) -> edgemon::sync::PassReport {
    let mut buffer = buffer_config(path);
    buffer.keep_synced = Duration::from_secs(100 * 365 * 86_400);
    drain(&SyncTask::new(
        &sync_config(&db.url(), 50),
        &buffer,
        appliance,
    ))
}

/// No gap anywhere is unexplained, and no appliance shows loss.
fn assert_no_loss(db: &MariaDb, appliances: &[&str]) {
    let mut conn = db.conn().expect("connect");
    let gaps: Vec<mysql::Row> = conn.query("SELECT * FROM sequence_gaps").expect("gap view");
    assert!(gaps.is_empty(), "unexplained sequence gaps: {gaps:?}");
    for appliance in appliances {
        assert_eq!(
            unexplained(db, appliance),
            0,
            "the completeness view shows loss for {appliance}"
        );
    }
}

/// Every journal row and per-core value of the database, as (table, count, checksum), and
/// every sample line: what a no-op must leave alone.
fn fingerprint(db: &MariaDb) -> Vec<(String, i64, String)> {
    let mut conn = db.conn().expect("connect");
    let mut out: Vec<(String, i64, String)> = [
        (
            "collection_errors",
            "CONCAT_WS('|', appliance_id, epoch, local_id, at, message)",
        ),
        (
            "alert_events",
            "CONCAT_WS('|', appliance_id, epoch, local_id, at)",
        ),
        (
            "drops",
            "CONCAT_WS('|', appliance_id, epoch, local_id, first_seq, last_seq, at)",
        ),
        (
            "sample_cores",
            "CONCAT_WS('|', appliance_id, epoch, host_id, seq, core, cpu)",
        ),
        (
            "watermarks",
            "CONCAT_WS('|', appliance_id, epoch, host_id, pruned_through_seq, samples_pruned)",
        ),
    ]
    .iter()
    .map(|(table, row)| {
        let (n, sum): (i64, String) = conn
            .query_first(format!(
                "SELECT COUNT(*), CAST(COALESCE(SUM(CRC32({row})), 0) AS CHAR) FROM {table}"
            ))
            .expect("fingerprint")
            .expect("a row");
        (table.to_string(), n, sum)
    })
    .collect();
    for appliance in ["site-a", "site-b"] {
        let (n, sum) = digest(central_lines_of(db, appliance, None));
        out.push((appliance.to_string(), n as i64, sum));
    }
    out
}

#[test]
fn prune_removes_exactly_the_old_rows_explains_them_and_sync_never_resends_them() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let (a, b) = (dir.path().join("a.sqlite"), dir.path().join("b.sqlite"));
    // site-a: 4 hosts, 100 rounds; a refused sample before the cutoff (host-000, round 10) and
    // one after it (host-001, round 80).
    seed(&a, 4, 0, 100, &[(10, 0), (80, 1)]);
    seed(&b, 2, 0, 100, &[]);
    let synced = sync(&db, &a, "site-a");
    assert_eq!(synced.quarantined, 2);
    sync(&db, &b, "site-b");
    // The drop records are as old as the samples they explain (a drop is stamped when the
    // appliance recorded it; these stand for drops recorded long ago).
    db.conn()
        .expect("connect")
        .query_drop(format!(
            "UPDATE drops SET at = FROM_UNIXTIME({}) ",
            T0 / 1000
        ))
        .expect("age the drops");
    assert_no_loss(&db, &["site-a", "site-b"]);
    let site_a = central_lines_of(&db, "site-a", None);
    let site_b = digest(central_lines_of(&db, "site-b", None));
    // Before the cutoff: rounds 0..50 of hosts 0-2, 0..40 of host-003, less host-002's 10
    // failures and the refused sample: 150 + 40 - 10 - 1.
    let old = site_a.len() - newer(site_a.clone()).len();
    assert_eq!(old, 179);
    let kept = digest(newer(site_a));
    let config = write_config(dir.path(), "site-a", &a, &db.url(), "");

    // --dry-run counts and changes nothing.
    let before = fingerprint(&db);
    let out = prune_cli(dir.path(), &config, &["--dry-run"]);
    assert!(
        out.starts_with("dry run: would prune rows of appliance 'site-a' received before "),
        "{out}"
    );
    assert!(
        out.contains("samples: 179 (per-core values: 1432, family rows: 3614) over 4 host series; collection_errors: 10; alert_events: 0; drops: 1"),
        "{out}"
    );
    assert!(out.contains("nothing was changed"), "{out}");
    assert_eq!(fingerprint(&db), before, "--dry-run changed the database");

    // A run stopped after its first batch (as by Ctrl-C) keeps what it committed...
    let stop = AtomicBool::new(false);
    let options = PruneOptions {
        older_than: age(),
        batch_rows: 100,
        dry_run: false,
        all_appliances: false,
    };
    let first = prune(
        &[Secret::new(db.url())],
        Duration::from_secs(10),
        "site-a",
        &options,
        &stop,
        &mut |r| {
            if r.transactions >= 1 {
                stop.store(true, Ordering::Relaxed);
            }
        },
    )
    .expect("a stopped prune");
    assert!(first.stopped);
    assert_eq!(first.transactions, 1);
    assert!(
        first.samples > 0 && first.samples + first.cores + first.family_rows <= 100,
        "{first:?}"
    );
    assert_no_loss(&db, &["site-a", "site-b"]);

    // ... and the next run resumes and finishes, in transactions of at most --batch rows.
    let out = prune_cli(dir.path(), &config, &["--batch", "100"]);
    assert!(
        out.starts_with("pruned rows of appliance 'site-a' received before "),
        "{out}"
    );
    let rest = 179 - first.samples;
    assert!(
        out.contains(&format!(
            "samples: {rest} (per-core values: {}, family rows: {}) over 4 host series; collection_errors: 10; alert_events: 0; drops: 1",
            rest * 8,
            3614 - first.family_rows
        )),
        "{out}"
    );
    let largest: u64 = out
        .split("the largest ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the largest transaction");
    assert!(largest <= 100, "{out}");

    // Exactly the newer rows are left, unchanged; site-b untouched; no orphan per-core value.
    assert_eq!(digest(central_lines_of(&db, "site-a", None)), kept);
    assert_eq!(digest(central_lines_of(&db, "site-b", None)), site_b);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM sample_cores c WHERE NOT EXISTS (SELECT 1 FROM samples s
              WHERE s.appliance_id = c.appliance_id AND s.epoch = c.epoch AND s.host_id = c.host_id AND s.seq = c.seq)"
        ),
        0
    );
    for table in edgemon::sync::families::tables() {
        assert_eq!(
            count(
                &db,
                &format!(
                    "SELECT COUNT(*) FROM {table} c WHERE NOT EXISTS (SELECT 1 FROM samples s
                      WHERE s.appliance_id = c.appliance_id AND s.epoch = c.epoch AND s.host_id = c.host_id AND s.seq = c.seq)"
                )
            ),
            0,
            "orphan rows in {table}"
        );
    }
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM collection_errors e JOIN appliances a ON a.id = e.appliance_id WHERE a.name = 'site-a'"
        ),
        0
    );
    // The drop below host-000's horizon went; the one explaining host-001's newer gap stays.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM drops d JOIN appliances a ON a.id = d.appliance_id WHERE a.name = 'site-a'"
        ),
        1
    );
    assert_no_loss(&db, &["site-a", "site-b"]);
    assert_eq!(
        count(
            &db,
            "SELECT CAST(SUM(pruned) AS SIGNED) FROM completeness WHERE appliance = 'site-a'"
        ),
        179
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM completeness WHERE appliance = 'site-a' AND host = 'host-003' AND vanished = 0 AND pruned = 40"
        ),
        1,
        "host-003, every row pruned, shows as pruned, not vanished"
    );

    // A second run is a no-op.
    let after = fingerprint(&db);
    let out = prune_cli(dir.path(), &config, &[]);
    assert!(
        out.contains("samples: 0 (per-core values: 0, family rows: 0) over 4 host series; collection_errors: 0; alert_events: 0; drops: 0"),
        "{out}"
    );
    assert_eq!(fingerprint(&db), after);

    // A later sync (a fresh connection, which re-queues what MySQL lacks) sends only the new
    // rounds: not host-003's pruned rows, not the pruned collection errors.
    seed(&a, 3, 100, 5, &[]);
    let again = sync(&db, &a, "site-a");
    assert_eq!(again.samples, 15, "{again:?}");
    assert_eq!(again.journal_rows, 0, "{again:?}");
    assert_eq!(central_lines_of(&db, "site-a", None).len(), kept.0 + 15);
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM collection_errors e JOIN appliances a ON a.id = e.appliance_id WHERE a.name = 'site-a'"
        ),
        0
    );
    assert_no_loss(&db, &["site-a", "site-b"]);

    // A late appliance's old samples (a buffer back after a long outage) are inserted like any
    // others; the next prune of every appliance removes them and site-b's old rows.
    let c = dir.path().join("c.sqlite");
    seed(&c, 1, 0, 20, &[]);
    let late = sync(&db, &c, "site-c");
    assert_eq!(late.samples, 20);
    let out = prune_cli(dir.path(), &config, &["--all-appliances"]);
    assert!(
        out.starts_with("pruned rows of every appliance received before "),
        "{out}"
    );
    // site-b: 2 hosts x 50 rounds before the cutoff; site-c: 20.
    assert!(
        out.contains("samples: 120 (per-core values: 960, family rows: 3120) over 7 host series"),
        "{out}"
    );
    assert_eq!(
        digest(central_lines_of(&db, "site-b", None)),
        digest(newer(central_lines_of(&db, "site-b", None))),
    );
    assert_eq!(central_lines_of(&db, "site-b", None).len(), 100);
    assert!(central_lines_of(&db, "site-c", None).is_empty());
    assert_no_loss(&db, &["site-a", "site-b", "site-c"]);
}

#[test]
fn prune_refuses_an_unreachable_server_and_a_short_age_with_a_clear_error() {
    let dir = temp_dir();
    let buffer = dir.path().join("buffer.sqlite");
    let config = write_config(
        dir.path(),
        "site-x",
        &buffer,
        "mysql://edgemon:hunter2secret@127.0.0.1:1/edgemon",
        "",
    );
    let out = Edgemon::new(dir.path())
        .args(["central", "prune", "--older-than", "90d", "-c"])
        .arg(&config)
        .assert_exit_code(1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("central prune of appliance 'site-x' older than 90d failed")
            && stderr.contains("cannot reach MySQL at 127.0.0.1:1"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2secret"), "{stderr}");

    let out = Edgemon::new(dir.path())
        .args(["central", "prune", "--older-than", "10m", "-c"])
        .arg(&config)
        .assert_exit_code(1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("below 1h"), "{stderr}");

    // Usage errors: clap's exit code 2.
    Edgemon::new(dir.path())
        .args(["central", "prune", "-c"])
        .arg(&config)
        .assert_exit_code(2);
    Edgemon::new(dir.path())
        .args([
            "central",
            "prune",
            "--older-than",
            "90d",
            "--batch",
            "0",
            "-c",
        ])
        .arg(&config)
        .assert_exit_code(2);
}

#[test]
fn the_daemon_prunes_by_itself_when_central_retention_is_set() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("site-d.sqlite");
    seed(&path, 2, 0, 100, &[]);
    let config = write_config(
        dir.path(),
        "site-d",
        &path,
        &db.url(),
        &format!("\n[central]\nretention = \"{}\"\n", age_arg()),
    );
    // One round of each loop: collection (localhost), sync, mail, and the prune.
    Edgemon::new(dir.path())
        .args(["run", "--once", "-c"])
        .arg(&config)
        .stdout();
    let lines = central_lines_of(&db, "site-d", None);
    // 2 hosts x 50 newer rounds (host-002's failures are not in this seed) + the round of localhost.
    assert_eq!(lines.len(), 101);
    assert_eq!(newer(lines.clone()).len(), lines.len());
    assert_no_loss(&db, &["site-d"]);
}

#[test]
fn a_version_2_database_is_upgraded_in_place_and_its_rows_pruned_without_loss() {
    let db = skip_or_fail!(MariaDb::start());
    db.apply_fixture("mysql-v2.sql")
        .expect("apply the v2 schema");
    let mut conn = db.conn().expect("connect");
    // Rows as a version 2 edgemon wrote them: one host, 100 samples a minute apart (the first
    // 50 before the cutoff) with 2 cores each, and its watermark.
    conn.query_drop("SET time_zone = '+00:00'").expect("utc");
    for statement in [
        "INSERT INTO appliances (id, name) VALUES (1, 'site-v2')".to_string(),
        "INSERT INTO buffers (appliance_id, epoch) VALUES (1, 7)".to_string(),
        "INSERT INTO hosts (id, appliance_id, name, address) VALUES (1, 1, 'a', 'a:22')".to_string(),
        format!(
            "INSERT INTO samples (appliance_id, epoch, host_id, seq, collected_at, received_at, cpu, mem_used,
                                  mem_total, swap_used, swap_total, uptime_s, checksum)
             SELECT 1, 7, 1, s.seq, FROM_UNIXTIME({t}) + INTERVAL s.seq - 1 MINUTE,
                    FROM_UNIXTIME({t}) + INTERVAL s.seq - 1 MINUTE, 1, 1, 2, 0, 0, s.seq, s.seq
               FROM seq_1_to_100 s",
            t = T0 / 1000
        ),
        "INSERT INTO sample_cores (appliance_id, epoch, host_id, seq, core, cpu)
         SELECT 1, 7, 1, x.seq, c.seq - 1, c.seq FROM samples x JOIN seq_1_to_2 c".to_string(),
        "INSERT INTO watermarks (appliance_id, epoch, host_id, first_seq, last_seq, stored_last_seq, samples_stored)
         VALUES (1, 7, 1, 1, 100, 100, 100)".to_string(),
    ] {
        conn.query_drop(statement).expect("v2 rows");
    }
    let options = PruneOptions {
        older_than: age(),
        batch_rows: 30,
        dry_run: false,
        all_appliances: false,
    };
    let report = prune(
        &[Secret::new(db.url())],
        Duration::from_secs(10),
        "site-v2",
        &options,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .expect("upgrade and prune");
    assert_eq!(count(&db, "SELECT MAX(version) FROM schema_version"), 4);
    assert_eq!((report.samples, report.cores), (50, 100), "{report:?}");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM samples WHERE seq > 50"),
        50,
        "the newer rows stay"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM samples WHERE seq <= 50"),
        0
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM sample_cores"), 100);
    assert_eq!(
        count(
            &db,
            "SELECT pruned_through_seq FROM watermarks WHERE host_id = 1"
        ),
        50
    );
    assert_no_loss(&db, &["site-v2"]);
}
