//! SIGHUP while a mail hangs on a blackholed SMTP server (issue 19, item 7): the
//! reload restarts the mailer, whose old thread is stuck in the server's
//! greeting for `smtp.timeout`, and the rounds go on at their cadence
//! meanwhile; the sync thread, whose sections did not change, is not restarted.

use std::io::Write as _;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::{free_port, temp_dir, wait_until};

/// An SMTP "server" that accepts connections and never says a word, until released.
pub struct Blackhole {
    port: u16,
    accepted: Arc<AtomicUsize>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Blackhole {
    /// Listens on a free loopback port.
    pub fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the blackhole");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let (accepted, held, done) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicBool::new(false)),
        );
        let thread = {
            let (accepted, held, done) = (accepted.clone(), held.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                            held.lock().expect("held").push(stream);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Blackhole {
            port,
            accepted,
            held,
            done,
            thread: Some(thread),
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops listening and closes every held connection (the client sees EOF).
    pub fn release(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        for stream in self.held.lock().expect("held").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.release();
    }
}

/// Two local hosts and one SSH host on a closed port (unreachable at once, so its alert mail
/// is queued at the first round), mail through `smtp_port` with `recipients`.
fn write_config(
    dir: &Path,
    smtp_port: u16,
    dead_port: u16,
    recipients: &str,
) -> std::path::PathBuf {
    let text = format!(
        "[appliance]\nid = \"reload-it\"\ndata_dir = \"{data}\"\n\n[collect]\ninterval = \"1s\"\n\n\
         [sync]\nurl = \"mysql://edgemon@127.0.0.1:1/edgemon\"\n\n\
         [defaults.alerts]\ncpu = \"off\"\nmemory = \"off\"\nswap = \"off\"\nreboot = false\nunreachable_after = 1\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\ntimeout = \"60s\"\n\n\
         [mail]\nfrom = \"edgemon@localhost\"\nrecipients = [{recipients}]\n\n\
         [[hosts]]\nname = \"self-0\"\ntransport = \"local\"\n\n\
         [[hosts]]\nname = \"self-1\"\ntransport = \"local\"\n\n\
         [[hosts]]\nname = \"dead\"\naddress = \"127.0.0.1\"\nport = {dead_port}\nuser = \"mon\"\npassword = \"unused\"\n",
        data = dir.join("data").display()
    );
    let path = dir.join("edgemon.toml");
    let mut file = std::fs::File::create(&path).expect("write config");
    file.write_all(text.as_bytes()).expect("write config");
    path
}

/// `received_at` of `host`'s samples, oldest first.
pub fn sample_times(buffer: &Path, host: &str) -> Vec<i64> {
    try_sample_times(buffer, host).expect("read the host's samples from the buffer")
}

/// [`sample_times`], or `None` while the buffer or its schema does not exist yet.
pub fn try_sample_times(buffer: &Path, host: &str) -> Option<Vec<i64>> {
    let db =
        rusqlite::Connection::open_with_flags(buffer, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .ok()?;
    db.busy_timeout(Duration::from_secs(10)).ok()?;
    let mut stmt = db
        .prepare(
            "SELECT s.received_at FROM samples s JOIN hosts h ON h.id = s.host_id \
             WHERE h.name = ?1 ORDER BY s.received_at",
        )
        .ok()?;
    stmt.query_map([host], |r| r.get(0))
        .ok()?
        .collect::<Result<_, _>>()
        .ok()
}

/// The longest gap between consecutive times that end inside `[from, to]`, including the
/// gaps from `from` to the first time and from the last to `to`.
pub fn longest_gap(times: &[i64], from: i64, to: i64) -> i64 {
    let mut points: Vec<i64> = times
        .iter()
        .copied()
        .filter(|t| (from..=to).contains(t))
        .collect();
    points.insert(0, from);
    points.push(to);
    points
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(to - from)
}

fn now_ms() -> i64 {
    edgemon::buffer::now_ms()
}

#[test]
fn sighup_during_a_mail_stuck_on_a_blackholed_smtp_server_delays_no_round() {
    let mut blackhole = Blackhole::start();
    let dir = temp_dir();
    let dead_port = free_port();
    let config = write_config(dir.path(), blackhole.port, dead_port, "\"ops@localhost\"");
    let mut daemon = Daemon::start(dir.path(), &config);
    assert!(
        wait_until(Duration::from_secs(60), || blackhole.accepted() >= 1),
        "the mailer never connected to the blackhole; log:\n{}",
        daemon.log()
    );
    // The mailer now waits for a greeting that never comes. Change [mail] only and reload.
    std::thread::sleep(Duration::from_secs(1));
    write_config(
        dir.path(),
        blackhole.port,
        dead_port,
        "\"ops@localhost\", \"oncall@localhost\"",
    );
    let reload_at = now_ms();
    daemon.signal("HUP");
    const WINDOW_MS: i64 = 12_000;
    std::thread::sleep(Duration::from_millis(WINDOW_MS as u64 + 500));
    let buffer = dir.path().join("data/buffer.sqlite");
    let times = sample_times(&buffer, "self-0");
    let in_window = times
        .iter()
        .filter(|t| (reload_at..=reload_at + WINDOW_MS).contains(t))
        .count();
    let gap = longest_gap(&times, reload_at, reload_at + WINDOW_MS);
    let log = daemon.log();
    eprintln!(
        "reload under a stuck mail: self-0 got {in_window} samples in {WINDOW_MS} ms after \
         SIGHUP at a 1 s interval; longest round gap {gap} ms"
    );
    assert!(
        log.contains("configuration reloaded"),
        "the reload did not happen; log:\n{log}"
    );
    // 12 ticks; generous for a loaded machine, far from the 0 of a loop blocked on the mailer.
    assert!(
        in_window >= 6,
        "rounds stalled behind the stuck mailer: {in_window} samples in {WINDOW_MS} ms \
         (longest gap {gap} ms); log:\n{log}"
    );
    assert!(
        log.contains("restarted=\"mail\"") || log.contains("restarted=mail"),
        "only the mailer restarts (sync's sections did not change); log:\n{log}"
    );
    // Release the blackhole: the old mailer's send fails, it ends and is joined, and the
    // daemon stops cleanly with every thread joined.
    blackhole.release();
    let status = daemon.stop();
    let log = daemon.log();
    assert!(status.success(), "exit {status}; log:\n{log}");
    assert!(
        log.contains("previous generation joined"),
        "the superseded mailer was never joined; log:\n{log}"
    );
}
