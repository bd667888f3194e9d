//! Collection from hosts in their own network namespaces (issue 12): a silent
//! partition and its heal, a reboot that wipes `/tmp`, 150 ms latency with 1%
//! loss, a changed host key, agents planted by a second local account in the
//! default directory and in a shared world-writable `agent_dir`, and a noexec
//! `/tmp`. In each, the healthy hosts keep a sample every round. Then the
//! real daemon on a three-host site at a 2 s interval: one host cut off for
//! 20 s and healed, one rebooted, each sampled again within two rounds of
//! coming back, an `unreachable` alert mailed and resolved.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use edgemon::collect::Collector;
use edgemon::collect::outcome::{ErrorClass, HostOutcome};
use edgemon::config::{CollectConfig, HostConfig, HostKeyPolicy};

use crate::local::status_json;
use crate::skip_or_fail;
use crate::support::daemon::Daemon;
use crate::support::netns::{Conditions, NetnsHost, Site};
use crate::support::smtp::Smtp;
use crate::support::{Edgemon, temp_dir, wait_until};

const DEFAULT_AGENT_DIR: &str = "~/.cache/edgemon";

fn settings(agent_dir: &str, connect_timeout: Duration) -> CollectConfig {
    CollectConfig {
        interval: Duration::from_secs(60),
        concurrency: 16,
        connect_timeout,
        auth_timeout: Duration::from_secs(15),
        command_timeout: Duration::from_secs(15),
        known_hosts: None,
        host_key_policy: HostKeyPolicy::AcceptNew,
        agent_dir: agent_dir.to_string(),
        persistent_sessions: true,
        resident_agent: true,
        agent_idle_timeout: Duration::from_secs(300),
        max_reply_bytes: 1 << 20,
        max_clock_skew: Duration::from_secs(300),
    }
}

fn entry(name: &str, site: &Site, host: &NetnsHost) -> HostConfig {
    crate::ssh::ssh_entry(
        name,
        &host.address(),
        host.port(),
        site.user(),
        crate::ssh::key(site.key()),
    )
}

/// A collector over `entries` with its own pin store in `scratch`.
fn collector(entries: Vec<HostConfig>, config: CollectConfig, scratch: &Path) -> Collector {
    Collector::new(
        entries,
        config,
        scratch.join("unused-local-agent"),
        scratch.join("host-keys"),
    )
}

struct Round {
    outcomes: Vec<HostOutcome>,
    label: String,
}

impl Round {
    fn run(collector: &Collector, label: &str) -> Round {
        Round {
            outcomes: smol::block_on(collector.round()),
            label: label.to_string(),
        }
    }

    fn by_name(&self) -> HashMap<&str, &HostOutcome> {
        self.outcomes.iter().map(|o| (o.host.as_str(), o)).collect()
    }

    fn table(&self) -> String {
        let mut out = Vec::new();
        edgemon::collect::print_round(&mut out, &self.outcomes, Duration::ZERO)
            .expect("print the round");
        format!("{}:\n{}", self.label, String::from_utf8_lossy(&out))
    }

    /// Asserts that every host in `names` got a sample.
    fn sampled(&self, names: &[&str]) -> &Round {
        let seen = self.by_name();
        for name in names {
            assert!(
                seen[name].result.is_ok(),
                "{name} got no sample\n{}",
                self.table()
            );
        }
        self
    }

    /// Asserts that `name` failed with `class`; returns the message.
    fn failed(&self, name: &str, class: ErrorClass) -> String {
        let seen = self.by_name();
        match &seen[name].result {
            Err(e) if e.class == class => e.message.clone(),
            _ => panic!("{name}: expected {class}\n{}", self.table()),
        }
    }
}

#[test]
fn namespace_hosts_are_separate_machines_that_can_be_cut_healed_and_rebooted() {
    let site = skip_or_fail!(Site::start());
    let mut host = skip_or_fail!(site.host(Conditions::default()));
    assert!(host.address().starts_with("198.18.") || host.address().starts_with("198.19."));
    // Its own /tmp, its own home for the login user.
    host.run_as(None, "echo here > /tmp/probe")
        .expect("write /tmp");
    let probe = host.run_as(None, "cat /tmp/probe").expect("read /tmp");
    assert_eq!(String::from_utf8_lossy(&probe.stdout), "here\n");
    assert!(
        !Path::new("/tmp/probe").exists(),
        "the host's /tmp is the box's"
    );
    let home = host
        .run_as(None, &format!("ls -ldn '{}'", site.login_home().display()))
        .expect("ls home");
    assert!(
        String::from_utf8_lossy(&home.stdout).starts_with("drwx------"),
        "{home:?}"
    );

    let address = std::net::SocketAddr::new(host.address().parse().expect("an IPv4"), 22);
    host.cut().expect("cut");
    let err = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1))
        .expect_err("a cut host does not answer");
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::TimedOut,
        "silent, not {err}"
    );
    host.heal().expect("heal");
    std::net::TcpStream::connect_timeout(&address, Duration::from_secs(10)).expect("healed");

    let key = host.host_key_fingerprint().to_string();
    host.reboot().expect("reboot");
    let probe = host.run_as(None, "test -e /tmp/probe && echo kept || echo gone");
    assert_eq!(
        String::from_utf8_lossy(&probe.expect("probe").stdout),
        "gone\n"
    );
    assert_eq!(host.host_key_fingerprint(), key, "a reboot keeps the key");
    host.change_host_key().expect("new key");
    assert_ne!(host.host_key_fingerprint(), key);
    let namespace = host.namespace().to_string();
    drop(host);
    let listed = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(&namespace),
        "{namespace} outlived its guard"
    );
}

#[test]
fn a_silent_partition_is_unreachable_and_the_host_is_sampled_in_the_round_after_the_heal() {
    let site = skip_or_fail!(Site::start());
    let a = skip_or_fail!(site.host(Conditions::default()));
    let b = skip_or_fail!(site.host(Conditions::default()));
    let c = skip_or_fail!(site.host(Conditions::default()));
    let scratch = temp_dir();
    let entries = vec![
        entry("a", &site, &a),
        entry("b", &site, &b),
        entry("c", &site, &c),
    ];
    let config = settings(DEFAULT_AGENT_DIR, Duration::from_secs(1));
    let collector = collector(entries, config, scratch.path());
    Round::run(&collector, "before").sampled(&["a", "b", "c"]);

    b.cut().expect("cut b");
    // The pooled session dies silently: noticed, retried on a fresh connection, which gets
    // no answer.
    let round = Round::run(&collector, "first round cut off");
    let message = round
        .sampled(&["a", "c"])
        .failed("b", ErrorClass::Unreachable);
    assert!(message.contains("no answer to a TCP connect"), "{message}");
    let round = Round::run(&collector, "second round cut off");
    round
        .sampled(&["a", "c"])
        .failed("b", ErrorClass::Unreachable);

    b.heal().expect("heal b");
    Round::run(&collector, "after the heal").sampled(&["a", "b", "c"]);
}

#[test]
fn a_rebooted_host_gets_the_agent_again_and_is_sampled_in_the_next_round() {
    let site = skip_or_fail!(Site::start());
    let a = skip_or_fail!(site.host(Conditions::default()));
    let mut b = skip_or_fail!(site.host(Conditions::default()));
    let scratch = temp_dir();
    let entries = vec![entry("a", &site, &a), entry("b", &site, &b)];
    // In /tmp, so that a reboot wipes the agent (the old default did this).
    let config = settings("/tmp/.edgemon-agent", Duration::from_secs(2));
    let collector = collector(entries, config, scratch.path());
    Round::run(&collector, "before").sampled(&["a", "b"]);
    for reboot in 1..=2 {
        b.reboot().expect("reboot b");
        Round::run(&collector, &format!("after reboot {reboot}")).sampled(&["a", "b"]);
        Round::run(&collector, &format!("steady after reboot {reboot}")).sampled(&["a", "b"]);
    }
}

#[test]
fn latency_of_150ms_with_1_percent_loss_costs_no_sample() {
    let site = skip_or_fail!(Site::start());
    let slow = skip_or_fail!(site.host(Conditions {
        latency: Some(Duration::from_millis(150)),
        loss_percent: 1,
    }));
    let a = skip_or_fail!(site.host(Conditions::default()));
    let scratch = temp_dir();
    let entries = vec![entry("slow", &site, &slow), entry("a", &site, &a)];
    let config = settings(DEFAULT_AGENT_DIR, Duration::from_secs(3));
    let collector = collector(entries, config, scratch.path());
    for round in 1..=5 {
        Round::run(&collector, &format!("round {round}")).sampled(&["slow", "a"]);
    }
}

#[test]
fn a_changed_host_key_is_refused_and_reported() {
    let site = skip_or_fail!(Site::start());
    let a = skip_or_fail!(site.host(Conditions::default()));
    let mut b = skip_or_fail!(site.host(Conditions::default()));
    let scratch = temp_dir();
    let entries = vec![entry("a", &site, &a), entry("b", &site, &b)];
    let config = settings(DEFAULT_AGENT_DIR, Duration::from_secs(2));
    let collector = collector(entries, config, scratch.path());
    Round::run(&collector, "before").sampled(&["a", "b"]);
    let old = b.host_key_fingerprint().to_string();
    b.change_host_key().expect("new host key");
    for label in ["after the change", "a round later"] {
        let message = Round::run(&collector, label)
            .sampled(&["a"])
            .failed("b", ErrorClass::HostKeyChanged);
        assert!(
            message.contains(&old) && message.contains(b.host_key_fingerprint()),
            "both fingerprints are reported: {message}"
        );
    }
}

/// A script that, if ever run, records who ran it in `marker`.
fn planted_script(marker: &Path) -> String {
    format!("#!/bin/sh\nid > '{}'\n", marker.display())
}

fn agent_name() -> String {
    format!("edgemon-agent-{}", &edgemon::agent_bin::sha256_hex()[..16])
}

#[test]
fn an_agent_planted_by_another_account_in_the_default_directory_is_never_run() {
    let site = skip_or_fail!(Site::start());
    let a = skip_or_fail!(site.host(Conditions::default()));
    let b = skip_or_fail!(site.host(Conditions::default()));
    // A sloppy host: the login user's home is world-writable, so the other account can create
    // ~/.cache/edgemon before edgemon does, and plant an agent under the name edgemon uses.
    std::fs::set_permissions(
        b.home(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod the home");
    let marker = site.markers().join("default-dir");
    let dir = site.login_home().join(".cache/edgemon");
    let plant = format!(
        "umask 0; mkdir -p '{dir}' && cat > '{dir}/{name}' <<'EOF'\n{script}EOF\nchmod 777 '{dir}/{name}'",
        dir = dir.display(),
        name = agent_name(),
        script = planted_script(&marker),
    );
    b.run_as(Some(site.other_user()), &plant).expect("plant");

    let scratch = temp_dir();
    let entries = vec![entry("a", &site, &a), entry("b", &site, &b)];
    let config = settings(DEFAULT_AGENT_DIR, Duration::from_secs(2));
    let collector = collector(entries, config, scratch.path());
    for label in ["first round", "second round"] {
        let message = Round::run(&collector, label)
            .sampled(&["a"])
            .failed("b", ErrorClass::AgentUntrusted);
        let other = site.other_user().uid().to_string();
        assert!(
            message.contains(&format!("owned by uid {other}")),
            "the owner is named: {message}"
        );
        assert!(message.contains("not run"), "{message}");
        assert!(!marker.exists(), "the planted agent ran: {message}");
    }
}

#[test]
fn an_agent_planted_in_a_shared_world_writable_agent_dir_is_never_run() {
    let site = skip_or_fail!(Site::start());
    let private = skip_or_fail!(site.host(Conditions::default()));
    let planted = skip_or_fail!(site.host(Conditions::default()));
    let empty = skip_or_fail!(site.host(Conditions::default()));
    let shared = "/tmp/shared";
    let marker = site.markers().join("shared-dir");
    for host in [&planted, &empty] {
        host.run_as(None, &format!("mkdir -m 1777 {shared}"))
            .expect("a shared directory");
    }
    let plant = format!(
        "cat > '{shared}/{name}' <<'EOF'\n{script}EOF\nchmod 755 '{shared}/{name}'",
        name = agent_name(),
        script = planted_script(&marker),
    );
    planted
        .run_as(Some(site.other_user()), &plant)
        .expect("plant");

    let scratch = temp_dir();
    let entries = vec![
        entry("private", &site, &private),
        entry("planted", &site, &planted),
        entry("empty", &site, &empty),
    ];
    let config = settings(shared, Duration::from_secs(2));
    let collector = collector(entries, config, scratch.path());
    for label in ["first round", "second round"] {
        let round = Round::run(&collector, label);
        // Where nobody made it first, the directory is created private and used.
        round.sampled(&["private"]);
        let message = round.failed("planted", ErrorClass::AgentUntrusted);
        assert!(
            message.contains("agent directory /tmp/shared") && message.contains("drwxrwxrwt"),
            "what was found is named: {message}"
        );
        assert!(!marker.exists(), "the planted agent ran: {message}");
        // Nothing planted yet: the upload is refused too, rather than putting the agent there.
        let message = round.failed("empty", ErrorClass::AgentUntrusted);
        assert!(message.contains("not uploaded"), "{message}");
    }
    let listing = empty
        .run_as(None, &format!("ls -A {shared}"))
        .expect("list the shared directory");
    assert!(listing.stdout.is_empty(), "{listing:?}");
}

#[test]
fn a_noexec_tmp_is_no_problem_with_the_default_agent_dir() {
    let site = skip_or_fail!(Site::start());
    let mut host = skip_or_fail!(site.host(Conditions::default()));
    host.mount_tmp_noexec().expect("remount /tmp noexec");
    let scratch = temp_dir();
    let config = settings(DEFAULT_AGENT_DIR, Duration::from_secs(2));
    let collector = collector(vec![entry("h", &site, &host)], config, scratch.path());
    Round::run(&collector, "first").sampled(&["h"]);
    host.reboot().expect("reboot");
    Round::run(&collector, "after a reboot").sampled(&["h"]);
}

/// One host's attempts in round order: (time, error class or None for a sample).
fn attempts(buffer: &Path, host: &str) -> Vec<(i64, Option<String>)> {
    let db =
        rusqlite::Connection::open_with_flags(buffer, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the buffer");
    let mut rows: Vec<(i64, Option<String>)> = Vec::new();
    let mut samples = db
        .prepare("SELECT s.received_at FROM samples s JOIN hosts h ON h.id = s.host_id WHERE h.name = ?1")
        .expect("prepare");
    for at in samples
        .query_map([host], |r| r.get::<_, i64>(0))
        .expect("samples")
    {
        rows.push((at.expect("a row"), None));
    }
    let mut errors = db
        .prepare("SELECT e.at, e.class FROM collection_errors e JOIN hosts h ON h.id = e.host_id WHERE h.name = ?1")
        .expect("prepare");
    for row in errors
        .query_map([host], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .expect("errors")
    {
        let (at, class) = row.expect("a row");
        rows.push((at, Some(class)));
    }
    rows.sort();
    rows
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// How many rounds that started after `since` passed before `host`'s first sample (0: the
/// first such round sampled it).
fn rounds_until_sampled(attempts: &[(i64, Option<String>)], since: i64) -> Option<usize> {
    attempts
        .iter()
        .filter(|(at, _)| *at > since)
        .position(|(_, class)| class.is_none())
}

#[test]
fn the_daemon_rides_out_a_partition_and_a_reboot_on_a_three_host_site() {
    let smtp = skip_or_fail!(Smtp::start());
    let site = skip_or_fail!(Site::start());
    let healthy = skip_or_fail!(site.host(Conditions::default()));
    let cut = skip_or_fail!(site.host(Conditions::default()));
    let mut rebooted = skip_or_fail!(site.host(Conditions::default()));
    let dir = temp_dir();
    let mut text = format!(
        "[appliance]\nid = \"site\"\ndata_dir = \"{data}\"\n\
         [collect]\ninterval = \"2s\"\nconnect_timeout = \"1s\"\nauth_timeout = \"5s\"\n\
         command_timeout = \"5s\"\n\
         [defaults]\nuser = \"{user}\"\nidentity_file = \"{key}\"\n\
         [defaults.alerts]\ncpu = \"off\"\nmemory = \"off\"\nswap = \"off\"\nreboot = false\n\
         fs_used = \"off\"\nfs_used_critical = \"off\"\nfs_inodes = \"off\"\nfs_inodes_critical = \"off\"\nfs_filling = false\n\
         unreachable_after = 2\n\
         [sync]\nurl = \"mysql://nobody@127.0.0.1:1/none\"\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\n\
         [mail]\nfrom = \"edgemon@localhost\"\nrecipients = [\"ops@localhost\"]\n",
        data = dir.path().join("data").display(),
        user = site.user(),
        key = site.key().display(),
        smtp = smtp.port(),
    );
    for (name, host) in [
        ("healthy", &healthy),
        ("cut", &cut),
        ("rebooted", &rebooted),
    ] {
        text.push_str(&format!(
            "[[hosts]]\nname = \"{name}\"\naddress = \"{}\"\nport = {}\n",
            host.address(),
            host.port()
        ));
    }
    let config = dir.path().join("edgemon.toml");
    std::fs::write(&config, text).expect("write the config");
    let mut daemon = Daemon::start(dir.path(), &config);
    let last_seq = |name: &str| -> i64 {
        // Until the daemon created the buffer, status fails: no samples yet.
        let out = Edgemon::new(dir.path())
            .args(["status", "--json", "--config"])
            .arg(&config)
            .output();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        status["hosts"]
            .as_array()
            .and_then(|hosts| hosts.iter().find(|h| h["name"] == name))
            .and_then(|h| h["last_seq"].as_i64())
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(120), || {
            ["healthy", "cut", "rebooted"]
                .iter()
                .all(|h| last_seq(h) >= 2)
        }),
        "no two rounds of samples from every host"
    );

    cut.cut().expect("cut");
    let cut_at = Instant::now();
    rebooted.reboot().expect("reboot");
    let rebooted_at = now_ms();
    let firing = smtp
        .wait_for_messages(1, Duration::from_secs(120))
        .expect("an unreachable alert while cut off");
    assert!(
        firing[0].subject().contains("FIRING")
            && firing[0].subject().contains("unreachable")
            && firing[0].subject().contains("cut"),
        "{}",
        firing[0].subject()
    );
    // Hold the cut for 20 s in all.
    std::thread::sleep(Duration::from_secs(20).saturating_sub(cut_at.elapsed()));
    cut.heal().expect("heal");
    let healed_at = now_ms();
    let resolved = smtp
        .wait_for_messages(2, Duration::from_secs(120))
        .expect("the unreachable alert resolves");
    assert!(
        resolved[1].subject().contains("RESOLVED") && resolved[1].subject().contains("unreachable"),
        "{}",
        resolved[1].subject()
    );
    // Two more rounds after the heal, so "within two rounds" can be judged.
    let seq = last_seq("healthy");
    assert!(wait_until(Duration::from_secs(60), || last_seq("healthy") >= seq + 2));
    daemon.stop();

    let buffer = status_json(dir.path(), &config)["path"]
        .as_str()
        .expect("the buffer path")
        .to_string();
    let buffer = Path::new(&buffer);
    let [healthy_log, cut_log, rebooted_log] =
        ["healthy", "cut", "rebooted"].map(|name| attempts(buffer, name));
    let show = format!("healthy {healthy_log:?}\ncut {cut_log:?}\nrebooted {rebooted_log:?}");
    // One attempt per host per round; the healthy host has a sample in every round.
    assert!(
        healthy_log.iter().all(|(_, class)| class.is_none()),
        "{show}"
    );
    assert_eq!(healthy_log.len(), cut_log.len(), "{show}");
    assert_eq!(healthy_log.len(), rebooted_log.len(), "{show}");
    let within = |log: &[(i64, Option<String>)], since: i64| {
        rounds_until_sampled(log, since).is_some_and(|n| n <= 1)
    };
    assert!(
        within(&cut_log, healed_at),
        "cut host after the heal\n{show}"
    );
    assert!(within(&rebooted_log, rebooted_at), "rebooted host\n{show}");
    // While cut off, the class says so (`in-flight`: a round closed while its attempt, stuck
    // on the pooled session, had not answered yet).
    let classes: Vec<&str> = cut_log.iter().filter_map(|(_, c)| c.as_deref()).collect();
    assert!(
        !classes.is_empty()
            && classes
                .iter()
                .all(|c| *c == "unreachable" || *c == "timeout" || *c == "in-flight"),
        "{show}"
    );
    assert!(classes.contains(&"unreachable"), "{show}");
    // Only the cut host's alert was mailed.
    let mails = smtp.messages();
    assert_eq!(
        mails.len(),
        2,
        "{:#?}",
        mails.iter().map(|m| m.subject()).collect::<Vec<_>>()
    );
}
