//! A long reader costs nothing: the real daemon on a buffer of a million samples (seeded with
//! SQL, so the test does not collect for days) while another process — python3's sqlite3
//! module, as an operator's script or `sqlite3 .backup` would — holds a read snapshot of
//! `buffer.sqlite` for two minutes. Retention sheds synced samples on every pass meanwhile (they
//! cross `keep_synced` as the test runs), the path that used to run truncating checkpoints
//! that waited for the reader with the writer lock held.
//!
//! Asserted: no round lost (no "recording the round failed", no "not stored" drop, each
//! host's sequence numbers gapless, every host stored during the reader), no mail sent twice
//! (real aiosmtpd, Message-IDs unique, every received mail marked sent), and `edgemon status`
//! answered during the reader. Printed, not asserted: the rounds lost, the longest round and the
//! longest gap between two samples of a host during the reader.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::local::status_json;
use crate::skip_or_fail;
use crate::support::daemon::Daemon;
use crate::support::smtp::Smtp;
use crate::support::{ChildGuard, temp_dir, wait_until};

const HOSTS: usize = 10;
const SEEDED_PER_HOST: i64 = 100_000;
const READER_HOLDS: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(120);

fn config(dir: &Path, smtp_port: u16) -> std::path::PathBuf {
    let mut text = format!(
        "[appliance]\nid = \"readers\"\ndata_dir = \"{}\"\n\n\
         [collect]\ninterval = \"1s\"\n\n\
         [buffer]\nkeep_synced = \"1h\"\nmax_size = \"4GiB\"\nmin_free = \"0\"\n\n\
         [sync]\nurl = \"mysql://edgemon@127.0.0.1:1/edgemon\"\ninterval = \"1s\"\nmax_backoff = \"1s\"\n\n\
         [defaults.alerts]\nmemory = \"0%\"\ncpu = \"off\"\nswap = \"off\"\n\n\
         [alert]\nrepeat = \"2s\"\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n\n\
         [mail]\nfrom = \"edgemon@localhost\"\nrecipients = [\"ops@localhost\"]\nrate_limit = 10000\n\n",
        dir.join("data").display()
    );
    for i in 0..HOSTS {
        text.push_str(&format!(
            "[[hosts]]\nname = \"self-{i}\"\ntransport = \"local\"\n\n"
        ));
    }
    let path = dir.join("edgemon.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A buffer of `HOSTS * SEEDED_PER_HOST` synced samples whose receive times span the hour of
/// `keep_synced` and start crossing it 20 s from now, so every retention pass sheds some.
fn seed(buffer: &Path) {
    drop(edgemon::buffer::Buffer::open(buffer).expect("create the buffer"));
    let mut conn = rusqlite::Connection::open(buffer).expect("open the buffer");
    let now = edgemon::buffer::now_ms();
    let first = now - 3_600_000 + 20_000;
    let step = 3_600_000 / SEEDED_PER_HOST;
    let tx = conn.transaction().expect("begin");
    for i in 0..HOSTS {
        tx.execute(
            "INSERT INTO hosts (name, address, next_seq) VALUES (?1, 'local', ?2)",
            rusqlite::params![format!("self-{i}"), SEEDED_PER_HOST + 1],
        )
        .expect("insert host");
    }
    tx.execute(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
         INSERT INTO samples (host_id, seq, collected_at, received_at, cpu, cores, mem_used,
                              mem_total, swap_used, swap_total, uptime_s, hostname, os, kernel,
                              sync_state, synced_at)
         SELECT h.id, n.x, ?2 + n.x * ?3, ?2 + n.x * ?3, 12.5, '10.00,15.00', 1000, 2000, 0, 0,
                100, 'seeded', 'Linux', '6.1', 1, ?2 + n.x * ?3
         FROM hosts h, n",
        rusqlite::params![SEEDED_PER_HOST, first, step],
    )
    .expect("seed samples");
    tx.commit().expect("commit the seed");
}

/// Rounds' `wall_ms` in the log, in order.
fn round_walls(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("round recorded"))
        .filter_map(|l| {
            let at = l.find("wall_ms=")? + "wall_ms=".len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

#[test]
fn a_reader_holding_a_snapshot_for_two_minutes_on_a_million_samples_costs_no_round_and_no_mail() {
    let smtp = skip_or_fail!(Smtp::start());
    let dir = temp_dir();
    let buffer = dir.path().join("data/buffer.sqlite");
    let seeding = Instant::now();
    seed(&buffer);
    eprintln!(
        "seeded {} samples in {:?}",
        HOSTS as i64 * SEEDED_PER_HOST,
        seeding.elapsed()
    );
    let config = config(dir.path(), smtp.port());
    let mut daemon = Daemon::start(dir.path(), &config);
    assert!(
        wait_until(WAIT, || daemon.log_count("round recorded") >= 3),
        "the daemon never recorded rounds; log:\n{}",
        daemon.log()
    );
    assert!(
        smtp.wait_for_messages(1, WAIT).is_some(),
        "no mail before the reader; log:\n{}",
        daemon.log()
    );

    // The reader: a snapshot taken, then held for READER_HOLDS.
    let held = dir.path().join("reader.held");
    let script = format!(
        "import sqlite3, sys, time\n\
         c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
         c.execute('BEGIN')\n\
         n = c.execute('SELECT COUNT(*) FROM samples').fetchone()[0]\n\
         open(sys.argv[2], 'w').write(str(n))\n\
         time.sleep({})\n\
         c.execute('COMMIT')\n",
        READER_HOLDS.as_secs()
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(&script).arg(&buffer).arg(&held);
    let mut reader = skip_or_fail!(ChildGuard::spawn("python3 reader", &mut cmd));
    assert!(
        wait_until(WAIT, || held.exists()),
        "the reader never took its snapshot"
    );
    let reader_from = edgemon::buffer::now_ms();
    let rounds_before = daemon.log_count("round recorded");
    let walls_before = round_walls(&daemon.log()).len();
    eprintln!(
        "reader holds a snapshot of {} samples",
        std::fs::read_to_string(&held).unwrap_or_default()
    );

    // Status answers meanwhile, from the bookkeeping rather than a scan.
    let status = status_json(dir.path(), &config);
    assert!(
        status["samples"].as_i64() > Some(HOSTS as i64 * SEEDED_PER_HOST / 2),
        "{status:#}"
    );
    assert!(
        reader.wait_exit(READER_HOLDS + WAIT),
        "the reader did not end"
    );
    let reader_to = edgemon::buffer::now_ms();
    // Two more rounds, so that a round lost at the end would show as a drop record.
    let rounds_during = daemon.log_count("round recorded") - rounds_before;
    assert!(
        wait_until(WAIT, || daemon.log_count("round recorded")
            >= rounds_before + rounds_during + 2),
        "collection stopped after the reader; log:\n{}",
        daemon.log()
    );
    // Let the mailer finish what the window queued, then stop.
    std::thread::sleep(Duration::from_secs(3));
    daemon.stop();
    let log = daemon.log();

    let lost = log.matches("recording the round failed").count();
    let walls = round_walls(&log);
    let window = &walls[walls_before.min(walls.len())..];
    let longest = window.iter().copied().max().unwrap_or(0);
    let mut sorted_before = walls[..walls_before.min(walls.len())].to_vec();
    sorted_before.sort_unstable();
    let mut sorted_window = window.to_vec();
    sorted_window.sort_unstable();
    let median = |v: &[u64]| v.get(v.len() / 2).copied().unwrap_or(0);
    eprintln!(
        "round wall: median {} ms before the reader, {} ms from its start on",
        median(&sorted_before),
        median(&sorted_window)
    );
    let conn = rusqlite::Connection::open(&buffer).expect("open the buffer");
    let mut per_host: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut stmt = conn
        .prepare(
            "SELECT h.name, s.received_at FROM samples s JOIN hosts h ON h.id = s.host_id
             WHERE s.received_at BETWEEN ?1 AND ?2 ORDER BY 1, 2",
        )
        .expect("prepare");
    for row in stmt
        .query_map([reader_from, reader_to], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
    {
        let (host, at): (String, i64) = row.expect("row");
        per_host.entry(host).or_default().push(at);
    }
    let longest_gap = per_host
        .values()
        .flat_map(|t| t.windows(2).map(|w| w[1] - w[0]))
        .max()
        .unwrap_or(0);
    eprintln!(
        "during a {:?} reader: {rounds_during} rounds recorded, {lost} lost; longest round \
         {longest} ms; longest gap between a host's samples {longest_gap} ms",
        READER_HOLDS
    );
    assert_eq!(
        lost, 0,
        "rounds lost while a reader held a snapshot; log:\n{log}"
    );
    let not_stored: i64 = conn
        .query_row(
            "SELECT COALESCE(SUM(count), 0) FROM drops WHERE reason LIKE 'not stored%'",
            [],
            |r| r.get(0),
        )
        .expect("count drops");
    assert_eq!(not_stored, 0, "samples recorded as not stored");
    assert_eq!(
        per_host.len(),
        HOSTS,
        "a host stored nothing during the reader: {per_host:?}"
    );
    // Every sample the daemon collected is there: each host's sequence numbers are gapless
    // (a lost round would have left a gap, filled only by a drop record).
    let mut stmt = conn
        .prepare(
            "SELECT h.name, COUNT(*), MAX(s.seq) - MIN(s.seq) + 1 FROM samples s
             JOIN hosts h ON h.id = s.host_id WHERE s.hostname <> 'seeded' GROUP BY h.name",
        )
        .expect("prepare");
    let gaps: Vec<(String, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(gaps.len(), HOSTS, "{gaps:?}");
    for (host, held, span) in &gaps {
        assert_eq!(
            held, span,
            "{host}: {held} samples over {span} sequence numbers"
        );
    }
    let shed: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM samples WHERE hostname = 'seeded'",
            [],
            |r| r.get(0),
        )
        .expect("count seeded");
    assert!(
        shed < HOSTS as i64 * SEEDED_PER_HOST,
        "retention shed nothing, so the test did not exercise its checkpoints"
    );

    // Mail: each accepted once and marked sent.
    let mails = smtp.messages();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for mail in &mails {
        *ids.entry(mail.message_id().to_string()).or_default() += 1;
    }
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "mail delivered twice: {twice:?}");
    let sent: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE state = 'sent'",
            [],
            |r| r.get(0),
        )
        .expect("count sent");
    assert_eq!(
        sent as usize,
        ids.len(),
        "mails received and mails marked sent differ"
    );
    eprintln!("{} mails, each delivered once and marked sent", ids.len());
}
