//! Issue 21: IPv6 addresses, and hosts reached through jump hosts (bastions).
//!
//! Loopback tests: an sshd on `[::1]` reached as `[::1]` and `[::1]:PORT`; a
//! loopback sshd acting as bastion and target at once. Namespace tests
//! (`support::netns`): a bastion namespace with two interfaces and targets
//! reachable only through it (the root namespace blackholes 198.18.0.0/15
//! while the rig runs), steady rounds over one bastion connection, the
//! bastion's sshd killed and restarted, a target cut off alone, changed host
//! keys of the bastion and of a target, and a two-hop chain.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use edgemon::collect::Collector;
use edgemon::collect::outcome::{ErrorClass, HostOutcome};

use edgemon::config::{
    AlertLimits, Auth, Bastion, CollectConfig, HostConfig, HostKeyPolicy, SshTarget, Transport,
};

use crate::skip_or_fail;
use crate::support::daemon::Daemon;
use crate::support::netns::{Blackhole, Conditions, NetnsHost, Site};
use crate::support::smtp::Smtp;
use crate::support::sshd::Sshd;
use crate::support::{temp_dir, wait_for, wait_until};

fn settings(agent_dir: &str) -> CollectConfig {
    CollectConfig {
        interval: Duration::from_secs(60),
        concurrency: 16,
        connect_timeout: Duration::from_secs(3),
        auth_timeout: Duration::from_secs(20),
        command_timeout: Duration::from_secs(30),
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

pub(crate) fn key(path: &Path) -> Auth {
    Auth::IdentityFile {
        path: path.to_path_buf(),
        passphrase: None,
    }
}

pub(crate) fn login(address: &str, port: u16, user: &str, auth: Auth) -> SshTarget {
    SshTarget {
        address: address.to_string(),
        port,
        user: user.to_string(),
        auth,
        host_key_policy: HostKeyPolicy::AcceptNew,
        via: Vec::new(),
    }
}

pub(crate) fn bastion(name: &str, login: SshTarget) -> Bastion {
    Bastion {
        name: name.to_string(),
        login: Box::new(login),
        handshakes: 8,
    }
}

pub(crate) fn entry(name: &str, target: SshTarget) -> HostConfig {
    HostConfig {
        os: Default::default(),
        name: name.to_string(),
        transport: Transport::Ssh(target),
        mail: None,
        alerts: AlertLimits {
            cpu: None,
            memory: None,
            swap: None,
            reboot: false,
            unreachable_after: None,
            families: Default::default(),
        },
        agent: Default::default(),
    }
}

fn by_name(outcomes: &[HostOutcome]) -> HashMap<&str, &HostOutcome> {
    outcomes.iter().map(|o| (o.host.as_str(), o)).collect()
}

fn failures(outcomes: &[HostOutcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.host)))
        .collect()
}

fn collector(hosts: Vec<HostConfig>, config: CollectConfig, dir: &Path) -> Collector {
    Collector::new(
        hosts,
        config,
        dir.join("unused-local-agent"),
        dir.join("host-keys"),
    )
}

#[test]
fn an_ipv6_host_in_brackets_with_or_without_a_port_is_collected() {
    let sshd = skip_or_fail!(Sshd::builder().ipv6().start());
    let scratch = temp_dir();
    // Inside the scratch directory, so the uploaded agents go with it.
    let agent_dir = scratch.path().join("agent").display().to_string();
    // As `config` resolves `address = "[::1]"` and `address = "[::1]:PORT"`.
    let (bare, none) = edgemon::config::parse_address("[::1]").expect("brackets parse");
    assert_eq!((bare.as_str(), none), ("::1", None));
    let with_port = format!("[::1]:{}", sshd.port());
    let (address, port) = edgemon::config::parse_address(&with_port).expect("parse");
    assert_eq!(port, Some(sshd.port()));
    let hosts = vec![
        entry(
            "v6-brackets",
            login(&bare, sshd.port(), sshd.user(), key(sshd.ed25519_key())),
        ),
        entry(
            "v6-port",
            login(&address, sshd.port(), sshd.user(), key(sshd.ed25519_key())),
        ),
    ];
    let c = collector(hosts, settings(&agent_dir), scratch.path());
    let outcomes = smol::block_on(c.round());
    assert!(failures(&outcomes).is_empty(), "{:?}", failures(&outcomes));
    assert_eq!(
        outcomes[0].address,
        format!("{}@[::1]:{}", sshd.user(), sshd.port())
    );
    let pins = std::fs::read_to_string(scratch.path().join("host-keys")).expect("pins");
    assert!(pins.contains(&format!("[::1]:{}", sshd.port())), "{pins}");
}

#[test]
fn targets_behind_a_loopback_bastion_share_one_session_across_rounds() {
    let sshd = skip_or_fail!(Sshd::start());
    let scratch = temp_dir();
    // Inside the scratch directory, so the uploaded agents go with it.
    let agent_dir = scratch.path().join("agent").display().to_string();
    let jump = bastion(
        "lo-jump",
        login(
            "127.0.0.1",
            sshd.port(),
            sshd.user(),
            key(sshd.ed25519_key()),
        ),
    );
    let hosts: Vec<HostConfig> = (0..12)
        .map(|i| {
            let mut target = login("127.0.0.1", sshd.port(), sshd.user(), key(sshd.rsa_key()));
            target.via = vec![jump.clone()];
            entry(&format!("behind{i:02}"), target)
        })
        .collect();
    let c = collector(hosts, settings(&agent_dir), scratch.path());
    for round in 0..3 {
        let outcomes = smol::block_on(c.round());
        assert!(
            failures(&outcomes).is_empty(),
            "round {round}: {:?}",
            failures(&outcomes)
        );
        assert_eq!(
            c.open_sessions(),
            12,
            "round {round}: every target's session kept"
        );
        assert_eq!(c.open_bastions(), 1, "round {round}: one bastion session");
    }
    // The bastion, reached directly, is pinned under its address; each target, reached
    // through it, under its own name (private addresses behind two bastions may be equal).
    let pins = std::fs::read_to_string(scratch.path().join("host-keys")).expect("pins");
    assert!(
        pins.contains(&format!("[127.0.0.1]:{} ", sshd.port())),
        "{pins}"
    );
    for i in 0..12 {
        assert!(
            pins.contains(&format!("\nbehind{i:02} ssh-ed25519 ")),
            "{pins}"
        );
    }
}

/// A bastion namespace (two interfaces: one to the root namespace, one per target) and `n`
/// targets reachable only through it; the root namespace blackholes 198.18.0.0/15 meanwhile.
struct Rig {
    // Dropped first: the hosts, then the route.
    targets: Vec<NetnsHost>,
    jump: NetnsHost,
    site: Site,
    _blackhole: Blackhole,
}

fn rig(n: usize) -> anyhow::Result<Rig> {
    let site = Site::start()?;
    let blackhole = Blackhole::add()?;
    let jump = site.host(Conditions::default())?;
    let targets = (0..n)
        .map(|_| site.host_behind(&jump))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Rig {
        targets,
        jump,
        site,
        _blackhole: blackhole,
    })
}

impl Rig {
    fn login(&self, host: &NetnsHost) -> SshTarget {
        login(
            &host.address(),
            host.port(),
            self.site.user(),
            key(self.site.key()),
        )
    }

    fn bastion(&self) -> Bastion {
        bastion("ns-jump", self.login(&self.jump))
    }

    fn entries(&self, via: &[Bastion]) -> Vec<HostConfig> {
        self.targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut target = self.login(t);
                target.via = via.to_vec();
                entry(&format!("plc{i}"), target)
            })
            .collect()
    }
}

fn class_of(outcomes: &[HostOutcome], name: &str) -> Option<ErrorClass> {
    by_name(outcomes)[name]
        .result
        .as_ref()
        .err()
        .map(|e| e.class)
}

fn message_of(outcomes: &[HostOutcome], name: &str) -> String {
    by_name(outcomes)[name]
        .result
        .as_ref()
        .err()
        .map(|e| e.message.clone())
        .unwrap_or_default()
}

#[test]
fn targets_reachable_only_through_a_bastion_namespace_are_collected_and_each_failure_is_named() {
    let mut rig = skip_or_fail!(rig(3));
    // No route from here: without the bastion, a target cannot even be connected to.
    let direct = format!("{}:22", rig.targets[0].address());
    let direct: std::net::SocketAddr = direct.parse().expect("address");
    assert!(std::net::TcpStream::connect_timeout(&direct, Duration::from_secs(2)).is_err());

    let scratch = temp_dir();
    let mut config = settings("~/.cache/edgemon");
    // Rounds here follow each other at once; a failed bastion is retried after half of this.
    config.interval = Duration::from_secs(2);
    config.command_timeout = Duration::from_secs(8);
    let jump = rig.bastion();
    let c = collector(
        rig.entries(std::slice::from_ref(&jump)),
        config.clone(),
        scratch.path(),
    );

    // Steady rounds through one bastion connection.
    for round in 0..3 {
        let outcomes = smol::block_on(c.round());
        assert!(
            failures(&outcomes).is_empty(),
            "round {round}: {:?}",
            failures(&outcomes)
        );
        assert_eq!(c.open_bastions(), 1);
        assert_eq!(
            rig.jump.ssh_connections().expect("ss"),
            1,
            "one connection to the bastion"
        );
    }

    // A target cut off alone is its own error; the others and the bastion are fine.
    rig.targets[2].cut().expect("cut");
    let outcomes = smol::block_on(c.round());
    assert!(
        by_name(&outcomes)["plc0"].result.is_ok(),
        "{:?}",
        failures(&outcomes)
    );
    assert!(
        by_name(&outcomes)["plc1"].result.is_ok(),
        "{:?}",
        failures(&outcomes)
    );
    let class = class_of(&outcomes, "plc2");
    assert!(
        matches!(class, Some(ErrorClass::Timeout | ErrorClass::Unreachable)),
        "{:?}",
        failures(&outcomes)
    );
    assert!(
        !message_of(&outcomes, "plc2").contains("via bastion"),
        "{:?}",
        failures(&outcomes)
    );
    rig.targets[2].heal().expect("heal");
    let outcomes = smol::block_on(c.round());
    assert!(
        failures(&outcomes).is_empty(),
        "healed: {:?}",
        failures(&outcomes)
    );
    assert_eq!(rig.jump.ssh_connections().expect("ss"), 1);

    // The bastion goes down: every target behind it is unreachable via it, named.
    rig.jump.stop().expect("stop the bastion");
    let outcomes = smol::block_on(c.round());
    for name in ["plc0", "plc1", "plc2"] {
        assert_eq!(
            class_of(&outcomes, name),
            Some(ErrorClass::UnreachableVia),
            "{:?}",
            failures(&outcomes)
        );
        assert!(
            message_of(&outcomes, name).starts_with("via bastion ns-jump: "),
            "{:?}",
            failures(&outcomes)
        );
        let error = by_name(&outcomes)[name]
            .result
            .as_ref()
            .expect_err("failed");
        assert_eq!(error.bastion(), Some("ns-jump"));
    }
    assert_eq!(c.open_bastions(), 0);
    // It returns: every target heals within two rounds (a round apart, as the daemon runs them).
    rig.jump.start().expect("start the bastion");
    let mut healed = false;
    for _ in 0..2 {
        std::thread::sleep(config.interval);
        let outcomes = smol::block_on(c.round());
        if failures(&outcomes).is_empty() {
            healed = true;
            break;
        }
    }
    assert!(healed, "not healed within two rounds");
    assert_eq!(rig.jump.ssh_connections().expect("ss"), 1);

    // A target's changed host key: refused, named, only that target.
    rig.targets[1].change_host_key().expect("rekey target");
    let outcomes = smol::block_on(c.round());
    assert_eq!(
        class_of(&outcomes, "plc1"),
        Some(ErrorClass::HostKeyChanged),
        "{:?}",
        failures(&outcomes)
    );
    assert!(
        message_of(&outcomes, "plc1").contains("plc1"),
        "{:?}",
        failures(&outcomes)
    );
    assert!(
        by_name(&outcomes)["plc0"].result.is_ok(),
        "{:?}",
        failures(&outcomes)
    );

    // The bastion's changed host key: refused and named, for every target behind it.
    rig.jump.change_host_key().expect("rekey bastion");
    std::thread::sleep(config.interval);
    let outcomes = smol::block_on(c.round());
    for name in ["plc0", "plc2"] {
        assert_eq!(
            class_of(&outcomes, name),
            Some(ErrorClass::UnreachableVia),
            "{:?}",
            failures(&outcomes)
        );
        let message = message_of(&outcomes, name);
        assert!(message.starts_with("via bastion ns-jump: "), "{message}");
        assert!(message.contains("host-key-changed"), "{message}");
    }
}

#[test]
fn a_two_hop_chain_reaches_a_target_behind_two_bastions_over_one_first_hop_connection() {
    let rig = skip_or_fail!(rig(1));
    let second = skip_or_fail!(rig.site.host_behind(&rig.jump));
    let deep = skip_or_fail!(rig.site.host_behind(&second));
    let scratch = temp_dir();
    let config = settings("~/.cache/edgemon");
    let first = rig.bastion();
    let inner = bastion("ns-inner", rig.login(&second));
    let mut near = rig.entries(std::slice::from_ref(&first));
    let mut target = rig.login(&deep);
    target.via = vec![first.clone(), inner];
    near.push(entry("deep", target));
    let c = collector(near, config, scratch.path());
    for round in 0..2 {
        let outcomes = smol::block_on(c.round());
        assert!(
            failures(&outcomes).is_empty(),
            "round {round}: {:?}",
            failures(&outcomes)
        );
        assert_eq!(c.open_bastions(), 2, "ns-jump and ns-jump>ns-inner");
        assert_eq!(
            rig.jump.ssh_connections().expect("ss"),
            1,
            "one connection to the first hop"
        );
        assert_eq!(
            second.ssh_connections().expect("ss"),
            1,
            "one to the second, through the first"
        );
    }
    let pins = std::fs::read_to_string(scratch.path().join("host-keys")).expect("pins");
    assert!(pins.contains("\nns-inner ssh-ed25519 "), "{pins}");
    assert!(pins.contains("\ndeep ssh-ed25519 "), "{pins}");
}

fn samples_of(dir: &Path, host: &str) -> i64 {
    let path = dir.join("data/buffer.sqlite");
    if !path.exists() {
        return 0;
    }
    let conn = rusqlite::Connection::open(path).expect("open buffer");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    conn.query_row(
        "SELECT COUNT(*) FROM samples s JOIN hosts h ON h.id = s.host_id WHERE h.name = ?1",
        [host],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

#[test]
fn a_dead_bastion_is_one_mail_naming_it_and_its_hosts_heal_within_two_rounds() {
    let smtp = skip_or_fail!(Smtp::start());
    let mut rig = skip_or_fail!(rig(4));
    let dir = temp_dir();
    let mut text = format!(
        "[appliance]\nid = \"jump-it\"\ndata_dir = \"{data}\"\n\n\
         [collect]\ninterval = \"2s\"\nconnect_timeout = \"2s\"\ncommand_timeout = \"10s\"\n\n\
         [sync]\nurl = \"mysql://edgemon@127.0.0.1:1/edgemon\"\n\n\
         [alert]\nloss_horizon = \"0s\"\n\n\
         [defaults]\nuser = \"{user}\"\nidentity_file = \"{key}\"\nvia = \"ns-jump\"\n\n\
         [defaults.alerts]\ncpu = \"off\"\nmemory = \"off\"\nswap = \"off\"\nreboot = false\nunreachable_after = 2\n\
         fs_used = \"off\"\nfs_used_critical = \"off\"\nfs_inodes = \"off\"\nfs_inodes_critical = \"off\"\nfs_filling = false\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\n\n\
         [mail]\nfrom = \"edgemon@localhost\"\nrecipients = [\"ops@localhost\"]\n\n\
         [[bastions]]\nname = \"ns-jump\"\naddress = \"{jump}\"\n\n",
        data = dir.path().join("data").display(),
        user = rig.site.user(),
        key = rig.site.key().display(),
        smtp = smtp.port(),
        jump = rig.jump.address(),
    );
    for (i, t) in rig.targets.iter().enumerate() {
        text.push_str(&format!(
            "[[hosts]]\nname = \"plc{i}\"\naddress = \"{}\"\n\n",
            t.address()
        ));
    }
    let config = dir.path().join("edgemon.toml");
    std::fs::write(&config, text).expect("write config");
    let check = crate::support::Edgemon::new(dir.path())
        .args(["config", "check"])
        .arg(&config)
        .output();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let mut daemon = Daemon::start(dir.path(), &config);
    let names: Vec<String> = (0..rig.targets.len()).map(|i| format!("plc{i}")).collect();
    assert!(
        wait_until(WAIT, || names
            .iter()
            .all(|n| samples_of(dir.path(), n) >= 3)),
        "samples through the bastion reach the buffer; log:\n{}",
        daemon.log()
    );
    assert_eq!(
        rig.jump.ssh_connections().expect("ss"),
        1,
        "one bastion connection held"
    );

    rig.jump.stop().expect("stop the bastion");
    let mails = smtp.wait_for_messages(1, WAIT).expect("the bastion mail");
    assert_eq!(
        mails[0].subject(),
        "[edgemon] FIRING bastion-unreachable: bastion ns-jump, 4 hosts behind it unreachable on jump-it"
    );
    // A few more rounds pass with the bastion down: still that one mail, no per-host mail.
    let rounds = daemon.log_count("round recorded");
    assert!(wait_until(WAIT, || daemon.log_count("round recorded") >= rounds + 3));
    assert_eq!(
        smtp.messages().len(),
        1,
        "{:?}",
        smtp.messages()
            .iter()
            .map(|m| m.subject())
            .collect::<Vec<_>>()
    );

    let before: Vec<i64> = names.iter().map(|n| samples_of(dir.path(), n)).collect();
    let rounds = daemon.log_count("round recorded");
    rig.jump.start().expect("start the bastion");
    let healed_at = wait_for(WAIT, || {
        let now: Vec<i64> = names.iter().map(|n| samples_of(dir.path(), n)).collect();
        now.iter()
            .zip(&before)
            .all(|(a, b)| a > b)
            .then(|| daemon.log_count("round recorded"))
    })
    .expect("every host heals");
    // The round running when the bastion returned may fail; the two after it may not.
    assert!(
        healed_at - rounds <= 3,
        "{} rounds to heal",
        healed_at - rounds
    );
    let mails = smtp.wait_for_messages(2, WAIT).expect("the RESOLVED");
    assert_eq!(
        mails[1].subject(),
        "[edgemon] RESOLVED bastion-unreachable: bastion ns-jump on jump-it"
    );
    assert_eq!(rig.jump.ssh_connections().expect("ss"), 1);
    daemon.signal("TERM");
    let (status, stderr) = daemon.wait(Duration::from_secs(30));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{stderr}");
    let subjects: Vec<String> = smtp
        .messages()
        .iter()
        .map(|m| m.subject().to_string())
        .collect();
    assert_eq!(subjects.len(), 2, "{subjects:#?}");

    // `hosts trust` reaches a target through its bastion, and pins a bastion by its name.
    rig.targets[0].change_host_key().expect("rekey target");
    let out = crate::support::Edgemon::new(dir.path())
        .args(["hosts", "trust", "plc0", "--config"])
        .arg(&config)
        .assert_exit_code(0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("plc0 (plc0): pinned"), "{text}");
    assert!(
        text.contains(rig.targets[0].host_key_fingerprint()),
        "{text}"
    );
    rig.jump.change_host_key().expect("rekey bastion");
    let refused = crate::support::Edgemon::new(dir.path())
        .args(["hosts", "trust", "plc1", "--config"])
        .arg(&config)
        .assert_err();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("via bastion ns-jump"), "{stderr}");
    let out = crate::support::Edgemon::new(dir.path())
        .args(["hosts", "trust", "ns-jump", "--config"])
        .arg(&config)
        .assert_exit_code(0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(rig.jump.host_key_fingerprint()), "{text}");
}

const WAIT: Duration = Duration::from_secs(120);

/// An ssh_config and an Ansible inventory describing the rig (a bastion, two hosts behind it
/// with ProxyJump / `-J`) import into configurations that `config check` accepts and that
/// collect through the bastion.
#[test]
fn an_imported_ssh_config_and_inventory_collect_through_the_bastion() {
    let rig = skip_or_fail!(rig(2));
    let dir = temp_dir();
    let key = rig.site.key().display().to_string();
    let user = rig.site.user();
    let ssh_config = format!(
        "Host *\n    IdentityFile {key}\n    ServerAliveInterval 15\n\n\
         Host ns-jump\n    HostName {jump}\n    User {user}\n\n\
         Host plc-*\n    User {user}\n    ProxyJump ns-jump\n\n\
         Host plc-a\n    HostName {a}\n\nHost plc-b\n    HostName {b}\n    Port 22\n",
        jump = rig.jump.address(),
        a = rig.targets[0].address(),
        b = rig.targets[1].address(),
    );
    let inventory = format!(
        "[ot]\nplc-a ansible_host={a}\nplc-b ansible_host={b} ansible_port=22\n\n\
         [ot:vars]\nansible_user={user}\nansible_ssh_private_key_file={key}\n\
         ansible_ssh_common_args='-J {user}@{jump}:22'\n",
        jump = rig.jump.address(),
        a = rig.targets[0].address(),
        b = rig.targets[1].address(),
    );
    for (from, name, text) in [
        ("ssh-config", "ssh_config", ssh_config),
        ("ansible", "hosts.ini", inventory),
    ] {
        let source = dir.path().join(name);
        std::fs::write(&source, text).expect("write source");
        let out = crate::support::Edgemon::new(dir.path())
            .args(["hosts", "import", "--from", from])
            .arg(&source)
            .assert_exit_code(0);
        let imported = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if from == "ssh-config" {
            assert!(
                stderr.contains("ServerAliveInterval 15"),
                "listed as not mapped: {stderr}"
            );
        }
        let data = dir.path().join(format!("data-{from}"));
        let config = dir.path().join(format!("{from}.toml"));
        std::fs::write(
            &config,
            format!(
                "[appliance]\nid = \"import-it\"\ndata_dir = \"{}\"\n\n\
                 [collect]\ncommand_timeout = \"20s\"\n\n\
                 [sync]\nurl = \"mysql://edgemon@127.0.0.1:1/edgemon\"\n\n\
                 [defaults]\nidentity_file = \"{key}\"\n\n{imported}",
                data.display()
            ),
        )
        .expect("write config");
        let check = crate::support::Edgemon::new(dir.path())
            .args(["config", "check"])
            .arg(&config)
            .output();
        assert!(
            check.status.success(),
            "{from}: {}\n{imported}",
            String::from_utf8_lossy(&check.stderr)
        );
        let table = crate::support::Edgemon::new(dir.path())
            .args(["collect", "--config"])
            .arg(&config)
            .stdout();
        let hosts = if from == "ssh-config" { 3 } else { 2 };
        assert!(
            table.contains(&format!("{hosts} hosts: {hosts} ok, 0 failed")),
            "{from}:\n{table}\n{imported}"
        );
    }
}

/// 40 hosts behind one bastion, all in the first round at once (concurrency 64), against an
/// sshd with its default `MaxStartups 10:30:100` serving bastion and targets: the bastion's
/// pacing (8 inner handshakes at once) keeps sshd from throttling, so every host is collected.
#[test]
fn paced_inner_handshakes_never_trip_max_startups() {
    let sshd = skip_or_fail!(Sshd::builder().max_startups("10:30:100").start());
    let scratch = temp_dir();
    // Inside the scratch directory, so the uploaded agents go with it.
    let agent_dir = scratch.path().join("agent").display().to_string();
    let jump = bastion(
        "lo-jump",
        login(
            "127.0.0.1",
            sshd.port(),
            sshd.user(),
            key(sshd.ed25519_key()),
        ),
    );
    assert_eq!(jump.handshakes, 8);
    let hosts: Vec<HostConfig> = (0..40)
        .map(|i| {
            let mut target = login(
                "127.0.0.1",
                sshd.port(),
                sshd.user(),
                key(sshd.ed25519_key()),
            );
            target.via = vec![jump.clone()];
            entry(&format!("paced{i:02}"), target)
        })
        .collect();
    let mut config = settings(&agent_dir);
    config.concurrency = 64;
    let c = collector(hosts, config, scratch.path());
    let outcomes = smol::block_on(c.round());
    assert!(failures(&outcomes).is_empty(), "{:?}", failures(&outcomes));
    assert!(
        !sshd.log().contains("MaxStartups throttling"),
        "{}",
        sshd.log()
    );
}

/// A host whose sshd sheds new connections (`MaxStartups 1`, its one startup slot held by a
/// connection that never speaks: a scanner, another client mid-login): the first dial is
/// dropped in the handshake, named as such, and dialled once more after a pause, which
/// succeeds once the slot is free; a slot that stays held is a clear error.
#[test]
fn a_connection_dropped_past_max_startups_is_dialled_once_more() {
    use std::net::TcpStream;
    let sshd = skip_or_fail!(Sshd::builder().max_startups("1").start());
    let scratch = temp_dir();
    let agent_dir = scratch.path().join("agent").display().to_string();
    let host = |name: &str| {
        entry(
            name,
            login(
                "127.0.0.1",
                sshd.port(),
                sshd.user(),
                key(sshd.ed25519_key()),
            ),
        )
    };
    let drops = |log: &str| log.matches("past MaxStartups").count();
    // The harness's readiness probe may still hold the slot: dial until sshd took the holder.
    let holder = wait_for(Duration::from_secs(20), || {
        let holder = TcpStream::connect(("127.0.0.1", sshd.port())).ok()?;
        let port = holder.local_addr().ok()?.port();
        let taken = format!("Connection from 127.0.0.1 port {port} ");
        let dropped = format!("from [127.0.0.1]:{port} on");
        let seen = wait_for(Duration::from_secs(10), || {
            let log = sshd.log();
            if log.contains(&taken) {
                Some(true)
            } else if log.contains(&dropped) {
                Some(false)
            } else {
                None
            }
        });
        (seen == Some(true)).then_some(holder)
    })
    .unwrap_or_else(|| panic!("sshd never took the holder:\n{}", sshd.log()));
    let before = drops(&sshd.log());

    // Held all along: both dials are dropped.
    let c = collector(vec![host("shed")], settings(&agent_dir), scratch.path());
    let outcomes = smol::block_on(c.round());
    let message = message_of(&outcomes, "shed");
    assert_eq!(
        class_of(&outcomes, "shed"),
        Some(ErrorClass::Unreachable),
        "{message}\n{}",
        sshd.log()
    );
    assert!(
        message.contains("closed the connection during the handshake"),
        "{message}"
    );
    assert!(message.contains("MaxStartups"), "{message}");
    assert_eq!(
        drops(&sshd.log()),
        before + 2,
        "dialled twice:\n{}",
        sshd.log()
    );

    // Freed while the second dial waits: collected.
    let c = collector(vec![host("freed")], settings(&agent_dir), scratch.path());
    let round = std::thread::spawn(move || smol::block_on(c.round()));
    assert!(
        wait_until(Duration::from_secs(10), || drops(&sshd.log()) == before + 3),
        "the first dial was not dropped:\n{}",
        sshd.log()
    );
    drop(holder);
    let outcomes = round.join().expect("round thread");
    assert!(
        failures(&outcomes).is_empty(),
        "{:?}\n{}",
        failures(&outcomes),
        sshd.log()
    );
    assert_eq!(drops(&sshd.log()), before + 3, "{}", sshd.log());
}
