//! The bulk path (issue 14 item 1) against real MariaDB servers: batches sent
//! as `LOAD DATA LOCAL INFILE` (the default when the server allows
//! `local_infile`) store byte for byte what the INSERT path stores (a second
//! server with `local_infile` off), including a row MySQL refuses, awkward
//! strings and doubles; a re-send and a collision come out as on the INSERT
//! path; and a server killed in the middle of large bulk batches loses and
//! duplicates nothing.
//!
//! Which path ran is read from the server's own statement counters
//! (`Com_load`, `Com_rollback_to_savepoint`), not assumed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgemon::buffer::Buffer;
use edgemon::collect::outcome::HostOutcome;
use edgemon::report::Report;
use edgemon::sync::{PassReport, SyncTask};
use mysql::prelude::Queryable;

use crate::skip_or_fail;
use crate::support::mariadb::MariaDb;
use crate::support::temp_dir;
use crate::support::wait_until;
use crate::sync::{
    PATIENCE, T0, assert_complete, buffer_config, count, drain, kill_while_rows_flow, report, seed,
    sync_config, unsynced,
};

/// A server whose `local_infile` is off: sync takes the INSERT path.
fn insert_only_server() -> Option<MariaDb> {
    let db = MariaDb::start().ok()?;
    db.root_conn()
        .expect("root")
        .query_drop("SET GLOBAL local_infile = 0")
        .expect("turn local_infile off");
    Some(db)
}

/// A global statement counter of the server (`Com_load`, ...).
fn counter(db: &MariaDb, name: &str) -> i64 {
    let row: Option<(String, i64)> = db
        .root_conn()
        .expect("root")
        .exec_first("SHOW GLOBAL STATUS WHERE Variable_name = ?", (name,))
        .expect("status");
    row.map_or(0, |(_, v)| v)
}

/// Every central table sync writes, rendered row by row as the server stores the bytes
/// (`HEX` of every column but the server's own timestamps and auto-increment ids, and a
/// drop's time and checksum, which hold when the row was quarantined).
fn central_dump(db: &MariaDb) -> Vec<String> {
    let mut conn = db.conn().expect("connect");
    let queries = [
        "SELECT CONCAT_WS('|', h.name, s.epoch, s.seq, HEX(s.collected_at), HEX(s.received_at), s.clock_skewed,
                HEX(s.cpu), s.mem_used, s.mem_total, s.swap_used, s.swap_total, s.uptime_s,
                IFNULL(HEX(s.boot_time), 'N'), IFNULL(HEX(s.load1), 'N'), IFNULL(HEX(s.load5), 'N'),
                IFNULL(HEX(s.load15), 'N'), IFNULL(HEX(s.hostname), 'N'), IFNULL(HEX(s.os), 'N'),
                IFNULL(HEX(s.kernel), 'N'), IFNULL(HEX(s.extras), 'N'), s.checksum)
         FROM samples s JOIN hosts h ON h.id = s.host_id ORDER BY h.name, s.epoch, s.seq",
        "SELECT CONCAT_WS('|', h.name, c.epoch, c.seq, c.core, HEX(c.cpu))
         FROM sample_cores c JOIN hosts h ON h.id = c.host_id ORDER BY h.name, c.epoch, c.seq, c.core",
        "SELECT CONCAT_WS('|', h.name, w.epoch, w.first_seq, w.last_seq, w.stored_last_seq,
                w.samples_stored, w.samples_dropped)
         FROM watermarks w JOIN hosts h ON h.id = w.host_id ORDER BY h.name, w.epoch",
        "SELECT CONCAT_WS('|', h.name, d.local_id, d.first_seq, d.last_seq, d.count, HEX(d.reason))
         FROM drops d JOIN hosts h ON h.id = d.host_id ORDER BY d.local_id",
        "SELECT CONCAT_WS('|', HEX(name), HEX(address)) FROM hosts ORDER BY name",
    ];
    // The family child tables, every column of every row as bytes.
    let mut children = Vec::new();
    for (i, table) in edgemon::sync::families::tables().iter().enumerate() {
        let columns: Vec<String> = if i == 0 {
            ["epoch", "seq", "family", "members", "cut", "refused"]
                .map(String::from)
                .to_vec()
        } else {
            let spec = edgemon::report::family::FAMILIES[i - 1];
            let mut c = vec!["epoch".to_string(), "seq".to_string()];
            if !spec.is_singleton() {
                c.push(spec.key.to_string());
            }
            c.extend(spec.fields.iter().map(|f| f.name.to_string()));
            c
        };
        let hexed: Vec<String> = columns
            .iter()
            .map(|c| format!("IFNULL(HEX(x.`{c}`), 'N')"))
            .collect();
        let order = if i == 0 {
            "x.family".to_string()
        } else {
            format!("x.`{}`", columns[2])
        };
        children.push(format!(
            "SELECT CONCAT_WS('|', h.name, {}) FROM {table} x JOIN hosts h ON h.id = x.host_id
             ORDER BY h.name, x.epoch, x.seq, {order}",
            hexed.join(", ")
        ));
    }
    let mut out = Vec::new();
    for q in queries.iter().map(|q| q.to_string()).chain(children) {
        let rows: Vec<String> = conn.query(q).expect("dump");
        out.push(format!("-- {} rows", rows.len()));
        out.extend(rows);
    }
    out
}

/// A report with values that are hard to carry in a tab-separated file: tabs, newlines,
/// backslashes, `\N`, quotes, NUL-free control characters, 4-byte UTF-8, awkward doubles.
fn awkward(i: i64, at: i64) -> Report {
    let mut r = report(i, at);
    r.hostname = Some(format!(
        "tab\there\nnew\r\\N \\ \u{1a} 'q' \"d\" ünï 🚀 {i}"
    ));
    r.os = Some("NULL".into());
    r.kernel = Some(String::new());
    r.cpu_percent = 0.1 + 0.2;
    r.cores = vec![
        1e-7,
        123_456_789.123_456_79,
        0.0,
        100.0,
        33.333_333_333_333_336,
    ];
    r.load = Some([1e300, 0.0, 2.5]);
    r.extras = vec![("path".into(), "C:\\dir\twith\ttabs\nand \\N".into())];
    if let Some(fs) = r.sections.get_mut(1) {
        fs.members[0].key = format!("/mnt/tab\there\nnew\r\\N 'q' \"d\" ünï 🚀 {i}");
        fs.members[1].values[0] = Some(edgemon::report::family::Value::Text("NULL".into()));
    }
    if let Some(sys) = r.sections.first_mut() {
        sys.members[0].values[0] = Some(edgemon::report::family::Value::F64(0.1 + 0.2));
        sys.members[0].values[1] = Some(edgemon::report::family::Value::F64(1e-7));
    }
    r
}

/// `rounds` rounds of awkward reports for `hosts` hosts, then one row MySQL refuses
/// (a hostname longer than VARCHAR(255)).
fn seed_awkward(path: &Path, hosts: usize, rounds: i64) {
    let mut buffer = Buffer::open(path).expect("open the buffer");
    for round in 0..rounds {
        let at = T0 + round * 60_000;
        let outcomes: Vec<HostOutcome> = (0..hosts)
            .map(|h| HostOutcome {
                host: format!("host-{h:03}"),
                address: format!("user@10.0.0.{h}:22"),
                started_at_ms: at,
                duration: Duration::from_millis(40),
                result: Ok(awkward(round * 1000 + h as i64, at)),
            })
            .collect();
        buffer
            .record_round(&outcomes, Duration::from_secs(300), |_, _| Ok(()))
            .expect("record a round");
    }
    let mut bad = report(7, T0);
    bad.hostname = Some("x".repeat(300));
    let at = T0 + rounds * 60_000;
    buffer
        .record_round(
            &[HostOutcome {
                host: "host-000".into(),
                address: "user@10.0.0.0:22".into(),
                started_at_ms: at,
                duration: Duration::ZERO,
                result: Ok(bad),
            }],
            Duration::from_secs(300),
            |_, _| Ok(()),
        )
        .expect("the refused row");
}

/// A copy of the buffer file (same epoch, same rows).
fn copy_buffer(from: &Path, to: &Path) -> PathBuf {
    rusqlite::Connection::open(from)
        .expect("open raw")
        .execute("VACUUM INTO ?1", [to.display().to_string()])
        .expect("copy the buffer");
    to.to_path_buf()
}

fn counts(r: &PassReport) -> [u64; 5] {
    [
        r.samples,
        r.already_present,
        r.collisions,
        r.quarantined,
        r.remaining,
    ]
}

#[test]
fn the_load_data_path_stores_byte_for_byte_what_the_insert_path_stores() {
    let bulk = skip_or_fail!(MariaDb::start());
    let Some(insert) = insert_only_server() else {
        panic!("a second MariaDB did not start");
    };
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    // 6 hosts x 700 rounds: batches of 2500 are split over two connections, the last one
    // (about 1700 rows and the refused one) is not.
    seed_awkward(&path, 6, 700);
    seed(&path, 6, 700, 20);
    let copy = copy_buffer(&path, &dir.path().join("copy.sqlite"));

    let reports: Vec<PassReport> = [(&bulk, &path), (&insert, &copy)]
        .iter()
        .map(|(db, path)| {
            let task = SyncTask::new(
                &sync_config(&db.url(), 2500),
                &buffer_config(path),
                "site-b",
            );
            drain(&task)
        })
        .collect();
    assert_eq!(counts(&reports[0]), counts(&reports[1]));
    assert_eq!(reports[0].quarantined, 1);
    assert_eq!(reports[0].samples, 6 * 700 + 6 * 20 - 4);
    assert_eq!(unsynced(&path), 0);

    assert!(
        counter(&bulk, "Com_load") >= 4,
        "the bulk server saw no LOAD DATA"
    );
    assert!(
        counter(&bulk, "Com_rollback_to_savepoint") >= 1,
        "the refused row's batch went back to INSERT"
    );
    assert_eq!(
        counter(&insert, "Com_load"),
        0,
        "local_infile off means INSERT"
    );

    let (a, b) = (central_dump(&bulk), central_dump(&insert));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "LOAD DATA and INSERT stored different bytes");
    }
    assert_complete(&bulk, &path, "site-b");
    assert_complete(&insert, &copy, "site-b");
}

#[test]
fn a_resend_and_a_collision_on_the_load_data_path_behave_as_on_the_insert_path() {
    let bulk = skip_or_fail!(MariaDb::start());
    let Some(insert) = insert_only_server() else {
        panic!("a second MariaDB did not start");
    };
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 5, 0, 600);
    let mut outcomes = Vec::new();
    for (db, name) in [(&bulk, "bulk"), (&insert, "insert")] {
        let mine = copy_buffer(&path, &dir.path().join(format!("{name}.sqlite")));
        // A restored backup or cloned VM: the same epoch and rows as `mine`, one value changed,
        // and newer rows of its own.
        let twin = copy_buffer(&path, &dir.path().join(format!("{name}-twin.sqlite")));
        let raw = rusqlite::Connection::open(&twin).expect("open the twin");
        raw.execute(
            "UPDATE samples SET cpu = 12.25 WHERE seq = 3 AND host_id = (SELECT id FROM hosts WHERE name = 'host-001')",
            [],
        )
        .expect("change a value");
        seed(&twin, 5, 600, 500);

        let task = SyncTask::new(
            &sync_config(&db.url(), 2500),
            &buffer_config(&mine),
            "site-r",
        );
        let first = drain(&task);
        // A crash between COMMIT and marking: everything again, identical, silent.
        rusqlite::Connection::open(&mine)
            .expect("open raw")
            .execute("UPDATE samples SET sync_state = 0", [])
            .expect("unmark");
        let again = drain(&task);
        assert_eq!(again.already_present, first.samples);
        assert_eq!(again.collisions, 0);
        let twin_task = SyncTask::new(
            &sync_config(&db.url(), 2500),
            &buffer_config(&twin),
            "site-r",
        );
        let collided = drain(&twin_task);
        assert_eq!(collided.collisions, 1);
        let (old, new) = (5 * 600 - 600 / 5, 5 * 500 - 500 / 5);
        assert_eq!(first.samples, old);
        assert_eq!(collided.samples, old + new - 1);
        assert_eq!(collided.already_present, old - 1);
        let kept: i64 = raw
            .query_row(
                "SELECT COUNT(*) FROM samples WHERE sync_state = 3 AND cpu = 12.25",
                [],
                |r| r.get(0),
            )
            .expect("collisions");
        assert_eq!(kept, 1, "the colliding row is kept locally");
        assert_eq!(
            count(db, "SELECT COUNT(*) FROM samples WHERE cpu = 12.25"),
            0,
            "the colliding row is never written over the central one"
        );
        assert_eq!(count(db, "SELECT COUNT(*) FROM samples") as u64, old + new);
        outcomes.push([counts(&first), counts(&again), counts(&collided)]);
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert!(counter(&bulk, "Com_load") > 0);
    assert_eq!(counter(&bulk, "Com_rollback_to_savepoint"), 0);
    assert_eq!(counter(&insert, "Com_load"), 0);
    assert_eq!(central_dump(&bulk), central_dump(&insert));
}

#[test]
fn a_server_killed_during_bulk_batches_loses_and_duplicates_nothing() {
    let mut db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let path = dir.path().join("buffer.sqlite");
    seed(&path, 20, 0, 1500);
    let total = 20 * 1500 - 1500 / 5;
    let task = SyncTask::new(
        &sync_config(&db.url(), 3000),
        &buffer_config(&path),
        "site-k",
    );
    let stop = edgemon::shutdown::Shutdown::new();
    std::thread::scope(|scope| {
        let runner = scope.spawn(|| task.run(&stop));
        // Kill it twice while bulk batches are flowing (rows committed, more to come).
        kill_while_rows_flow(&mut db, 2);
        assert!(
            wait_until(PATIENCE * 3, || unsynced(&path) == 0),
            "backlog never drained"
        );
        stop.fire();
        runner.join().expect("sync loop panicked");
    });
    assert!(counter(&db, "Com_load") > 0, "the last run used LOAD DATA");
    assert_eq!(db.sample_count(), Some(total));
    assert_complete(&db, &path, "site-k");
}
