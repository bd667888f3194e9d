//! Pacing of sync against a real MariaDB: live rounds overtake a day's backlog (and a
//! central restore afterwards still gets back exactly what it lacks), a closed `sync.schedule`
//! window holds everything until it opens, and `sync.rate_limit` bounds batches and the rate.
//!
//! Assertions are on outcomes: which rows MySQL holds after which batch, rows per batch,
//! exact equality of the buffer and MySQL at the end, the completeness view empty. The one
//! wall-clock relation used (b) compares MySQL's own `synced_at` with the window's start.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use edgemon::buffer::{Buffer, now_ms};
use edgemon::collect::outcome::HostOutcome;
use edgemon::sync::SyncTask;
use edgemon::sync::pace::RateLimit;
use edgemon::sync::schedule::{Schedule, Zone, format_at};
use mysql::prelude::Queryable;

use crate::skip_or_fail;
use crate::support::mariadb::MariaDb;
use crate::support::{Edgemon, temp_dir, wait_until};
use crate::sync::{
    PATIENCE, assert_complete, buffer_config, count, drain, report, seed, sync_config, unsynced,
    write_config,
};

/// Central samples received by the appliance recently (the backlog's are from 2023).
const LIVE_SQL: &str = "SELECT COUNT(*) FROM samples WHERE received_at > '2025-01-01'";

/// Tables in the edgemon database: none until sync first connects (and applies the schema).
const TABLES_SQL: &str =
    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()";

/// Records one round of `hosts` (the names `seed` uses) received now.
fn live_round(path: &Path, hosts: usize, n: i64) {
    let mut buffer = Buffer::open(path).expect("open the buffer");
    let at = now_ms();
    let outcomes: Vec<HostOutcome> = (0..hosts)
        .map(|h| HostOutcome {
            host: format!("host-{h:03}"),
            address: format!("user@10.0.0.{h}:22"),
            started_at_ms: at,
            duration: Duration::from_millis(40),
            result: Ok(report(9_000_000 + n * 1000 + h as i64, at)),
        })
        .collect();
    buffer
        .record_round(&outcomes, Duration::from_secs(300), |_, _| Ok(()))
        .expect("record a live round");
}

#[test]
fn live_rounds_overtake_a_days_backlog_and_everything_arrives_exactly_once() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    let hosts = 4;
    // A day of rounds at one a minute, received long ago (the link was down), then "now".
    seed(&path, hosts, 0, 1440);
    live_round(&path, hosts, 0);
    let backlog = unsynced(&path);
    let mut config = sync_config(&db.url(), 200);
    config.interval = Duration::from_secs(60);
    let task = SyncTask::new(&config, &buffer_config(&path), "site-live");

    let mut batches = 0u64;
    let mut first = None;
    let mut second_seen = None;
    let report = task
        .drain(&AtomicBool::new(false), &mut |p| {
            batches += 1;
            let live = count(&db, LIVE_SQL);
            if batches == 1 {
                first = Some((count(&db, "SELECT COUNT(*) FROM samples"), live));
            }
            if batches == 5 {
                // A round collected while the drain runs.
                live_round(&path, hosts, 1);
            }
            if second_seen.is_none() && live == 2 * hosts as i64 {
                second_seen = Some((batches, p.remaining));
            }
        })
        .expect("drain");

    assert_eq!(
        first,
        Some((hosts as i64, hosts as i64)),
        "the first batch is the live round, alone"
    );
    let (seen_at, remaining) = second_seen.expect("the round collected during the drain arrived");
    // Recorded after batch 5; the pass notices it after the next backfill batch and sends it
    // in the batch after that, while most of the backlog is still to come.
    assert!(
        seen_at <= 7,
        "the live round arrived only after batch {seen_at}"
    );
    assert!(
        remaining > backlog / 2,
        "the live round arrived with only {remaining} of {backlog} samples left"
    );
    assert_eq!(report.live_samples, 2 * hosts as u64);
    assert!(
        report.batches > 10,
        "the backfill ran in {} batches",
        report.batches
    );
    assert_eq!(unsynced(&path), 0);
    assert_complete(&db, &path, "site-live");

    // A central restore from a backup taken mid-drain: host-000's backfill lacks its top,
    // below the live rows that had jumped ahead. The re-queue on the next connection finds
    // the hole below the stream split, not only above the newest row.
    let mut conn = db.conn().expect("connect");
    for table in ["sample_cores", "samples"] {
        conn.query_drop(format!(
            "DELETE t FROM {table} t JOIN hosts h ON h.id = t.host_id
             WHERE h.name = 'host-000' AND t.seq BETWEEN 1300 AND 1440"
        ))
        .expect("delete the top of the backfill stream");
    }
    let again = SyncTask::new(&config, &buffer_config(&path), "site-live");
    let report = drain(&again);
    assert_eq!(report.samples, 141, "{report:?}");
    assert_eq!(unsynced(&path), 0);
    assert_complete(&db, &path, "site-live");
}

fn hhmm(at_ms: i64) -> String {
    let minutes = at_ms.div_euclid(60_000).rem_euclid(1440);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[test]
fn a_closed_window_sends_nothing_status_names_it_and_the_backlog_drains_when_it_opens() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 3, 0, 100);
    // A window opening at a minute boundary 30 to 90 seconds from now, ten minutes long.
    let opens = (now_ms() + 30_000).div_euclid(60_000) * 60_000 + 60_000;
    let text = format!("{}-{}", hhmm(opens), hhmm(opens + 600_000));
    let config_path = write_config(
        dir.path(),
        "site-window",
        &path,
        &db.url(),
        &format!("schedule = \"{text}\"\ntimezone = \"UTC\""),
    );

    let status = Edgemon::new(dir.path())
        .args(["status", "--config"])
        .arg(&config_path)
        .stdout();
    let expected = format!(
        "sync paused by schedule, next window opens {}",
        format_at(opens, &Zone::Utc)
    );
    assert!(status.contains(&expected), "{expected:?} in:\n{status}");
    let json = Edgemon::new(dir.path())
        .args(["status", "--json", "--config"])
        .arg(&config_path)
        .stdout();
    assert!(
        json.contains(&format!("\"sync_paused_until\": {opens}")),
        "{json}"
    );
    let out = Edgemon::new(dir.path())
        .args(["sync", "--config"])
        .arg(&config_path)
        .stdout();
    assert!(
        out.contains("sync paused by schedule") && out.contains("--ignore-schedule"),
        "{out}"
    );
    assert_eq!(
        count(&db, TABLES_SQL),
        0,
        "sync touched MySQL outside the window"
    );

    // The daemon's sync loop with the same schedule.
    let mut config = sync_config(&db.url(), 100);
    config.schedule = Schedule::parse(&text).expect("the schedule parses");
    config.timezone = Zone::Utc;
    config.interval = Duration::from_secs(1);
    let task = SyncTask::new(&config, &buffer_config(&path), "site-window");
    let stop = edgemon::shutdown::Shutdown::new();
    let total = unsynced(&path);
    std::thread::scope(|s| {
        s.spawn(|| task.run(&stop));
        // Closed: the loop runs (retention, the pause recorded) and sends nothing.
        while now_ms() < opens - 3_000 {
            assert_eq!(
                count(&db, TABLES_SQL),
                0,
                "sync touched MySQL outside the window"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let drained = wait_until(PATIENCE + Duration::from_secs(90), || unsynced(&path) == 0);
        stop.fire();
        assert!(drained, "the backlog did not drain after the window opened");
    });
    assert_eq!(count(&db, "SELECT COUNT(*) FROM samples"), total as i64);
    let first_synced: i64 = count(
        &db,
        "SELECT CAST(UNIX_TIMESTAMP(MIN(synced_at)) * 1000 AS SIGNED) FROM samples",
    );
    assert!(
        first_synced >= opens - 1_000,
        "a sample reached MySQL at {first_synced}, before the window opened at {opens}"
    );
    assert_complete(&db, &path, "site-window");
}

#[test]
fn the_rate_cap_bounds_every_batch_and_the_average_rate() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 4, 0, 500);
    let mut config = sync_config(&db.url(), 500);
    config.interval = Duration::from_secs(60);
    config.rate_limit = RateLimit::parse("300 rows/s").expect("parses");
    let task = SyncTask::new(&config, &buffer_config(&path), "site-capped");
    let report = drain(&task);
    assert_eq!(unsynced(&path), 0);
    assert_complete(&db, &path, "site-capped");
    assert!(
        report.largest_batch <= 300,
        "a batch of {} rows under a cap of 300 rows/s",
        report.largest_batch
    );
    // The loop waits before each batch until the average is at or under the cap, so over the
    // whole drain it exceeds the cap by at most the last batch's share.
    let n = report.samples as f64;
    let bound = 300.0 * n / (n - report.largest_batch as f64);
    let rate = report.rows_per_s.expect("a rate");
    assert!(
        rate <= bound * 1.01,
        "{rate:.0} rows/s over {n} rows, bound {bound:.0}"
    );
}
