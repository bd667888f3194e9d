//! A read-only server is not ready (issue 19, item 8), against real MariaDB:
//! a replica with `read_only = ON` listed first in `sync.urls`, and an
//! account privileged to write there anyway (`READ_ONLY ADMIN`, as a DBA's
//! account often is). Sync sends every row to the primary listed second and
//! leaves the replica untouched (not even the schema); central prune skips
//! the replica and runs on the primary.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use edgemon::config::secret::Secret;
use edgemon::sync::SyncTask;
use edgemon::sync::prune::{PruneOptions, prune};
use mysql::prelude::Queryable;

use crate::skip_or_fail;
use crate::support::mariadb::MariaDb;
use crate::support::temp_dir;
use crate::sync::{buffer_config, count, drain, seed, sync_config};

#[test]
fn a_read_only_replica_listed_first_gets_no_row_and_prune_runs_on_the_primary() {
    let replica = skip_or_fail!(MariaDb::start());
    let primary = skip_or_fail!(MariaDb::start());
    let mut root = replica.root_conn().expect("root on the replica");
    root.query_drop("GRANT READ_ONLY ADMIN ON *.* TO 'edgemon'@'%'")
        .expect("grant READ_ONLY ADMIN");
    root.query_drop("SET GLOBAL read_only = 1")
        .expect("read_only");

    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 3, 0, 10);
    let mut sync = sync_config(&replica.url(), 50);
    sync.urls = vec![Secret::new(replica.url()), Secret::new(primary.url())];
    let task = SyncTask::new(&sync, &buffer_config(&path), "read-only-it");
    let report = drain(&task);

    let on_primary = count(&primary, "SELECT COUNT(*) FROM samples");
    let replica_tables: i64 = root
        .query_first(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'edgemon'",
        )
        .expect("count the replica's tables")
        .unwrap_or(0);
    eprintln!(
        "read-only replica first: {} samples sent, {on_primary} on the primary, {replica_tables} \
         edgemon tables on the replica",
        report.samples
    );
    assert_eq!(on_primary, 30, "every sample reaches the primary");
    assert_eq!(
        replica_tables, 0,
        "the read-only replica was written to (schema or rows)"
    );

    let options = PruneOptions {
        older_than: Duration::from_secs(30 * 86_400),
        batch_rows: 1000,
        dry_run: true,
        all_appliances: false,
    };
    let pruned = prune(
        &sync.urls,
        Duration::from_secs(10),
        "read-only-it",
        &options,
        &AtomicBool::new(false),
        &mut |_| {},
    )
    .expect("prune skips the read-only server and uses the next one");
    assert!(
        pruned.server.contains(&primary.port().to_string()),
        "prune ran on {} instead of the primary (port {})",
        pruned.server,
        primary.port()
    );
    assert_eq!(pruned.samples, 30, "the primary's old samples are counted");
}
