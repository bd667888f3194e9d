//! Identity against a real MariaDB (issue 11): a buffer deleted and recreated
//! under one appliance id, two boxes sharing an id, journal ids after
//! retention emptied a table, a colliding re-send, a central host row deleted
//! on purpose, and a version 1 central database upgraded in place.
//!
//! Every case ends with the one-to-one check of `sync.rs` (count and SHA-256 of
//! every sample's identity and values, per buffer epoch) and reads the
//! completeness view for the loss it must, or must not, show.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use edgemon::buffer::{StatusReader, SyncQueue};
use edgemon::sync::SyncTask;
use mysql::prelude::Queryable;

use crate::skip_or_fail;
use crate::support::mariadb::MariaDb;
use crate::support::{Edgemon, temp_dir};
use crate::sync::{
    assert_complete, buffer_config, buffer_lines, central_lines_of, count, digest, drain, seed,
    sync_config, unexplained, unsynced,
};

fn epoch(path: &Path) -> i64 {
    SyncQueue::open(path).expect("open").epoch().expect("epoch")
}

/// MySQL holds exactly the buffer's samples under the buffer's epoch.
fn assert_epoch_complete(db: &MariaDb, path: &Path, appliance: &str) {
    let local = digest(buffer_lines(path));
    let central = digest(central_lines_of(db, appliance, Some(epoch(path))));
    assert!(local.0 > 0);
    assert_eq!(
        central,
        local,
        "MySQL differs from {} (epoch {})",
        path.display(),
        epoch(path)
    );
}

fn samples_in(path: &Path) -> i64 {
    StatusReader::open(path)
        .expect("open")
        .status()
        .expect("status")
        .samples
}

fn write_config(dir: &Path, id: &str, buffer: &Path, url: &str) -> PathBuf {
    let config = dir.join(format!("{id}.toml"));
    std::fs::write(
        &config,
        format!(
            "[appliance]\nid = \"{id}\"\ndata_dir = \"{data}\"\n\n\
             [[hosts]]\nname = \"localhost\"\ntransport = \"local\"\n\n\
             [buffer]\npath = \"{buffer}\"\n\n\
             [sync]\nurl = \"{url}\"\nbatch_size = 7\ntimeout = \"10s\"\n",
            data = dir.join("data").display(),
            buffer = buffer.display(),
        ),
    )
    .expect("write the config");
    config
}

fn remove_buffer(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        if file.exists() {
            std::fs::remove_file(&file).expect("remove the buffer file");
        }
    }
}

#[test]
fn a_buffer_deleted_and_recreated_lands_beside_the_old_one() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    let config = write_config(dir.path(), "site-r", &path, &db.url());
    seed(&path, 3, 0, 10);
    let first = samples_in(&path);
    let old_epoch = epoch(&path);
    let out = Edgemon::new(dir.path())
        .args(["sync", "--config"])
        .arg(&config)
        .stdout();
    assert!(
        out.contains(&format!("sent {first} new samples as appliance 'site-r'")),
        "{out}"
    );
    assert_epoch_complete(&db, &path, "site-r");

    // A disk swap or `apt purge`: the buffer is gone, sequences restart at 1.
    remove_buffer(&path);
    seed(&path, 3, 0, 4);
    let second = samples_in(&path);
    assert_ne!(epoch(&path), old_epoch);
    let out = Edgemon::new(dir.path())
        .args(["sync", "--config"])
        .arg(&config)
        .stdout();
    assert!(
        out.contains(&format!("sent {second} new samples as appliance 'site-r'"))
            && out.contains("0 were already in MySQL"),
        "{out}"
    );
    assert_epoch_complete(&db, &path, "site-r");
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM samples s JOIN appliances a ON a.id = s.appliance_id WHERE a.name = 'site-r'"
        ),
        first + second
    );
    assert_eq!(
        count(
            &db,
            &format!("SELECT COUNT(*) FROM samples WHERE epoch = {old_epoch}")
        ),
        first,
        "the old buffer's rows are untouched"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM appliance_buffers WHERE appliance = 'site-r' AND hosts = 3"
        ),
        2
    );
    assert_eq!(unexplained(&db, "site-r"), 0);
}

#[test]
fn two_boxes_with_one_appliance_id_land_side_by_side() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let paths = [dir.path().join("a.sqlite"), dir.path().join("b.sqlite")];
    // Same host names, same sequence numbers, different values: only the epoch tells them apart.
    seed(&paths[0], 4, 0, 30);
    seed(&paths[1], 4, 100, 30);
    std::thread::scope(|scope| {
        for path in &paths {
            let url = db.url();
            scope.spawn(move || {
                let task = SyncTask::new(&sync_config(&url, 9), &buffer_config(path), "twin");
                let report = drain(&task);
                assert_eq!(report.collisions, 0);
            });
        }
    });
    for path in &paths {
        assert_eq!(unsynced(path), 0);
        assert_epoch_complete(&db, path, "twin");
    }
    let total = samples_in(&paths[0]) + samples_in(&paths[1]);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM samples"),
        total,
        "no row vanished"
    );
    let mut conn = db.conn().expect("connect");
    let listed: Vec<(i64, i64)> = conn
        .query("SELECT epoch, hosts FROM appliance_buffers WHERE appliance = 'twin' ORDER BY epoch")
        .expect("appliance_buffers");
    let mut epochs = vec![(epoch(&paths[0]), 4), (epoch(&paths[1]), 4)];
    epochs.sort_unstable();
    assert_eq!(listed, epochs);
    assert_eq!(unexplained(&db, "twin"), 0);
}

#[test]
fn journal_rows_created_after_retention_emptied_their_table_reach_mysql() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    // Every 5th round the last host fails: rounds 4 and 9 leave two collection errors.
    seed(&path, 2, 0, 10);
    let task = SyncTask::new(&sync_config(&db.url(), 50), &buffer_config(&path), "site-j");
    drain(&task);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM collection_errors"), 2);
    // Retention deletes synced journal rows: the table is empty.
    let raw = rusqlite::Connection::open(&path).expect("open raw");
    let removed = raw
        .execute("DELETE FROM collection_errors WHERE sync_state = 1", [])
        .expect("retention");
    assert_eq!(removed, 2);
    seed(&path, 2, 10, 10);
    let report = drain(&task);
    assert_eq!(report.journal_rows, 2, "{report:?}");
    assert_eq!(report.collisions, 0);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM collection_errors"),
        4,
        "the new errors were swallowed"
    );
    let ids: Vec<i64> = db
        .conn()
        .expect("connect")
        .query("SELECT local_id FROM collection_errors ORDER BY local_id")
        .expect("ids");
    assert_eq!(ids, vec![1, 2, 3, 4]);
    assert_complete(&db, &path, "site-j");
}

#[test]
fn a_colliding_row_is_counted_and_kept_and_an_identical_resend_is_silent() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 3, 0, 6);
    // A copy of the buffer file (a restored backup of the appliance, a cloned VM): same epoch.
    let copy = dir.path().join("copy.sqlite");
    rusqlite::Connection::open(&path)
        .expect("open raw")
        .execute("VACUUM INTO ?1", [copy.display().to_string()])
        .expect("copy the buffer");
    let task = SyncTask::new(&sync_config(&db.url(), 5), &buffer_config(&path), "site-c");
    let first = drain(&task);
    assert_eq!(first.collisions, 0);

    // A crash between COMMIT and marking: everything is sent again, identical: silent.
    let raw = rusqlite::Connection::open(&path).expect("open raw");
    raw.execute("UPDATE samples SET sync_state = 0", [])
        .expect("unmark");
    let again = drain(&task);
    assert_eq!(again.collisions, 0);
    assert_eq!(again.already_present, first.samples);
    assert_eq!(again.samples, first.samples);

    // The copy's host-001 seq 3 differs: a collision, the rest are re-sends.
    let raw = rusqlite::Connection::open(&copy).expect("open the copy");
    raw.execute(
        "UPDATE samples SET cpu = 12.25 WHERE seq = 3 AND host_id = (SELECT id FROM hosts WHERE name = 'host-001')",
        [],
    )
    .expect("change a value");
    let config = write_config(dir.path(), "site-c", &copy, &db.url());
    let out = Edgemon::new(dir.path())
        .args(["sync", "--config"])
        .arg(&config)
        .stdout();
    assert!(out.contains("warning: 1 row(s) collided"), "{out}");
    let status = Edgemon::new(dir.path())
        .args(["status", "--json", "--config"])
        .arg(&config)
        .stdout();
    let status: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
    assert_eq!(status["collisions"], 1, "{status}");
    assert_eq!(
        status["last_collision"], "samples host-001 seq 3",
        "{status}"
    );
    let text = Edgemon::new(dir.path())
        .args(["status", "--config"])
        .arg(&config)
        .stdout();
    assert!(text.contains("WARNING: 1 collision(s)"), "{text}");
    let kept: i64 = raw
        .query_row(
            "SELECT COUNT(*) FROM collisions c JOIN samples s ON s.id = c.local_id
             WHERE c.kind = 'samples' AND s.sync_state = 3 AND s.cpu = 12.25",
            [],
            |r| r.get(0),
        )
        .expect("collisions table");
    assert_eq!(kept, 1, "the colliding row is kept locally");
    // MySQL still holds the first writer's value, and exactly the original buffer's samples.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM samples WHERE seq = 3 AND cpu = 12.25"
        ),
        0
    );
    assert_complete(&db, &path, "site-c");
}

#[test]
fn a_deleted_central_host_is_registered_again_and_its_loss_shows() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 2, 0, 10);
    let task = SyncTask::new(&sync_config(&db.url(), 8), &buffer_config(&path), "site-h");
    drain(&task);
    assert_eq!(unexplained(&db, "site-h"), 0);
    // An operator deletes host-000 centrally, with its rows, while the task keeps its connection.
    let mut conn = db.conn().expect("connect");
    let host: i64 = conn
        .query_first("SELECT id FROM hosts WHERE name = 'host-000'")
        .expect("host id")
        .expect("host-000 is registered");
    for table in [
        "sample_cores",
        "samples",
        "collection_errors",
        "drops",
        "alert_events",
    ] {
        conn.query_drop(format!("DELETE FROM {table} WHERE host_id = {host}"))
            .expect("delete rows");
    }
    conn.query_drop(format!("DELETE FROM hosts WHERE id = {host}"))
        .expect("delete the host");

    seed(&path, 2, 10, 5);
    let report = drain(&task);
    assert_eq!(report.quarantined, 0, "a vanished host is not bad content");
    assert_eq!(report.samples, 9, "{report:?}");
    let again: i64 = conn
        .query_first("SELECT id FROM hosts WHERE name = 'host-000'")
        .expect("host id")
        .expect("host-000 is registered again");
    assert_ne!(again, host);
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM samples WHERE host_id = {again} AND seq BETWEEN 11 AND 15"
            )
        ),
        5
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM hosts WHERE id = 0"), 0);
    // The ten deleted samples show as loss of host-000 and of nothing else.
    let loss: Vec<(String, i64)> = conn
        .query(
            "SELECT host, CAST(unexplained AS SIGNED) FROM completeness WHERE appliance = 'site-h' AND unexplained > 0",
        )
        .expect("completeness");
    assert_eq!(loss, vec![("host-000".to_string(), 10)]);
    // The drill-down names the hole.
    let gaps: Vec<(i64, i64)> = conn
        .query(format!(
            "SELECT first_missing, last_missing FROM sequence_gaps WHERE host_id = {again}"
        ))
        .expect("gaps");
    assert_eq!(gaps, vec![(1, 10)]);
}

/// Version 1 accepted host names with trailing spaces; the central `utf8mb4_bin` (PAD SPACE)
/// compares `'host-000 '` equal to `'host-000'`, which is what the trimmed name is now. Sync
/// must use that central row, not stop every pass on "no row right after registering it".
#[test]
fn a_central_host_name_with_trailing_spaces_does_not_wedge_sync() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 2, 0, 10);
    let task = SyncTask::new(&sync_config(&db.url(), 8), &buffer_config(&path), "site-p");
    drain(&task);
    let mut conn = db.conn().expect("connect");
    conn.query_drop("UPDATE hosts SET name = 'host-000 ' WHERE name = 'host-000'")
        .expect("pad the central name as version 1 stored it");
    let host: i64 = conn
        .query_first("SELECT id FROM hosts WHERE name = 'host-000'")
        .expect("host id")
        .expect("host-000 is registered");

    seed(&path, 2, 10, 5);
    let report = task
        .drain(&AtomicBool::new(false), &mut |_| {})
        .expect("sync goes on with the padded central name");
    assert_eq!(report.samples, 9, "{report:?}");
    assert_eq!(unsynced(&path), 0);
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM samples WHERE host_id = {host} AND seq BETWEEN 11 AND 15"
            )
        ),
        5
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM hosts"), 2);
    assert_eq!(unexplained(&db, "site-p"), 0);
}

#[test]
fn a_version_1_central_database_is_upgraded_in_place_without_losing_a_row() {
    let db = skip_or_fail!(MariaDb::start());
    db.apply_fixture("mysql-v1.sql")
        .expect("apply the v1 schema");
    let mut conn = db.conn().expect("connect");
    // An appliance's rows as edgemon 1 wrote them: 2 hosts, 50 samples each with 2 cores,
    // a drop explaining seq 20 of host a, journal rows.
    for statement in [
        "INSERT INTO appliances (id, name) VALUES (1, 'old-site')",
        "INSERT INTO hosts (id, appliance_id, name, address) VALUES (1, 1, 'a', 'a:22'), (2, 1, 'b', 'b:22')",
        "INSERT INTO samples (appliance_id, host_id, seq, collected_at, received_at, cpu, mem_used, mem_total,
                              swap_used, swap_total, uptime_s, hostname)
         SELECT 1, h.id, s.seq, '2024-01-01 00:00:00' + INTERVAL s.seq MINUTE,
                '2024-01-01 00:00:01' + INTERVAL s.seq MINUTE, s.seq / 10, s.seq * 1000, 8000000, 0, 0,
                s.seq * 60, CONCAT('n', h.id)
           FROM seq_1_to_50 s JOIN (SELECT 1 AS id UNION ALL SELECT 2) h
          WHERE NOT (h.id = 1 AND s.seq = 20)",
        "INSERT INTO sample_cores (appliance_id, host_id, seq, core, cpu)
         SELECT x.appliance_id, x.host_id, x.seq, c.seq - 1, x.cpu + c.seq FROM samples x JOIN seq_1_to_2 c",
        "INSERT INTO drops (appliance_id, local_id, host_id, first_seq, last_seq, count, reason, at)
         VALUES (1, 1, 1, 20, 20, 1, 'max_size', '2024-01-01 01:00:00')",
        "INSERT INTO collection_errors (appliance_id, local_id, host_id, at, class, message)
         VALUES (1, 1, 2, '2024-01-01 02:00:00', 'timeout', 'b: no answer')",
    ] {
        conn.query_drop(statement).expect("v1 rows");
    }
    let fingerprint = |conn: &mut mysql::Conn| -> Vec<(String, i64)> {
        [
            "SELECT CAST(SUM(CRC32(CONCAT_WS('|', appliance_id, host_id, seq, collected_at, received_at, cpu, \
             mem_used, uptime_s, hostname))) AS CHAR), COUNT(*) FROM samples WHERE epoch = 0",
            "SELECT CAST(SUM(CRC32(CONCAT_WS('|', appliance_id, host_id, seq, core, cpu))) AS CHAR), COUNT(*) \
             FROM sample_cores WHERE epoch = 0",
            "SELECT CAST(SUM(CRC32(CONCAT_WS('|', local_id, host_id, first_seq, last_seq, reason))) AS CHAR), \
             COUNT(*) FROM drops WHERE epoch = 0",
            "SELECT CAST(SUM(CRC32(CONCAT_WS('|', local_id, host_id, class, message))) AS CHAR), COUNT(*) \
             FROM collection_errors WHERE epoch = 0",
        ]
        .iter()
        .map(|q| {
            // Before the upgrade there is no epoch column: every row is a legacy row.
            let q = if conn
                .query_first::<i64, _>(
                    "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() \
                     AND table_name = 'samples' AND column_name = 'epoch'",
                )
                .ok()
                .flatten()
                == Some(0)
            {
                q.replace(" WHERE epoch = 0", "")
            } else {
                q.to_string()
            };
            conn.query_first::<(String, i64), _>(q)
                .expect("fingerprint")
                .expect("a row")
        })
        .collect()
    };
    let before = fingerprint(&mut conn);
    assert_eq!(
        before.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        vec![99, 198, 1, 1]
    );

    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 2, 0, 5);
    let task = SyncTask::new(
        &sync_config(&db.url(), 4),
        &buffer_config(&path),
        "old-site",
    );
    task.drain(&AtomicBool::new(false), &mut |_| {})
        .expect("drain into the upgraded database");
    // Version 1 goes straight to the current version (4: the metric families).
    assert_eq!(count(&db, "SELECT MAX(version) FROM schema_version"), 4);
    assert_eq!(
        fingerprint(&mut conn),
        before,
        "a v1 row changed or vanished"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM samples"),
        99 + samples_in(&path)
    );
    assert_epoch_complete(&db, &path, "old-site");
    // The legacy rows are covered by the completeness view: the recorded drop explains seq 20.
    let legacy: Option<(i64, i64, i64)> = conn
        .query_first(
            "SELECT CAST(SUM(stored) AS SIGNED), CAST(SUM(dropped) AS SIGNED), CAST(SUM(unexplained) AS SIGNED)
             FROM completeness WHERE appliance = 'old-site' AND epoch = 0",
        )
        .expect("completeness");
    assert_eq!(legacy, Some((99, 1, 0)));
    assert_eq!(unexplained(&db, "old-site"), 0);
    // A second connection finds the current version and changes nothing.
    let again = SyncTask::new(
        &sync_config(&db.url(), 4),
        &buffer_config(&path),
        "old-site",
    );
    drain(&again);
    assert_eq!(fingerprint(&mut conn), before);
}

#[test]
fn a_central_database_restored_from_an_older_backup_gets_back_what_the_buffer_keeps() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 3, 0, 5);
    let task = SyncTask::new(&sync_config(&db.url(), 6), &buffer_config(&path), "site-b");
    drain(&task);
    const TABLES: [&str; 9] = [
        "appliances",
        "buffers",
        "hosts",
        "samples",
        "sample_cores",
        "collection_errors",
        "drops",
        "alert_events",
        "watermarks",
    ];
    let mut conn = db.conn().expect("connect");
    for table in TABLES {
        conn.query_drop(format!(
            "CREATE TABLE backup_{table} AS SELECT * FROM {table}"
        ))
        .expect("backup");
    }
    seed(&path, 3, 5, 5);
    drain(&task);
    let before_restore = count(&db, "SELECT COUNT(*) FROM samples");
    // The database server is restored from the backup; the appliance reconnects.
    conn.query_drop("SET FOREIGN_KEY_CHECKS = 0")
        .expect("fk off");
    for table in TABLES {
        conn.query_drop(format!("DELETE FROM {table}"))
            .expect("empty");
        conn.query_drop(format!("INSERT INTO {table} SELECT * FROM backup_{table}"))
            .expect("restore");
    }
    conn.query_drop("SET FOREIGN_KEY_CHECKS = 1")
        .expect("fk on");
    let lost = before_restore - count(&db, "SELECT COUNT(*) FROM samples");
    assert!(lost > 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM collection_errors"), 1);

    let reconnected = SyncTask::new(&sync_config(&db.url(), 6), &buffer_config(&path), "site-b");
    let report = drain(&reconnected);
    assert_eq!(report.samples as i64, lost, "{report:?}");
    assert_eq!(report.already_present, 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM collection_errors"), 2);
    assert_complete(&db, &path, "site-b");
}

/// The re-queue of what MySQL lost runs once per connection. When it fails on the buffer's
/// side (here the buffer is locked by another writer longer than its busy timeout), the next
/// pass on the same connection must try it again, not leave rows marked synced that MySQL
/// does not hold.
#[test]
fn a_requeue_that_failed_on_the_buffer_runs_again_on_the_next_pass() {
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 2, 0, 5);
    let task = SyncTask::new(&sync_config(&db.url(), 6), &buffer_config(&path), "site-r");
    drain(&task);
    // MySQL loses host-001's samples (a restore, a careless DELETE).
    let mut conn = db.conn().expect("connect");
    let host: i64 = conn
        .query_first("SELECT id FROM hosts WHERE name = 'host-001'")
        .expect("host id")
        .expect("host-001 is registered");
    for table in ["sample_cores", "samples"] {
        conn.query_drop(format!("DELETE FROM {table} WHERE host_id = {host}"))
            .expect("delete rows");
    }
    let lost = 4;
    // A fresh task; its first pass finds the buffer locked by another writer.
    let reconnected = SyncTask::new(&sync_config(&db.url(), 6), &buffer_config(&path), "site-r");
    assert_eq!(reconnected.backlog().expect("open the buffer"), 0);
    {
        let locker = rusqlite::Connection::open(&path).expect("open");
        locker
            .execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        let failed = reconnected.drain(&AtomicBool::new(false), &mut |_| {});
        assert!(
            matches!(&failed, Err(edgemon::sync::Error::Buffer(_))),
            "{failed:?}"
        );
        locker.execute_batch("ROLLBACK").expect("release");
    }
    let report = drain(&reconnected);
    assert_eq!(report.samples, lost, "{report:?}");
    assert_complete(&db, &path, "site-r");
}
