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
