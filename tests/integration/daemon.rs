//! `edgemon run` as a real process: the metrics endpoint shows real figures,
//! SIGTERM ends it cleanly and promptly without losing a sample, a second
//! daemon on the same data directory is refused, SIGHUP reloads the host list
//! and keeps the SSH sessions of unchanged hosts, MySQL and a mail directory
//! that are missing at start are picked up when they appear, and `run --once`
//! against a real SMTP server mails FIRING, then RESOLVED.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::local::{local_config, status_json};
use crate::skip_or_fail;
use crate::support::daemon::Daemon;
use crate::support::mariadb::MariaDb;
use crate::support::smtp::Smtp;
use crate::support::sshd::Sshd;
use crate::support::{Edgemon, free_port, temp_dir, wait_for, wait_until};

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
        page.contains("edgemon_host_up{host=\"self-0\"} 1"),
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

/// The metric `name` on the endpoint at `port`, when it answers.
fn scrape(port: u16, name: &str) -> Option<f64> {
    metric(&http_get(port, "/metrics")?, name)
}

/// A daemon config: hosts `names` on `sshd`, plus `extra` TOML.
fn ssh_daemon_config(
    dir: &std::path::Path,
    sshd: &Sshd,
    names: &[&str],
    extra: &str,
) -> std::path::PathBuf {
    let mut text = format!(
        "[appliance]\nid = \"it\"\ndata_dir = \"{data}\"\n\
         [collect]\ninterval = \"1s\"\nagent_dir = \"{data}/remote-agent\"\n\
         [defaults]\nport = {port}\nuser = \"{user}\"\nidentity_file = \"{key}\"\n\
         [sync]\nurl = \"mysql://nobody@127.0.0.1:1/none\"\n",
        data = dir.join("data").display(),
        port = sshd.port(),
        user = sshd.user(),
        key = sshd.ed25519_key().display(),
    );
    for name in names {
        text.push_str(&format!(
            "[[hosts]]\nname = \"{name}\"\naddress = \"127.0.0.1\"\n"
        ));
    }
    text.push_str(extra);
    let path = dir.join("edgemon.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn sighup_keeps_the_ssh_sessions_of_hosts_whose_settings_did_not_change() {
    let sshd = skip_or_fail!(Sshd::start());
    let dir = temp_dir();
    let port = free_port();
    let metrics = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let config = ssh_daemon_config(dir.path(), &sshd, &["h00", "h01"], &metrics);
    let connections = || sshd.log().matches("Connection from").count();
    // The harness's readiness probe connected too.
    let probes = connections();
    let mut daemon = Daemon::start(dir.path(), &config);
    assert!(
        wait_until(Duration::from_secs(60), || {
            scrape(port, "edgemon_rounds_total").is_some_and(|r| r >= 2.0)
                && scrape(port, "edgemon_samples_collected_total").is_some_and(|s| s >= 4.0)
        }),
        "no two good rounds; stderr: {:?}",
        daemon.wait(Duration::ZERO).1
    );
    let before = connections();
    assert_eq!(
        before,
        probes + 2,
        "one connection per host:\n{}",
        sshd.log()
    );

    // Reload with one more host; h00 and h01 are unchanged.
    let extra = format!("{metrics}[[hosts]]\nname = \"self-0\"\ntransport = \"local\"\n");
    ssh_daemon_config(dir.path(), &sshd, &["h00", "h01"], &extra);
    daemon.signal("HUP");
    let up = |host: &str| {
        http_get(port, "/metrics")
            .is_some_and(|p| p.contains(&format!("edgemon_host_up{{host=\"{host}\"}} 1")))
    };
    assert!(
        wait_until(Duration::from_secs(60), || up("self-0")),
        "the added host got no sample after SIGHUP"
    );
    let rounds = scrape(port, "edgemon_rounds_total").expect("rounds");
    assert!(
        wait_until(Duration::from_secs(60), || {
            scrape(port, "edgemon_rounds_total").is_some_and(|r| r >= rounds + 2.0)
        }),
        "no rounds after the reload"
    );
    assert!(up("h00") && up("h01"), "{:?}", http_get(port, "/metrics"));
    assert_eq!(
        connections(),
        before,
        "SIGHUP reconnected unchanged hosts:\n{}",
        sshd.log()
    );

    daemon.signal("TERM");
    let (status, stderr) = daemon.wait(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");
}

#[test]
fn mysql_and_a_mail_directory_missing_at_start_are_used_once_they_appear() {
    let mut db = skip_or_fail!(MariaDb::start());
    db.kill9().expect("stop MariaDB before edgemon starts");
    let dir = temp_dir();
    let port = free_port();
    // A file where the mail directory goes: the mailer cannot start.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("mail"), "not a directory").unwrap();
    let config = local_config(
        dir.path(),
        1,
        &format!(
            "[hosts.alerts]\nmemory = \"0%\"\ncpu = \"off\"\nswap = \"off\"\n\n\
             [mail]\nfrom = \"edgemon@localhost\"\nrecipients = [\"ops@localhost\"]\n\n\
             [metrics]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    // local_config points sync at a closed port; point it at the stopped MariaDB instead.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "url = \"mysql://edgemon@127.0.0.1:1/edgemon\"",
        &format!(
            "url = \"{}\"\ninterval = \"1s\"\nmax_backoff = \"2s\"\ntimeout = \"5s\"",
            db.url()
        ),
    );
    std::fs::write(&config, text).unwrap();
    let mut daemon = Daemon::start(dir.path(), &config);

    assert!(
        wait_until(Duration::from_secs(60), || {
            scrape(port, "edgemon_sync_errors_total").is_some_and(|e| e >= 1.0)
                && scrape(port, "edgemon_outbox_pending").is_some_and(|p| p >= 1.0)
        }),
        "no failed sync pass and no pending mail; stderr: {:?}",
        daemon.wait(Duration::ZERO).1
    );
    db.restart().expect("start MariaDB");
    std::fs::remove_file(data.join("mail")).unwrap();

    let central = || db.sample_count().unwrap_or(0);
    assert!(
        wait_until(Duration::from_secs(120), || central() >= 1),
        "the sync loop never reached the MySQL that appeared"
    );
    let mailed = || {
        std::fs::read_dir(data.join("mail"))
            .map(|d| d.filter_map(Result::ok).count())
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(120), || mailed() >= 1),
        "the mailer never started once its directory could be made"
    );

    daemon.signal("TERM");
    let (status, stderr) = daemon.wait(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");
}
