//! `edgemon run` as a real process: the metrics endpoint shows real figures,
//! SIGTERM ends it cleanly and promptly without losing a sample, a second
//! daemon on the same data directory is refused, SIGHUP reloads the host list,
//! and `run --once` against a real SMTP server mails FIRING, then RESOLVED.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::local::{local_config, status_json};
use crate::skip_or_fail;
use crate::support::smtp::Smtp;
use crate::support::{Edgemon, free_port, temp_dir, wait_for, wait_until};

struct Daemon(Child);

impl Daemon {
    fn start(dir: &std::path::Path, config: &std::path::Path) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_edgemon"))
            .args(["run", "--config"])
            .arg(config)
            .current_dir(dir)
            .env("EDGEMON_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start edgemon run");
        Daemon(child)
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args(["-s", name, &self.0.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -s {name} failed");
    }

    /// Waits for exit; returns the status and stderr.
    fn wait(&mut self, timeout: Duration) -> (Option<std::process::ExitStatus>, String) {
        let start = Instant::now();
        let status = loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                break Some(status);
            }
            if start.elapsed() > timeout {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if status.is_some()
            && let Some(mut pipe) = self.0.stderr.take()
        {
            let _ = pipe.read_to_string(&mut stderr);
        }
        (status, stderr)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn sigterm_stops_the_daemon_cleanly_and_keeps_every_sample() {
    let dir = temp_dir();
    let port = free_port();
    let config = local_config(
        dir.path(),
        2,
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let mut daemon = Daemon::start(dir.path(), &config);

    let page = wait_for(Duration::from_secs(60), || {
        let page = http_get(port, "/metrics")?;
        (metric(&page, "edgemon_rounds_total")? >= 2.0).then_some(page)
    })
    .unwrap_or_else(|| {
        panic!(
            "no second round on /metrics; stderr: {:?}",
            daemon.wait(Duration::ZERO).1
        )
    });
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        metric(&page, "edgemon_samples_collected_total").unwrap_or(0.0) >= 4.0,
        "{page}"
    );
    assert!(
        page.contains("edgemon_host_up{host=\"self-0\",error=\"\"} 1"),
        "{page}"
    );
    assert!(
        metric(&page, "edgemon_buffer_unsynced").unwrap_or(0.0) >= 4.0,
        "{page}"
    );
    // The config points sync at a closed port: the failures are counted, not hidden.
    let errors = wait_for(Duration::from_secs(30), || {
        metric(&http_get(port, "/metrics")?, "edgemon_sync_errors_total").filter(|e| *e >= 1.0)
    });
    assert!(errors.is_some(), "sync errors are not counted on /metrics");
    let health = http_get(port, "/healthz").expect("healthz");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );

    // A second daemon on the same data directory is refused.
    let out = Edgemon::new(dir.path())
        .args(["run", "--config"])
        .arg(&config)
        .assert_err();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already running"), "{stderr}");

    let before = http_get(port, "/metrics")
        .and_then(|p| metric(&p, "edgemon_samples_collected_total"))
        .expect("metrics");
    daemon.signal("TERM");
    let (status, stderr) = daemon.wait(Duration::from_secs(10));
    let status =
        status.unwrap_or_else(|| panic!("edgemon run did not stop within 10 s of SIGTERM"));
    assert!(status.success(), "exit {status}; stderr:\n{stderr}");

    // Every sample counted before the signal is in the buffer (rounds after it may add more).
    let stored = status_json(dir.path(), &config)["samples"]
        .as_f64()
        .expect("samples");
    assert!(
        stored >= before,
        "stored {stored} < collected {before}\n{stderr}"
    );
}

#[test]
fn sighup_reloads_the_host_list() {
    let dir = temp_dir();
    let config = local_config(dir.path(), 1, "");
    let mut daemon = Daemon::start(dir.path(), &config);
    let has_sample = |name: &str| {
        let out = Edgemon::new(dir.path())
            .args(["status", "--json", "--config"])
            .arg(&config)
            .output();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        status["hosts"].as_array().is_some_and(|hosts| {
            hosts
                .iter()
                .any(|h| h["name"] == name && h["last_seq"].as_i64() >= Some(1))
        })
    };
    assert!(
        wait_until(Duration::from_secs(60), || has_sample("self-0")),
        "no first sample"
    );
    local_config(dir.path(), 2, "");
    daemon.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(60), || has_sample("self-1")),
        "the added host got no sample after SIGHUP"
    );
    daemon.signal("TERM");
    let (status, stderr) = daemon.wait(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");
}

#[test]
fn run_once_mails_firing_then_resolved_through_real_smtp() {
    let smtp = skip_or_fail!(Smtp::start());
    let dir = temp_dir();
    let mail = |memory: &str| {
        format!(
            "[hosts.alerts]\nmemory = \"{memory}\"\ncpu = \"off\"\nswap = \"off\"\n\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\n\
             [mail]\nfrom = \"edgemon@localhost\"\nrecipients = [\"ops@localhost\"]\n",
            smtp.port()
        )
    };
    let config = local_config(dir.path(), 1, &mail("0%"));
    Edgemon::new(dir.path())
        .args(["run", "--once", "--config"])
        .arg(&config)
        .stdout();
    let mails = smtp
        .wait_for_messages(1, Duration::from_secs(30))
        .expect("a FIRING mail");
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let subject = mails[0].subject();
    assert!(
        subject.contains("FIRING") && subject.contains("memory") && subject.contains("self-0"),
        "{subject}"
    );
    assert!(subject.contains("> 0%"), "the limit is named: {subject}");
    assert!(mails[0].body.contains("self-0"), "{}", mails[0].body);

    local_config(dir.path(), 1, &mail("100%"));
    Edgemon::new(dir.path())
        .args(["run", "--once", "--config"])
        .arg(&config)
        .stdout();
    let mails = smtp
        .wait_for_messages(2, Duration::from_secs(30))
        .expect("a RESOLVED mail");
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert!(
        mails[1].subject().contains("RESOLVED") && mails[1].subject().contains("memory"),
        "{}",
        mails[1].subject()
    );
}
