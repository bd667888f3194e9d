//! A damaged buffer file: a real buffer of 15 000 unsynced samples, some of its pages then
//! overwritten with random bytes while the daemon is stopped (as a cheap SD card or a power
//! cut on a lying disk leaves it), then `edgemon run` started on it.
//!
//! Asserted: the damaged file is kept (renamed with a timestamp, same bytes), collection goes
//! on under a new buffer with another epoch, the unsynced samples still readable were copied
//! into it (each host's sequence numbers unique), and it is said loudly: an error in the
//! log, `edgemon status` (text and JSON), `/api/status`, and exactly one operator mail
//! (real aiosmtpd), also after another restart.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::local::status_json;
use crate::skip_or_fail;
use crate::support::daemon::Daemon;
use crate::support::smtp::Smtp;
use crate::support::{Edgemon, free_port, temp_dir, wait_for, wait_until};

const HOSTS: usize = 3;
const SEEDED_PER_HOST: i64 = 5_000;
const WAIT: Duration = Duration::from_secs(120);

fn config(dir: &Path, smtp_port: u16, web_port: u16) -> PathBuf {
    let mut text = format!(
        "[appliance]\nid = \"damaged\"\ndata_dir = \"{}\"\n\n\
         [collect]\ninterval = \"1s\"\n\n\
         [sync]\nurl = \"mysql://edgemon@127.0.0.1:1/edgemon\"\n\n\
         [web]\nlisten = \"127.0.0.1:{web_port}\"\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n\n\
         [mail]\nfrom = \"edgemon@localhost\"\nrecipients = [\"ops@localhost\"]\n\n",
        dir.join("data").display()
    );
    for i in 0..HOSTS {
        text.push_str(&format!(
            "[[hosts]]\nname = \"dmg-{i}\"\ntransport = \"local\"\n\n"
        ));
    }
    let path = dir.join("edgemon.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A buffer written by edgemon with unsynced samples; returns its epoch.
fn seed(buffer: &Path) -> i64 {
    drop(edgemon::buffer::Buffer::open(buffer).expect("create the buffer"));
    let mut conn = rusqlite::Connection::open(buffer).expect("open the buffer");
    let now = edgemon::buffer::now_ms();
    let tx = conn.transaction().expect("begin");
    for i in 0..HOSTS {
        tx.execute(
            "INSERT INTO hosts (name, address, next_seq) VALUES (?1, 'local', ?2)",
            rusqlite::params![format!("dmg-{i}"), SEEDED_PER_HOST + 1],
        )
        .expect("insert host");
    }
    tx.execute(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
         INSERT INTO samples (host_id, seq, collected_at, received_at, cpu, cores, mem_used,
                              mem_total, swap_used, swap_total, uptime_s, hostname, os, kernel)
         SELECT h.id, n.x, ?2 - 1000 * (?1 - n.x), ?2 - 1000 * (?1 - n.x), 12.5, '10.00,15.00',
                1000, 2000, 0, 0, 100, 'seeded', 'Linux', '6.1'
         FROM n, hosts h",
        rusqlite::params![SEEDED_PER_HOST, now],
    )
    .expect("seed samples");
    tx.commit().expect("commit");
    let epoch = conn
        .query_row("SELECT epoch FROM buffer_identity", [], |r| r.get(0))
        .expect("epoch");
    // Closing the last connection checkpoints the WAL into the file and removes it.
    drop(conn);
    epoch
}

/// Overwrites `count` pages from `first` (4 KiB pages) with pseudo-random bytes.
fn garble(buffer: &Path, first: u64, count: u64) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(buffer)
        .expect("open the buffer file");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut page = vec![0u8; 4096];
    for p in first..first + count {
        for b in page.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        file.write_all_at(&page, p * 4096).expect("garble a page");
    }
    file.sync_all().expect("sync");
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    raw.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

fn set_aside_files(data: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(data)
        .expect("read the data dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("buffer.sqlite.damaged-")
                    && !n.ends_with("-wal")
                    && !n.ends_with("-shm")
            })
        })
        .collect();
    found.sort();
    found
}

fn damage_mails(smtp: &Smtp) -> usize {
    smtp.messages()
        .iter()
        .filter(|m| m.subject().contains("DAMAGED buffer"))
        .count()
}

#[test]
fn a_buffer_with_garbage_pages_is_set_aside_salvaged_and_replaced_and_the_operator_is_told() {
    let smtp = skip_or_fail!(Smtp::start());
    let dir = temp_dir();
    let data = dir.path().join("data");
    let buffer = data.join("buffer.sqlite");
    let old_epoch = seed(&buffer);
    let pages = std::fs::metadata(&buffer).expect("size").len() / 4096;
    // Three pages at 40% of the file: inside the samples, away from the schema page.
    garble(&buffer, pages * 2 / 5, 3);
    let damaged_len = std::fs::metadata(&buffer).expect("size").len();
    let web_port = free_port();
    let config = config(dir.path(), smtp.port(), web_port);

    let mut daemon = Daemon::start(dir.path(), &config);
    assert!(
        wait_until(WAIT, || daemon.log_count("round recorded") >= 3),
        "collection did not go on; log:\n{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(
        log.contains("ERROR") && log.contains("the buffer file is damaged"),
        "no error logged about the damage; log:\n{log}"
    );
    let aside = set_aside_files(&data);
    assert_eq!(
        aside.len(),
        1,
        "the damaged file was not kept aside: {aside:?}; log:\n{log}"
    );
    assert_eq!(
        std::fs::metadata(&aside[0]).expect("set-aside file").len(),
        damaged_len,
        "the set-aside file is not the damaged file"
    );

    // A new buffer, another epoch, the readable unsynced samples copied in.
    let status = status_json(dir.path(), &config);
    assert_ne!(status["epoch"].as_i64(), Some(old_epoch), "{status:#}");
    let damaged = &status["damaged"];
    assert_eq!(
        damaged["set_aside"].as_str(),
        aside[0].to_str(),
        "{status:#}"
    );
    let salvaged = damaged["salvaged_samples"]
        .as_i64()
        .expect("salvaged_samples");
    let conn =
        rusqlite::Connection::open_with_flags(&buffer, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the new buffer");
    let copied: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM samples WHERE hostname = 'seeded' AND sync_state = 0",
            [],
            |r| r.get(0),
        )
        .expect("count salvaged");
    let fresh: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM samples WHERE hostname <> 'seeded'",
            [],
            |r| r.get(0),
        )
        .expect("count fresh");
    let skipped = damaged["unreadable_ranges"].as_i64().unwrap_or(0);
    eprintln!(
        "damaged {} of {pages} pages: salvaged {salvaged} of {} unsynced samples ({skipped} \
         unreadable ranges skipped); {fresh} new samples collected under the new buffer",
        3,
        HOSTS as i64 * SEEDED_PER_HOST
    );
    assert_eq!(copied, salvaged, "{status:#}");
    assert!(
        salvaged > 0 && salvaged <= HOSTS as i64 * SEEDED_PER_HOST,
        "{status:#}"
    );
    assert!(fresh >= 3 * HOSTS as i64, "{fresh} new samples");
    let max_seq: i64 = conn
        .query_row("SELECT MAX(next_seq) FROM hosts", [], |r| r.get(0))
        .expect("next_seq");
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM samples", [], |r| r.get(0))
        .expect("rows");
    assert!(max_seq >= 1 && rows == copied + fresh, "{rows} rows");

    let text = Edgemon::new(dir.path())
        .args(["status", "--config"])
        .arg(&config)
        .stdout();
    assert!(text.contains("DAMAGED BUFFER"), "{text}");
    let api = wait_for(WAIT, || http_get(web_port, "/api/status")).expect("/api/status");
    let api: serde_json::Value = serde_json::from_str(&api).expect("JSON");
    assert_eq!(
        api["buffer"]["damaged"]["set_aside"].as_str(),
        aside[0].to_str(),
        "{api:#}"
    );

    // One operator mail, and no second one after a restart on the new buffer.
    assert!(
        smtp.wait_for_messages(1, WAIT)
            .is_some_and(|_| wait_until(WAIT, || damage_mails(&smtp) >= 1)),
        "no operator mail about the damage; log:\n{}",
        daemon.log()
    );
    daemon.stop();
    let mut daemon = Daemon::start(dir.path(), &config);
    assert!(
        wait_until(WAIT, || daemon.log_count("round recorded") >= 3),
        "the restart did not collect; log:\n{}",
        daemon.log()
    );
    std::thread::sleep(Duration::from_secs(2));
    daemon.stop();
    assert_eq!(
        damage_mails(&smtp),
        1,
        "the damage was mailed more than once"
    );
    assert_eq!(
        set_aside_files(&data).len(),
        1,
        "the new buffer was set aside too"
    );
}

/// The same damage while the daemon runs: every page but the first overwritten between two
/// rounds. The next round that reads a page from the file meets SQLITE_CORRUPT; the daemon
/// joins sync and mail, sets the file aside, and goes on under a new buffer.
#[test]
fn a_buffer_garbled_under_the_running_daemon_is_replaced_and_collection_goes_on() {
    let smtp = skip_or_fail!(Smtp::start());
    let dir = temp_dir();
    let data = dir.path().join("data");
    let buffer = data.join("buffer.sqlite");
    let old_epoch = seed(&buffer);
    let config = config(dir.path(), smtp.port(), free_port());
    let mut daemon = Daemon::start(dir.path(), &config);
    assert!(
        wait_until(WAIT, || daemon.log_count("round recorded") >= 2),
        "the daemon never collected; log:\n{}",
        daemon.log()
    );
    let pages = std::fs::metadata(&buffer).expect("size").len() / 4096;
    garble(&buffer, 1, pages - 1);
    let replaced = wait_until(WAIT, || daemon.log_count("the buffer file is damaged") >= 1);
    assert!(
        replaced,
        "the damage was never detected; log:\n{}",
        daemon.log()
    );
    let rounds = daemon.log_count("round recorded");
    assert!(
        wait_until(WAIT, || daemon.log_count("round recorded") >= rounds + 3),
        "collection did not go on under the new buffer; log:\n{}",
        daemon.log()
    );
    assert_eq!(
        set_aside_files(&data).len(),
        1,
        "{:?}",
        set_aside_files(&data)
    );
    let status = status_json(dir.path(), &config);
    assert_ne!(status["epoch"].as_i64(), Some(old_epoch), "{status:#}");
    assert!(status["damaged"].is_object(), "{status:#}");
    assert!(
        wait_until(WAIT, || damage_mails(&smtp) == 1),
        "no operator mail; log:\n{}",
        daemon.log()
    );
    daemon.stop();
    let log = daemon.log();
    let lost = log.matches("recording the round failed").count();
    eprintln!("rounds lost to the damage before the replacement: {lost}");
}
