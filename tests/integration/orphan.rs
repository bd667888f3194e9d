//! A silent partition mid-batch (issue 19, item 6): the sync task talks to a real MariaDB
//! through a relay the test controls; a batch is held mid-transaction by a row lock, the
//! relay is frozen (both sockets stay open, nothing moves: the server's session lives on
//! holding the batch's locks), the client gives up after `sync.timeout`, and the network
//! heals. Sync must flow again soon after (the orphan session killed, not left to its 8 h
//! `wait_timeout`), with every sample in MySQL exactly once and the server shown healthy.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use edgemon::sync::SyncTask;
use edgemon::sync::endpoints::EndpointHealth;
use mysql::prelude::Queryable;

use crate::skip_or_fail;
use crate::support::mariadb::{MariaDb, edgemon_url};
use crate::support::relay::Relay;
use crate::support::{temp_dir, wait_until};
use crate::sync::{assert_complete, buffer_config, count, seed, sync_config, unsynced};

/// Bounds every wait of the test (it is not a timing assertion: the figure is printed).
const BOUND: Duration = Duration::from_secs(30);

#[test]
fn orphan_session_of_a_partition_mid_batch_is_killed_and_sync_flows_again() {
    let db = skip_or_fail!(MariaDb::start());
    let relay = Relay::start(db.port()).expect("start the relay");
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 5, 0, 20);
    let mut config = sync_config(&edgemon_url(relay.port()), 1000);
    config.timeout = Duration::from_secs(4);
    config.interval = Duration::from_secs(1);
    config.max_backoff = Duration::from_secs(2);
    let task = SyncTask::new(&config, &buffer_config(&path), "site-orphan");
    let stop = edgemon::shutdown::Shutdown::new();
    let health: Mutex<Option<Vec<EndpointHealth>>> = Mutex::new(None);
    let healthy = || {
        health
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|h| h.len() == 1 && h[0].healthy && h[0].last_error.is_none())
    };
    let (orphan, healed_in) = std::thread::scope(|scope| {
        let runner = scope.spawn(|| {
            task.run_with(&stop, |pass| {
                if let Ok(report) = pass {
                    *health.lock().unwrap() = Some(report.servers.clone());
                } else {
                    let mut h = health.lock().unwrap();
                    if let Some(servers) = h.as_mut() {
                        for s in servers.iter_mut() {
                            s.healthy = false;
                        }
                    }
                }
            })
        });
        assert!(
            wait_until(BOUND, || unsynced(&path) == 0 && healthy()),
            "the first samples never synced through the relay"
        );

        // Hold the hosts' watermark rows, so the next batch stops mid-transaction (its
        // samples inserted, its watermark upsert waiting).
        let mut holder = db.conn().expect("connect directly");
        holder.query_drop("BEGIN").expect("begin");
        holder
            .query_drop("SELECT * FROM watermarks FOR UPDATE")
            .expect("lock the watermarks");
        seed(&path, 5, 20, 20);
        let mut watcher = db.root_conn().expect("connect as root");
        let holder_id: u64 = holder
            .query_first("SELECT CONNECTION_ID()")
            .expect("id")
            .expect("id");
        let waiting = |watcher: &mut mysql::Conn| -> Option<u64> {
            watcher
                .query_first(format!(
                    "SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX
                     WHERE trx_state = 'LOCK WAIT' AND trx_mysql_thread_id <> {holder_id}"
                ))
                .expect("read INNODB_TRX")
        };
        let mut orphan = None;
        assert!(
            wait_until(BOUND, || {
                orphan = waiting(&mut watcher);
                orphan.is_some()
            }),
            "no batch ever waited on the held watermark rows"
        );
        let orphan = orphan.expect("the waiting session");
        // The partition: the batch's session is cut off mid-transaction; then the lock is
        // released, so the orphan runs its statement and keeps the locks, waiting for a
        // client that is gone.
        relay.freeze();
        holder.query_drop("COMMIT").expect("release the watermarks");
        let open: i64 = watcher
            .query_first(format!(
                "SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = {orphan}"
            ))
            .expect("read INNODB_TRX")
            .unwrap_or(0);
        assert_eq!(open, 1, "the cut-off session holds no open transaction");
        // The client gives up (sync.timeout) and fails to reconnect while partitioned.
        let accepted = relay.accepted();
        assert!(
            wait_until(BOUND, || !healthy() && relay.accepted() > accepted),
            "the task never gave up the cut-off connection nor tried again"
        );
        relay.heal();
        let healed = Instant::now();
        let flowing = wait_until(BOUND, || unsynced(&path) == 0 && healthy());
        let healed_in = healed.elapsed();
        stop.fire();
        runner.join().expect("sync loop panicked");
        assert!(
            flowing,
            "sync did not flow again within {BOUND:?} of the network healing \
             ({} samples unsynced; server health {:?})",
            unsynced(&path),
            health.lock().unwrap()
        );
        (orphan, healed_in)
    });
    eprintln!("sync flowed again {healed_in:?} after the network healed");
    assert_complete(&db, &path, "site-orphan");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) - COUNT(DISTINCT host_id, epoch, seq) FROM samples"
        ),
        0,
        "duplicate samples in MySQL"
    );
    let mut root = db.root_conn().expect("connect as root");
    let alive: i64 = root
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {orphan}"
        ))
        .expect("read PROCESSLIST")
        .unwrap_or(0);
    assert_eq!(
        alive, 0,
        "the orphan session {orphan} still runs on the server"
    );
    drop(relay);
}
