//! Silences, acknowledgements and site awareness against the real daemon
//! binary and a real SMTP server: the CLI changes what the running daemon
//! mails at its next round, and a site outage is one mail.

use std::path::Path;
use std::time::Duration;

use crate::local::{local_config, status_json};
use crate::skip_or_fail;
use crate::support::daemon::Daemon;
use crate::support::smtp::Smtp;
use crate::support::{Edgemon, free_port, temp_dir, wait_for, wait_until};

const WAIT: Duration = Duration::from_secs(90);

fn sqlite(dir: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("data/buffer.sqlite")).expect("open buffer");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    conn
}

/// Receive times of the `kind` events of `rule` recorded after `after`, oldest first.
fn event_times(dir: &Path, rule: &str, kind: &str, after: i64) -> Vec<i64> {
    let conn = sqlite(dir);
    let mut stmt = conn
        .prepare(
            "SELECT at FROM alert_events WHERE rule = ?1 AND kind = ?2 AND at > ?3 ORDER BY at",
        )
        .expect("prepare");
    stmt.query_map(rusqlite::params![rule, kind, after], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .unwrap_or_default()
}

/// Mails queued at or after `since`.
fn outbox_since(dir: &Path, since: i64) -> i64 {
    sqlite(dir)
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE created_at >= ?1",
            [since],
            |r| r.get(0),
        )
        .expect("count outbox")
}

fn now_ms() -> i64 {
    edgemon::buffer::now_ms()
}

/// Waits for three `rule` reminders recorded after `since` and returns the time of the
/// second: every round from then on certainly read what the CLI committed before `since`.
fn second_of_three_reminders(dir: &Path, rule: &str, since: i64) -> i64 {
    let times = wait_for(WAIT, || {
        let t = event_times(dir, rule, "reminder", since);
        (t.len() >= 3).then_some(t)
    })
    .expect("three reminders recorded");
    times[1]
}

#[test]
fn a_silence_from_the_cli_stops_the_running_daemons_mail_and_removing_it_restores_it() {
    let smtp = skip_or_fail!(Smtp::start());
    let dir = temp_dir();
    let extra = format!(
        "[hosts.alerts]\nmemory = \"0%\"\ncpu = \"off\"\nswap = \"off\"\n\
         fs_used = \"off\"\nfs_used_critical = \"off\"\nfs_inodes = \"off\"\nfs_inodes_critical = \"off\"\nfs_filling = false\n\n\
         [alert]\nrepeat = \"2s\"\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\n\
         [mail]\nfrom = \"edgemon@localhost\"\nrecipients = [\"ops@localhost\"]\nrate_limit = 10000\n",
        smtp.port()
    );
    let config = local_config(dir.path(), 1, &extra);
    let mut daemon = Daemon::start(dir.path(), &config);
    let first = smtp.wait_for_messages(1, WAIT).expect("a FIRING mail");
    assert!(
        first[0].subject().contains("FIRING memory"),
        "{}",
        first[0].subject()
    );

    let added_at = now_ms();
    let out = Edgemon::new(dir.path())
        .env("SUDO_USER", "alice")
        .args([
            "silence",
            "add",
            "self-0",
            "memory",
            "--for",
            "2h",
            "--comment",
            "disk swap",
        ])
        .arg("--config")
        .arg(&config)
        .stdout();
    assert!(out.contains("silence 1 added: memory on self-0"), "{out}");
    let quiet_from = second_of_three_reminders(dir.path(), "memory", added_at);
    assert_eq!(
        outbox_since(dir.path(), quiet_from),
        0,
        "reminders are recorded but not mailed while the silence is in force"
    );
    let list = Edgemon::new(dir.path())
        .args(["silence", "list", "--config"])
        .arg(&config)
        .stdout();
    assert!(
        list.contains("self-0") && list.contains("alice") && list.contains("disk swap"),
        "{list}"
    );
    let status = status_json(dir.path(), &config);
    assert_eq!(status["silences"][0]["created_by"], "alice", "{status:#}");
    let horizon = status["time_to_first_loss_s"].as_i64().unwrap_or(-1);
    assert!(
        horizon > 0 && horizon <= 30 * 86_400,
        "time-to-first-loss is computed, at most max_unsynced_age: {status:#}"
    );

    let mailed = smtp.messages().len();
    Edgemon::new(dir.path())
        .args(["silence", "remove", "1", "--config"])
        .arg(&config)
        .stdout();
    let mails = smtp
        .wait_for_messages(mailed + 1, WAIT)
        .expect("mail resumes after the silence is removed");
    let last = mails
        .last()
        .map(|m| m.subject().to_string())
        .unwrap_or_default();
    assert!(last.contains("REMINDER memory"), "{last}");

    // An acknowledgement stops reminders too, and status names who acknowledged.
    let acked_at = now_ms();
    let out = Edgemon::new(dir.path())
        .env("SUDO_USER", "bob")
        .args(["ack", "self-0", "memory", "--comment", "known", "--config"])
        .arg(&config)
        .stdout();
    assert!(out.contains("acknowledged memory on self-0"), "{out}");
    let quiet_from = second_of_three_reminders(dir.path(), "memory", acked_at);
    assert_eq!(
        outbox_since(dir.path(), quiet_from),
        0,
        "no reminder after the ack"
    );
    let status = status_json(dir.path(), &config);
    let ack = &status["hosts"][0]["acks"][0];
    assert_eq!(
        (ack["by"].as_str(), ack["rule"].as_str()),
        (Some("bob"), Some("memory")),
        "{status:#}"
    );

    daemon.signal("TERM");
    let (status, stderr) = daemon.wait(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");
}

/// 20 hosts: 5 local ones, and 15 that are local too (`down` false) or SSH to closed
/// loopback ports.
fn site_config(dir: &Path, smtp_port: u16, down: bool) -> std::path::PathBuf {
    let mut text = format!(
        "[appliance]\nid = \"site-it\"\ndata_dir = \"{}\"\n\n[collect]\ninterval = \"1s\"\n\n\
         [sync]\nurl = \"mysql://edgemon@127.0.0.1:1/edgemon\"\n\n\
         [alert]\nloss_horizon = \"0s\"\n\n\
         [defaults.alerts]\ncpu = \"off\"\nmemory = \"off\"\nswap = \"off\"\nreboot = false\nunreachable_after = 2\n\
         fs_used = \"off\"\nfs_used_critical = \"off\"\nfs_inodes = \"off\"\nfs_inodes_critical = \"off\"\nfs_filling = false\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n\n\
         [mail]\nfrom = \"edgemon@localhost\"\nrecipients = [\"ops@localhost\"]\n\n",
        dir.join("data").display()
    );
    for n in 0..20 {
        if n < 15 && down {
            text.push_str(&format!(
                "[[hosts]]\nname = \"node-{n:02}\"\naddress = \"127.0.0.1\"\nport = {}\nuser = \"mon\"\npassword = \"unused\"\n\n",
                free_port()
            ));
        } else {
            text.push_str(&format!(
                "[[hosts]]\nname = \"node-{n:02}\"\ntransport = \"local\"\n\n"
            ));
        }
    }
    let path = dir.join("edgemon.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn fifteen_of_twenty_hosts_cut_off_in_one_round_are_one_site_mail_then_one_resolved() {
    let smtp = skip_or_fail!(Smtp::start());
    let dir = temp_dir();
    let config = site_config(dir.path(), smtp.port(), true);
    let mut daemon = Daemon::start(dir.path(), &config);
    let mails = smtp.wait_for_messages(1, WAIT).expect("the site mail");
    assert_eq!(
        mails[0].subject(),
        "[edgemon] FIRING site-unreachable: 15 of 20 hosts unreachable on site-it"
    );
    // Every host's unreachable alert is recorded, a few rounds pass, and still one mail.
    assert!(
        wait_until(WAIT, || {
            let status = status_json(dir.path(), &config);
            status["hosts"].as_array().is_some_and(|hosts| {
                hosts
                    .iter()
                    .filter(|h| h["consecutive_failures"].as_i64() >= Some(5))
                    .count()
                    == 15
            })
        }),
        "the 15 hosts keep failing"
    );
    assert_eq!(
        event_times(dir.path(), "unreachable", "firing", 0).len(),
        15
    );
    assert_eq!(
        outbox_since(dir.path(), 0),
        1,
        "one mail, not 15: {:?}",
        smtp.messages()
    );

    // The site comes back (SIGHUP with the hosts reachable): one RESOLVED for the site,
    // and none for host alerts that were never mailed.
    site_config(dir.path(), smtp.port(), false);
    daemon.signal("HUP");
    let mails = smtp
        .wait_for_messages(2, WAIT)
        .expect("the site's RESOLVED");
    assert_eq!(
        mails[1].subject(),
        "[edgemon] RESOLVED site-unreachable: 20 of 20 hosts reporting on site-it"
    );
    assert_eq!(
        event_times(dir.path(), "unreachable", "resolved", 0).len(),
        15
    );
    assert_eq!(outbox_since(dir.path(), 0), 2, "{:?}", smtp.messages());

    daemon.signal("TERM");
    let (status, stderr) = daemon.wait(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");
}

#[test]
fn silence_and_ack_refuse_what_they_cannot_mean() {
    let dir = temp_dir();
    let config = local_config(dir.path(), 1, "");
    let cases: [(&[&str], &str); 6] = [
        (
            &["silence", "add", "nope", "--for", "1h", "--comment", "x"],
            "no host \"nope\"",
        ),
        (
            &[
                "silence",
                "add",
                "self-0",
                "disk",
                "--for",
                "1h",
                "--comment",
                "x",
            ],
            "unknown rule \"disk\"",
        ),
        (
            &["silence", "add", "self-0", "--comment", "x"],
            "either --for DURATION or --until TIME",
        ),
        (
            &[
                "silence",
                "add",
                "--all",
                "--until",
                "2001-01-01T00:00:00Z",
                "--comment",
                "x",
            ],
            "would end before it starts",
        ),
        (&["silence", "remove", "42"], "no silence 42"),
        (&["ack", "self-0", "cpu"], "no active cpu alert"),
    ];
    for (args, needle) in cases {
        let out = Edgemon::new(dir.path())
            .args(args)
            .arg("--config")
            .arg(&config)
            .assert_err();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
    }
    let out = Edgemon::new(dir.path())
        .args([
            "silence",
            "add",
            "--all",
            "unreachable",
            "--until",
            "2099-01-01 00:00:00",
        ])
        .args(["--comment", "switch firmware", "--config"])
        .arg(&config)
        .stdout();
    assert!(
        out.contains("unreachable on every host until 2099-01-01T00:00:00Z"),
        "{out}"
    );
    let list = Edgemon::new(dir.path())
        .args(["silence", "list", "--json", "--config"])
        .arg(&config)
        .stdout();
    let list: serde_json::Value = serde_json::from_str(&list).expect("json");
    assert_eq!(list[0]["host"], serde_json::Value::Null, "{list:#}");
    assert_eq!(list[0]["rules"][0], "unreachable", "{list:#}");
}
