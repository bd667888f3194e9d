//! An upgrade on a full disk: a buffer left at schema version 1 by an older edgemon (its disk
//! reserve in place, as that version kept one) on an 8 MiB tmpfs that another file filled
//! to the last byte. Migration 2 rebuilds the journal tables, far more than the reserve.
//!
//! Asserted: `edgemon sync` migrates and sends the unsynced samples to MariaDB, then
//! `edgemon run` keeps collecting and syncing (new samples reach MySQL), the schema is at
//! the latest version, and nothing unsynced was shed to make the room.

use std::path::Path;
use std::time::Duration;

use crate::skip_or_fail;
use crate::support::Edgemon;
use crate::support::daemon::Daemon;
use crate::support::mariadb::MariaDb;
use crate::support::tmpfs::Tmpfs;
use crate::support::{temp_dir, wait_until};

const HOSTS: usize = 3;
const SYNCED_PER_HOST: i64 = 4_000;
const UNSYNCED_PER_HOST: i64 = 50;
const ERRORS: i64 = 8_000;

/// Schema version 1 as the first release shipped it.
const SCHEMA_1: &str = include_str!("../../schema/sqlite.sql");

fn config(dir: &Path, disk: &Path, db: &MariaDb) -> std::path::PathBuf {
    let mut text = format!(
        "[appliance]\nid = \"upgrade\"\ndata_dir = \"{}\"\n\n\
         [collect]\ninterval = \"1s\"\n\n\
         [buffer]\npath = \"{}\"\nmin_free = \"0\"\n\n\
         [sync]\nurl = \"{}\"\ninterval = \"1s\"\nmax_backoff = \"2s\"\ntimeout = \"5s\"\n\n",
        dir.join("data").display(),
        disk.join("buffer.sqlite").display(),
        db.url()
    );
    for i in 0..HOSTS {
        text.push_str(&format!(
            "[[hosts]]\nname = \"up-{i}\"\ntransport = \"local\"\n\n"
        ));
    }
    let path = dir.join("edgemon.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A version-1 buffer: synced samples and collection errors, a few unsynced samples.
fn seed_version_1(buffer: &Path) {
    let mut conn = rusqlite::Connection::open(buffer).expect("create the buffer");
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .expect("auto_vacuum");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    let tx = conn.transaction().expect("begin");
    tx.execute_batch(SCHEMA_1).expect("schema 1");
    tx.pragma_update(None, "user_version", 1).expect("version");
    let now = edgemon::buffer::now_ms();
    for i in 0..HOSTS {
        tx.execute(
            "INSERT INTO hosts (name, address, next_seq) VALUES (?1, 'local', ?2)",
            rusqlite::params![format!("up-{i}"), SYNCED_PER_HOST + UNSYNCED_PER_HOST + 1],
        )
        .expect("host");
    }
    tx.execute(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
         INSERT INTO samples (host_id, seq, collected_at, received_at, cpu, cores, mem_used,
                              mem_total, swap_used, swap_total, uptime_s, hostname, os, kernel,
                              sync_state)
         SELECT h.id, n.x, ?2 - 1000 * (?1 - n.x), ?2 - 1000 * (?1 - n.x), 12.5, '10.00,15.00',
                1000, 2000, 0, 0, 100, 'seeded', 'Linux', '6.1', n.x <= ?3
         FROM hosts h, n",
        rusqlite::params![SYNCED_PER_HOST + UNSYNCED_PER_HOST, now, SYNCED_PER_HOST],
    )
    .expect("samples");
    tx.execute(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
         INSERT INTO collection_errors (host_id, at, class, message, sync_state)
         SELECT 1, ?2 - n.x, 'timeout', printf('%0100d', n.x), 1 FROM n",
        rusqlite::params![ERRORS, now],
    )
    .expect("errors");
    tx.commit().expect("commit");
}

fn version(buffer: &Path) -> i64 {
    rusqlite::Connection::open(buffer)
        .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
        .expect("read user_version")
}

#[test]
fn a_pending_migration_on_a_full_disk_neither_stops_sync_nor_collection() {
    let dir = temp_dir();
    let disk = skip_or_fail!(Tmpfs::mount(&dir.path().join("disk"), "8m"));
    let db = skip_or_fail!(MariaDb::start());
    let buffer = disk.path().join("buffer.sqlite");
    seed_version_1(&buffer);
    let total = edgemon::buffer::fs_space(disk.path())
        .expect("statvfs")
        .total;
    let reserve = edgemon::buffer::reserve_size(total);
    let mut reserve_path = buffer.as_os_str().to_owned();
    reserve_path.push(".reserve");
    std::fs::write(&reserve_path, vec![0u8; reserve as usize]).expect("the old reserve");
    let filled = disk.fill("other.log");
    eprintln!(
        "buffer {} bytes at version 1, reserve {reserve}, filler {filled}, {} bytes free",
        std::fs::metadata(&buffer).map_or(0, |m| m.len()),
        disk.avail()
    );
    assert!(disk.avail() < 4096, "the disk is not full");
    let config = config(dir.path(), disk.path(), &db);

    let out = Edgemon::new(dir.path())
        .args(["sync", "--config"])
        .arg(&config)
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "edgemon sync failed on a full disk with a pending migration:\n{stderr}"
    );
    for line in stderr.lines().filter(|l| l.contains("buffer")) {
        eprintln!("edgemon sync: {line}");
    }
    assert_eq!(version(&buffer), edgemon::buffer::SCHEMA_VERSION);
    assert_eq!(
        db.sample_count(),
        Some(HOSTS as i64 * UNSYNCED_PER_HOST),
        "the unsynced samples did not all reach MySQL:\n{stderr}"
    );

    let mut daemon = Daemon::start(dir.path(), &config);
    let synced_before = HOSTS as i64 * UNSYNCED_PER_HOST;
    assert!(
        wait_until(Duration::from_secs(120), || db
            .sample_count()
            .is_some_and(|n| n >= synced_before + 3 * HOSTS as i64)),
        "no new round reached MySQL; log:\n{}",
        daemon.log()
    );
    daemon.stop();
    let log = daemon.log();
    assert!(
        !log.contains("unsynced for") && !log.contains("cannot migrate"),
        "{log}"
    );
    let conn = rusqlite::Connection::open(&buffer).expect("open");
    let dropped: i64 = conn
        .query_row("SELECT COALESCE(SUM(count), 0) FROM drops", [], |r| {
            r.get(0)
        })
        .expect("drops");
    assert_eq!(
        dropped, 0,
        "unsynced samples were shed to make room; log:\n{log}"
    );
    eprintln!(
        "after the upgrade: {} samples in MySQL, {} bytes free",
        db.sample_count().unwrap_or(0),
        disk.avail()
    );
}
