//! Sync against a real MariaDB where the buffer and the central database disagree on purpose:
//! central retention (`edgemon central prune`) shorter than `buffer.keep_synced` below a
//! live-first stream split (issue 19, item 5).
//!
//! What the operator cares about: rows pruned centrally on purpose are never sent again on a
//! new connection, and the completeness counters (`samples_stored`, hence `unsent`) stay exact.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgemon::buffer::{Buffer, SyncQueue};
use edgemon::collect::outcome::HostOutcome;
use edgemon::config::secret::Secret;
use edgemon::sync::SyncTask;
use edgemon::sync::prune::{PruneOptions, prune};
use mysql::prelude::Queryable;

use crate::skip_or_fail;
use crate::support::mariadb::MariaDb;
use crate::support::temp_dir;
use crate::sync::{buffer_config, count, drain, report, sync_config, unexplained};

const HOSTS: usize = 3;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Records one round of every host received at `at`.
fn round(buffer: &mut Buffer, at: i64, i: i64) {
    let outcomes: Vec<HostOutcome> = (0..HOSTS)
        .map(|h| HostOutcome {
            host: format!("split-{h}"),
            address: format!("user@10.0.0.{h}:22"),
            started_at_ms: at,
            duration: Duration::from_millis(5),
            result: Ok(report(i * 10 + h as i64, at)),
        })
        .collect();
    buffer
        .record_round(&outcomes, Duration::from_secs(3650 * 86_400), |_, _| Ok(()))
        .expect("record a round");
}

/// Per host of the appliance: (stored, dropped, pruned, expected, unsent) from the watermarks
/// and the completeness view.
fn counters(db: &MariaDb, appliance: &str) -> Vec<(String, i64, i64, i64, i64, i64)> {
    let mut conn = db.conn().expect("connect");
    conn.exec(
        "SELECT host, CAST(stored AS SIGNED), CAST(dropped AS SIGNED), CAST(pruned AS SIGNED),
                CAST(expected AS SIGNED), CAST(unsent AS SIGNED)
         FROM completeness WHERE appliance = ? ORDER BY host",
        (appliance,),
    )
    .expect("completeness view")
}

/// A backlog of two days drained live first (so each host gets a stream split), then central
/// retention of one day prunes the old part while the buffer keeps it (`keep_synced` 100
/// years): two new connections must not send the pruned rows again. Before the fix the
/// re-queue below a split ignored the horizon, re-inserted every pruned row on each new
/// connection after a prune, and `samples_stored` counted them twice (so `unsent` read 0
/// however many rows were really missing).
#[test]
fn rows_pruned_centrally_below_a_stream_split_are_never_sent_again() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    let appliance = "split-prune";
    let now = now();
    {
        let mut buffer = Buffer::open(&path).expect("open the buffer");
        // 40 old rounds, two days ago, a minute apart; then 5 live rounds (stamped a minute
        // ahead, so that they count as live however slowly this test gets to its drain).
        for i in 0..40 {
            round(&mut buffer, now - 2 * 86_400_000 + i * 60_000, i);
        }
        for i in 40..45 {
            round(&mut buffer, now + 60_000 + i, i);
        }
    }
    let url = db.url();
    let config = sync_config(&url, 50);
    let task = SyncTask::new(&config, &buffer_config(&path), appliance);
    let first = drain(&task);
    assert_eq!(first.samples, 45 * HOSTS as u64, "{first:?}");
    assert!(first.live_samples > 0, "nothing went live first: {first:?}");
    let splits = SyncQueue::open(&path)
        .expect("open")
        .stream_splits()
        .expect("splits");
    assert_eq!(
        splits.len(),
        HOSTS,
        "every host got a stream split: {splits:?}"
    );
    drop(task);

    // Central retention of one day: the 40 old rounds go, the buffer keeps them.
    let options = PruneOptions {
        older_than: Duration::from_secs(86_400),
        batch_rows: 100,
        dry_run: false,
        all_appliances: false,
    };
    let pruned = prune(
        &[Secret::new(url.clone())],
        Duration::from_secs(10),
        appliance,
        &options,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .expect("prune");
    assert_eq!(pruned.samples, 40 * HOSTS as u64, "{pruned:?}");
    let central_after_prune = count(&db, "SELECT COUNT(*) FROM samples");
    assert_eq!(central_after_prune, 5 * HOSTS as i64);

    // Two reconnects (each a new connection, each re-queues what MySQL lacks).
    for reconnect in 1..=2 {
        let task = SyncTask::new(&config, &buffer_config(&path), appliance);
        let pass = drain(&task);
        assert_eq!(
            pass.samples, 0,
            "reconnect {reconnect} sent rows again: {pass:?}"
        );
        assert_eq!(
            count(&db, "SELECT COUNT(*) FROM samples"),
            central_after_prune,
            "reconnect {reconnect}: pruned rows came back"
        );
    }
    for (host, stored, dropped, pruned, expected, unsent) in counters(&db, appliance) {
        assert_eq!(
            (stored, dropped, pruned, unsent),
            (expected, 0, 40, 0),
            "{host}: stored {stored} + dropped {dropped} must equal expected {expected}"
        );
    }

    // A real gap now: one round the buffer numbered but never sends (its rows deleted from
    // the buffer as if lost with a disk). Completeness must count it as unsent, not clamp it.
    {
        let mut buffer = Buffer::open(&path).expect("open the buffer");
        round(&mut buffer, now + 60_100, 45);
        round(&mut buffer, now + 60_200, 46);
    }
    let conn = rusqlite::Connection::open(&path).expect("open the buffer file");
    conn.execute(
        "DELETE FROM samples WHERE sync_state = 0 AND seq = (SELECT MAX(seq) - 1 FROM samples)",
        [],
    )
    .expect("lose a round");
    drop(conn);
    let task = SyncTask::new(&config, &buffer_config(&path), appliance);
    let pass = drain(&task);
    assert_eq!(pass.samples, HOSTS as u64, "{pass:?}");
    for (host, stored, _, _, expected, unsent) in counters(&db, appliance) {
        assert_eq!(
            (stored, unsent),
            (expected - 1, 1),
            "{host}: the lost round must show as unsent"
        );
    }
    assert_eq!(unexplained(&db, appliance), HOSTS as i64);
}

/// Per host name: central sample seqs, and central drop ranges.
type Seqs = std::collections::BTreeMap<String, Vec<i64>>;
type DropRanges = std::collections::BTreeMap<String, Vec<(i64, i64)>>;

/// Per host of the appliance: central sample seqs and drop ranges.
fn central_seqs(db: &MariaDb) -> (Seqs, DropRanges) {
    let mut conn = db.conn().expect("connect to MariaDB");
    let mut samples: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    let rows: Vec<(String, i64)> = conn
        .query("SELECT h.name, s.seq FROM samples s JOIN hosts h ON h.id = s.host_id")
        .expect("central samples");
    for (host, seq) in rows {
        samples.entry(host).or_default().push(seq);
    }
    let mut drops: std::collections::BTreeMap<String, Vec<(i64, i64)>> = Default::default();
    let rows: Vec<(String, i64, i64)> = conn
        .query(
            "SELECT h.name, d.first_seq, d.last_seq FROM drops d JOIN hosts h ON h.id = d.host_id",
        )
        .expect("central drops");
    for (host, first, last) in rows {
        drops.entry(host).or_default().push((first, last));
    }
    (samples, drops)
}

/// The daemon on a 3 MiB tmpfs with MariaDB up, `keep_synced = "0s"` (synced rows go at once,
/// so the disk holds only unsynced ones), and a batch held in flight by a table lock on the
/// central `samples` (a slow server, a long lock wait): meanwhile the buffer reaches
/// `buffer.min_free` and the collector's retention must shed unsynced samples. Before the fix it
/// shed the oldest, which were the batch in flight: once the lock went, MySQL committed them and
/// they had drop records too (completeness undercounting `unsent`), and a shed tail let SQLite
/// reuse their row ids for new samples, which the batch's marks then marked synced unsent.
/// Asserted: every sequence number is in MySQL exactly once, as a sample or inside one drop
/// range, never both; the watermarks' stored + dropped equal expected for every host.
#[test]
fn retention_never_sheds_the_batch_in_flight_and_marks_hit_only_what_mysql_holds() {
    use crate::support::daemon::Daemon;
    use crate::support::tmpfs::Tmpfs;
    use crate::support::{Edgemon, wait_until};

    let dir = temp_dir();
    let disk = skip_or_fail!(Tmpfs::mount(&dir.path().join("disk"), "3m"));
    let ballast = disk.avail().saturating_sub(900 << 10);
    std::fs::write(disk.path().join("ballast"), vec![0x5Au8; ballast as usize]).expect("ballast");
    let db = skip_or_fail!(MariaDb::start());
    let buffer = disk.path().join("buffer.sqlite");
    let mut text = format!(
        "[appliance]\nid = \"race\"\ndata_dir = \"{}\"\n\n\
         [collect]\ninterval = \"1s\"\n\n\
         [buffer]\npath = \"{}\"\nkeep_synced = \"0s\"\n\n\
         [sync]\nurl = \"{}\"\ninterval = \"1s\"\nmax_backoff = \"2s\"\ntimeout = \"180s\"\n\n",
        dir.path().join("data").display(),
        buffer.display(),
        db.url()
    );
    for i in 0..30 {
        text.push_str(&format!(
            "[[hosts]]\nname = \"race-{i}\"\ntransport = \"local\"\n\n"
        ));
    }
    let config = dir.path().join("edgemon.toml");
    std::fs::write(&config, text).expect("write config");
    let mut daemon = Daemon::start(dir.path(), &config);
    assert!(
        wait_until(Duration::from_secs(120), || db.sample_count().unwrap_or(0)
            > 0),
        "sync never started; log:\n{}",
        daemon.log()
    );

    // Hold the next batch in flight: it waits on the table lock.
    let mut lock = db.root_conn().expect("root connection");
    lock.query_drop("LOCK TABLES edgemon.samples WRITE")
        .expect("lock central samples");
    let local_drops = || -> i64 {
        rusqlite::Connection::open_with_flags(&buffer, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.query_row(
                    "SELECT COALESCE(SUM(count), 0) FROM drops WHERE reason LIKE '%min_free%'",
                    [],
                    |r| r.get(0),
                )
            })
            .unwrap_or(0)
    };
    let shed = wait_until(Duration::from_secs(150), || local_drops() >= 60);
    lock.query_drop("UNLOCK TABLES").expect("unlock");
    drop(lock);
    assert!(
        shed,
        "retention never shed unsynced samples; log:\n{}",
        daemon.log()
    );
    let held = db.sample_count().unwrap_or(0);
    assert!(
        wait_until(Duration::from_secs(120), || db.sample_count().unwrap_or(0)
            > held + 60),
        "sync did not resume after the lock; log:\n{}",
        daemon.log()
    );
    assert!(daemon.stop().success(), "log:\n{}", daemon.log());
    Edgemon::new(dir.path())
        .args(["sync", "--config"])
        .arg(&config)
        .stdout();

    let next: Vec<(String, i64)> = {
        let conn = rusqlite::Connection::open(&buffer).expect("open the buffer");
        let mut stmt = conn
            .prepare("SELECT name, next_seq FROM hosts")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("hosts")
            .collect::<rusqlite::Result<_>>()
            .expect("hosts")
    };
    let (samples, drops) = central_seqs(&db);
    let mut both = Vec::new();
    let mut missing = Vec::new();
    for (host, next) in &next {
        let mut seen: std::collections::BTreeMap<i64, u32> = Default::default();
        for seq in samples.get(host).into_iter().flatten() {
            *seen.entry(*seq).or_default() += 1;
        }
        for (first, last) in drops.get(host).into_iter().flatten() {
            for seq in *first..=*last {
                *seen.entry(seq).or_default() += 1;
            }
        }
        both.extend(
            seen.iter()
                .filter(|(_, n)| **n > 1)
                .map(|(s, _)| (host.clone(), *s)),
        );
        missing.extend(
            (1..*next)
                .filter(|s| !seen.contains_key(s))
                .map(|s| (host.clone(), s)),
        );
    }
    assert!(
        both.is_empty(),
        "{} sequence numbers are both in MySQL and in a drop record (first: {:?})",
        both.len(),
        &both[..both.len().min(10)]
    );
    assert!(
        missing.is_empty(),
        "{} sequence numbers are neither in MySQL nor dropped: marked synced unsent (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    for (host, stored, dropped, _, expected, unsent) in counters(&db, "race") {
        assert_eq!(
            (stored + dropped, unsent),
            (expected, 0),
            "{host}: stored {stored} + dropped {dropped} against expected {expected}"
        );
    }
}
