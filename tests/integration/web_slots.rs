//! The page cannot be held shut (issue 19, item 9), against the real daemon:
//! 200 sockets that never send a request (reopened as soon as the server
//! closes one) and a few slowloris clients (one header byte every 500 ms) on
//! `[web] listen` and on `[metrics] listen`, while the operator's GET of the
//! status API and of `/metrics` still answer within a bounded wait; and a
//! page request abandoned at `web.request_timeout` has its buffer read
//! interrupted instead of running on the blocking pool, leaving no reader on
//! the buffer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::local::local_config;
use crate::support::daemon::Daemon;
use crate::support::{Edgemon, free_port, temp_dir, wait_for, wait_until};

/// Clients that hold connections without ever completing a request, until dropped.
struct Attack {
    stop: Arc<AtomicBool>,
    reopened: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Attack {
    /// `idle` silent sockets and `slow` slowloris clients on each of `ports`.
    fn start(ports: &[u16], idle: usize, slow: usize) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let reopened = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for &port in ports {
            let (stop_idle, reopened) = (stop.clone(), reopened.clone());
            threads.push(std::thread::spawn(move || {
                let stop = stop_idle;
                let connect = || TcpStream::connect(("127.0.0.1", port)).ok();
                let mut sockets: Vec<Option<TcpStream>> = (0..idle).map(|_| connect()).collect();
                while !stop.load(Ordering::SeqCst) {
                    for slot in sockets.iter_mut() {
                        let closed = match slot {
                            Some(stream) => {
                                let _ = stream.set_nonblocking(true);
                                let mut byte = [0u8; 1];
                                matches!(stream.read(&mut byte), Ok(0))
                                    || matches!(stream.read(&mut byte), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock)
                            }
                            None => true,
                        };
                        if closed {
                            *slot = connect();
                            reopened.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }));
            for _ in 0..slow {
                let stop = stop.clone();
                threads.push(std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        };
                        let _ = stream.write_all(b"GET / HTTP/1.1\r\nX-Slow: ");
                        while !stop.load(Ordering::SeqCst) && stream.write_all(b"a").is_ok() {
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                }));
            }
        }
        Attack {
            stop,
            reopened,
            threads,
        }
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One GET with a bounded wait for the whole answer; the status line and the time it took.
fn operator_get(port: u16, path: &str, wait: Duration) -> (Option<String>, Duration) {
    let start = Instant::now();
    let answer = (|| {
        let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), wait).ok()?;
        stream.set_read_timeout(Some(wait)).ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        text.lines().next().map(str::to_string)
    })();
    (answer, start.elapsed())
}

#[test]
fn idle_and_slow_clients_cannot_hold_the_page_or_metrics_shut() {
    let dir = temp_dir();
    let (web, metrics) = (free_port(), free_port());
    let config = local_config(
        dir.path(),
        1,
        &format!(
            "[web]\nlisten = \"127.0.0.1:{web}\"\n\n[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n"
        ),
    );
    let daemon = Daemon::start(dir.path(), &config);
    assert!(
        wait_until(Duration::from_secs(60), || {
            operator_get(web, "/api/status", Duration::from_secs(5))
                .0
                .is_some_and(|s| s.contains(" 200 "))
        }),
        "the page never answered; log:\n{}",
        daemon.log()
    );

    let attack = Attack::start(&[web, metrics], 200, 4);
    // Let every idle socket connect and the slowloris clients start.
    std::thread::sleep(Duration::from_secs(3));
    const WAIT: Duration = Duration::from_secs(15);
    let mut taken = Vec::new();
    for round in 0..3 {
        for (port, path) in [(web, "/api/status"), (web, "/"), (metrics, "/metrics")] {
            let (status, took) = operator_get(port, path, WAIT);
            taken.push(took);
            assert!(
                status
                    .as_deref()
                    .is_some_and(|s| s.starts_with("HTTP/1.1 200")),
                "GET {path} (attempt {round}) under 200 idle sockets and 4 slowloris clients: \
                 {status:?} after {took:?}; log:\n{}",
                daemon.log()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let reclaimed = attack.reopened.load(Ordering::SeqCst);
    drop(attack);
    taken.sort();
    eprintln!(
        "under attack: operator GETs answered, median {:?}, longest {:?}; attacker sockets \
         closed by the server and reopened: {reclaimed}",
        taken[taken.len() / 2],
        taken[taken.len() - 1]
    );
}

/// Copies `host`'s first sample `rows` times into the past (100 ms apart), as if the buffer
/// had held a day of samples at a short interval.
fn grow_buffer(buffer: &Path, host: &str, rows: i64) {
    let db = rusqlite::Connection::open(buffer).expect("open the buffer");
    let columns: Vec<String> = db
        .prepare("SELECT name FROM pragma_table_info('samples')")
        .expect("columns")
        .query_map([], |r| r.get(0))
        .expect("columns")
        .collect::<Result<_, _>>()
        .expect("columns");
    let (host_id, next_seq, at): (i64, i64, i64) = db
        .query_row(
            "SELECT h.id, h.next_seq, MIN(s.received_at) FROM hosts h JOIN samples s \
             ON s.host_id = h.id WHERE h.name = ?1",
            [host],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("the host's first sample");
    let names: Vec<&str> = columns
        .iter()
        .map(String::as_str)
        .filter(|c| *c != "id")
        .collect();
    let values: Vec<String> = names
        .iter()
        .map(|c| match *c {
            "seq" => format!("{next_seq} + n.i"),
            "received_at" | "collected_at" => format!("{at} - (n.i + 1) * 100"),
            other => format!("s.{other}"),
        })
        .collect();
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {rows}) \
         INSERT INTO samples ({}) SELECT {} FROM n, \
         (SELECT * FROM samples WHERE host_id = {host_id} ORDER BY seq LIMIT 1) s",
        names.join(", "),
        values.join(", ")
    );
    db.execute_batch(&format!(
        "BEGIN; {sql}; UPDATE hosts SET next_seq = next_seq + {rows} WHERE id = {host_id}; COMMIT;"
    ))
    .expect("grow the buffer");
}

#[test]
fn a_page_request_abandoned_at_its_deadline_stops_its_buffer_read() {
    let dir = temp_dir();
    let web = free_port();
    let extra = format!("[web]\nlisten = \"127.0.0.1:{web}\"\nrequest_timeout = \"1s\"\n");
    let config = local_config(dir.path(), 1, &extra);
    Edgemon::new(dir.path())
        .args(["collect", "--config"])
        .arg(&config)
        .stdout();
    let buffer = dir.path().join("data/buffer.sqlite");
    let grown = Instant::now();
    const ROWS: i64 = 1_500_000;
    grow_buffer(&buffer, "self-0", ROWS);
    eprintln!("{ROWS} samples written in {:?}", grown.elapsed());
    // What the same read costs when nobody abandons it.
    let reader = edgemon::buffer::StatusReader::open(&buffer).expect("open a reader");
    let full = Instant::now();
    reader
        .host_series("self-0", 0, edgemon::buffer::now_ms(), 720)
        .expect("the full read");
    let full = full.elapsed();
    drop(reader);
    eprintln!("the page's read of every sample takes {full:?} when run to its end");

    let daemon = Daemon::start(dir.path(), &config);
    assert!(
        wait_until(Duration::from_secs(60), || daemon
            .log_count("round recorded")
            >= 1),
        "no round; log:\n{}",
        daemon.log()
    );
    // Every sample of the host, bucketed: a read over all of them, longer than the 1 s deadline.
    let started = Instant::now();
    let (status, _) = operator_get(
        web,
        "/api/hosts/self-0/samples?since=0",
        Duration::from_secs(60),
    );
    let dropped_after = started.elapsed();
    let interrupted = wait_for(Duration::from_secs(60), || {
        daemon
            .log()
            .contains("its buffer read was interrupted")
            .then(|| started.elapsed())
    });
    let log = daemon.log();
    eprintln!(
        "slow page request: answer {status:?} after {dropped_after:?}; read interrupted \
         {interrupted:?} after the request"
    );
    assert!(
        status.is_none(),
        "the request was answered ({status:?}) instead of being abandoned at its deadline \
         (the read was not slow enough for this test)"
    );
    assert!(
        interrupted.is_some(),
        "the abandoned request's read was never interrupted; log:\n{log}"
    );
    // No reader is left on the buffer: a truncating checkpoint, which waits for every reader
    // to leave the WAL, completes.
    let db = rusqlite::Connection::open(&buffer).expect("open the buffer");
    db.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    let done = wait_until(Duration::from_secs(30), || {
        db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
        .is_ok_and(|busy| busy == 0)
    });
    assert!(done, "a reader still holds the buffer; log:\n{log}");
}
