//! SSH fleet collection against real sshd instances (issue 5, item 7): a
//! fleet of healthy host entries and hostile hosts in one round, each hostile
//! host getting its error class while every healthy host gets its sample;
//! persistent sessions across rounds; a host key that changes between rounds
//! and is re-pinned by the operator.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use edgemon::collect::Collector;
use edgemon::collect::outcome::{ErrorClass, HostOutcome};
use edgemon::collect::ssh::{self, hostkeys::HostKeyStore, hostkeys::known_hosts_name};
use edgemon::config::{
    AlertLimits, Auth, CollectConfig, HostConfig, HostKeyPolicy, SshTarget, Transport,
    secret::Secret,
};

use crate::skip_or_fail;
use crate::support::sshd::{Sshd, Tarpit};
use crate::support::{ChildGuard, Edgemon, temp_dir, wait_until};

/// Healthy entries served by the plain sshd (plus one password host).
const HEALTHY: usize = 48;

fn settings(agent_dir: &str) -> CollectConfig {
    CollectConfig {
        interval: Duration::from_secs(60),
        concurrency: 64,
        connect_timeout: Duration::from_secs(3),
        auth_timeout: Duration::from_secs(20),
        command_timeout: Duration::from_secs(60),
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

fn host(name: &str, port: u16, user: &str, auth: Auth) -> HostConfig {
    ssh_entry(name, "127.0.0.1", port, user, auth)
}

/// An SSH host entry at `address:port` under `accept-new`, with no alert limits.
pub(crate) fn ssh_entry(
    name: &str,
    address: &str,
    port: u16,
    user: &str,
    auth: Auth,
) -> HostConfig {
    HostConfig {
        os: Default::default(),
        name: name.to_string(),
        transport: Transport::Ssh(SshTarget {
            address: address.to_string(),
            port,
            user: user.to_string(),
            auth,
            host_key_policy: HostKeyPolicy::AcceptNew,
            via: Vec::new(),
        }),
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

/// Public-key authentication with the unencrypted key at `path`.
pub(crate) fn key(path: &Path) -> Auth {
    Auth::IdentityFile {
        path: path.to_path_buf(),
        passphrase: None,
    }
}

fn by_name(outcomes: &[HostOutcome]) -> HashMap<&str, &HostOutcome> {
    outcomes.iter().map(|o| (o.host.as_str(), o)).collect()
}

fn class_of(outcomes: &HashMap<&str, &HostOutcome>, name: &str) -> Option<ErrorClass> {
    outcomes[name].result.as_ref().err().map(|e| e.class)
}

fn table(outcomes: &[HostOutcome]) -> String {
    let mut out = Vec::new();
    edgemon::collect::print_round(&mut out, outcomes, Duration::ZERO).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// A filter that copies the agent's stdout and flips one bit of its first reply,
/// inside the authenticated part (past the DH value): a valid-looking but tampered reply.
const FLIP_PY: &str = r#"
import os, sys
pos = 0
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    data = bytearray(chunk)
    target = 4 + 340
    if pos <= target < pos + len(data):
        data[target - pos] ^= 0x01
    pos += len(data)
    os.write(1, bytes(data))
"#;

/// A private key that no server authorizes.
fn stranger_key(dir: &Path) -> PathBuf {
    let path = dir.join("stranger");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-f"])
        .arg(&path)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success());
    path
}

struct Fleet {
    hosts: Vec<HostConfig>,
    expected: Vec<(&'static str, ErrorClass)>,
    healthy: Vec<String>,
}

#[test]
fn a_fleet_with_hostile_hosts_gets_every_healthy_sample_and_the_right_error_classes() {
    let plain = skip_or_fail!(Sshd::start());
    let password = skip_or_fail!(Sshd::with_password_user());
    let random = skip_or_fail!(
        Sshd::builder()
            .force_command("head -c 4096 /dev/urandom")
            .start()
    );
    let failing = skip_or_fail!(Sshd::builder().force_command("exit 3").start());
    // libssh2 reports exit status 0 for a killed command; the signal must be seen.
    let killed = skip_or_fail!(Sshd::builder().force_command("kill -KILL $$").start());
    // Endless output: the length prefix "y\ny\n" announces ~2 GB, far over the limit.
    let flood = skip_or_fail!(Sshd::builder().force_command("yes").start());
    let scratch = temp_dir();
    let flip = scratch.path().join("flip.py");
    std::fs::write(&flip, FLIP_PY).unwrap();
    let tamper_command = format!(
        "/bin/bash -c 'set -o pipefail; eval \"$SSH_ORIGINAL_COMMAND\" | /usr/bin/python3 -u {}'",
        flip.display()
    );
    let tampered = skip_or_fail!(Sshd::builder().force_command(&tamper_command).start());
    let mut rekeyed = skip_or_fail!(Sshd::start());
    let tarpit = skip_or_fail!(Tarpit::start());
    let stranger = stranger_key(scratch.path());

    let mut hosts = Vec::new();
    let mut healthy = Vec::new();
    for i in 0..HEALTHY {
        // Alternate ed25519 and RSA user keys.
        let auth = if i % 2 == 0 {
            key(plain.ed25519_key())
        } else {
            key(plain.rsa_key())
        };
        let name = format!("web{i:02}");
        hosts.push(host(&name, plain.port(), plain.user(), auth));
        healthy.push(name);
    }
    let (pw_user, pw) = password.password_user().expect("a password user");
    hosts.push(host(
        "pw",
        password.port(),
        pw_user,
        Auth::Password(Secret::new(pw)),
    ));
    healthy.push("pw".into());
    hosts.push(host(
        "rekeyed",
        rekeyed.port(),
        rekeyed.user(),
        key(rekeyed.ed25519_key()),
    ));
    healthy.push("rekeyed".into());
    let expected = vec![
        ("random", ErrorClass::BadEnvelope),
        ("tampered", ErrorClass::BadEnvelope),
        ("exit3", ErrorClass::AgentFailed),
        ("killed", ErrorClass::AgentFailed),
        ("flood", ErrorClass::BadEnvelope),
        ("tarpit", ErrorClass::Timeout),
        ("stranger", ErrorClass::AuthRefused),
        ("closed", ErrorClass::Unreachable),
    ];
    hosts.push(host(
        "killed",
        killed.port(),
        killed.user(),
        key(killed.ed25519_key()),
    ));
    hosts.push(host(
        "flood",
        flood.port(),
        flood.user(),
        key(flood.ed25519_key()),
    ));
    hosts.push(host(
        "random",
        random.port(),
        random.user(),
        key(random.ed25519_key()),
    ));
    hosts.push(host(
        "tampered",
        tampered.port(),
        tampered.user(),
        key(tampered.ed25519_key()),
    ));
    hosts.push(host(
        "exit3",
        failing.port(),
        failing.user(),
        key(failing.ed25519_key()),
    ));
    hosts.push(host(
        "tarpit",
        tarpit.port(),
        plain.user(),
        key(plain.ed25519_key()),
    ));
    hosts.push(host("stranger", plain.port(), plain.user(), key(&stranger)));
    // Nothing listens on a fresh free port: the connection is refused.
    hosts.push(host(
        "closed",
        crate::support::free_port(),
        plain.user(),
        key(plain.ed25519_key()),
    ));
    let fleet = Fleet {
        hosts,
        expected,
        healthy,
    };

    // `$USER` expands remotely: root and the password user get private directories.
    let agent_dir = format!("/tmp/edgemon-it-{}-$USER", std::process::id());
    let config = settings(&agent_dir);
    let deadline = edgemon::collect::host_deadline(&config);
    let pins = scratch.path().join("host-keys");
    let agent = scratch.path().join("unused-local-agent");

    // Round 1: fresh sessions, agent upload.
    let collector = Collector::new(
        fleet.hosts.clone(),
        config.clone(),
        agent.clone(),
        pins.clone(),
    );
    let start = Instant::now();
    let outcomes = smol::block_on(collector.round());
    let wall = start.elapsed();
    check_round(&fleet, &outcomes, "round 1");
    let seen = by_name(&outcomes);
    let message = |name: &str| {
        seen[name]
            .result
            .as_ref()
            .err()
            .map(|e| e.message.clone())
            .unwrap_or_default()
    };
    assert!(
        message("killed").contains("SIGKILL"),
        "{}",
        message("killed")
    );
    assert!(message("flood").contains("exceeds"), "{}", message("flood"));
    assert!(
        message("exit3").contains("status 3"),
        "{}",
        message("exit3")
    );
    assert!(
        wall < deadline * 2,
        "round 1 took {wall:?}, beyond the host deadline of {deadline:?}\n{}",
        table(&outcomes)
    );
    assert_eq!(
        collector.open_sessions(),
        fleet.healthy.len(),
        "healthy hosts keep their sessions"
    );

    // Round 2: the same sessions and resident agents answer again.
    let outcomes = smol::block_on(collector.round());
    check_round(&fleet, &outcomes, "round 2");
    drop(collector);

    // The "rekeyed" host is reinstalled: a new process (as `edgemon collect` is) sees the new key.
    let old = rekeyed.host_key_fingerprint().to_string();
    rekeyed
        .restart_with_new_host_key()
        .expect("restart sshd with a new host key");
    let new = rekeyed.host_key_fingerprint().to_string();
    let collector = Collector::new(
        fleet.hosts.clone(),
        config.clone(),
        agent.clone(),
        pins.clone(),
    );
    let outcomes = smol::block_on(collector.round());
    let seen = by_name(&outcomes);
    let err = seen["rekeyed"]
        .result
        .as_ref()
        .expect_err("a changed host key is refused");
    assert_eq!(err.class, ErrorClass::HostKeyChanged, "{err}");
    assert!(
        err.message.contains(&old) && err.message.contains(&new),
        "{err}"
    );
    for name in fleet.healthy.iter().filter(|n| *n != "rekeyed") {
        assert!(
            seen[name.as_str()].result.is_ok(),
            "round 3, {name}:\n{}",
            table(&outcomes)
        );
    }
    // No sample until the operator re-pins, even after another round.
    let outcomes = smol::block_on(collector.round());
    assert_eq!(
        class_of(&by_name(&outcomes), "rekeyed"),
        Some(ErrorClass::HostKeyChanged)
    );

    // `edgemon hosts trust rekeyed`: pin what the host presents now.
    let Transport::Ssh(target) = &fleet
        .hosts
        .iter()
        .find(|h| h.name == "rekeyed")
        .unwrap()
        .transport
    else {
        unreachable!()
    };
    let blob = ssh::fetch_host_key(target, Duration::from_secs(10)).expect("fetch the new key");
    let replaced = HostKeyStore::new(pins.clone(), None)
        .trust(&known_hosts_name("127.0.0.1", rekeyed.port()), &blob)
        .expect("trust");
    assert_eq!(replaced, vec![old]);
    let outcomes = smol::block_on(collector.round());
    assert!(
        by_name(&outcomes)["rekeyed"].result.is_ok(),
        "{}",
        table(&outcomes)
    );

    let _ = std::fs::remove_dir_all(format!(
        "/tmp/edgemon-it-{}-{}",
        std::process::id(),
        plain.user()
    ));
    let _ = std::fs::remove_dir_all(format!("/tmp/edgemon-it-{}-{pw_user}", std::process::id()));
}

fn check_round(fleet: &Fleet, outcomes: &[HostOutcome], round: &str) {
    let seen = by_name(outcomes);
    assert_eq!(outcomes.len(), fleet.hosts.len());
    for name in &fleet.healthy {
        assert!(
            seen[name.as_str()].result.is_ok(),
            "{round}: healthy host {name} got no sample:\n{}",
            table(outcomes)
        );
    }
    for (name, class) in &fleet.expected {
        assert_eq!(
            class_of(&seen, name),
            Some(*class),
            "{round}: host {name}:\n{}",
            table(outcomes)
        );
    }
}

#[test]
fn strict_policy_refuses_an_unknown_host_and_accepts_one_seeded_from_known_hosts() {
    let sshd = skip_or_fail!(Sshd::start());
    let scratch = temp_dir();
    let known = scratch.path().join("known_hosts");
    std::fs::write(&known, format!("{}\n", sshd.known_hosts_line())).unwrap();
    let agent_dir = format!("/tmp/edgemon-it-strict-{}", std::process::id());
    let mut config = settings(&agent_dir);
    config.persistent_sessions = false;
    config.resident_agent = false;
    let mut strict = host("strict", sshd.port(), sshd.user(), key(sshd.ed25519_key()));
    if let Transport::Ssh(t) = &mut strict.transport {
        t.host_key_policy = HostKeyPolicy::Strict;
    }
    let agent = scratch.path().join("unused");

    let collector = Collector::new(
        vec![strict.clone()],
        config.clone(),
        agent.clone(),
        scratch.path().join("pins-a"),
    );
    let outcomes = smol::block_on(collector.round());
    let err = outcomes[0]
        .result
        .as_ref()
        .expect_err("unknown key refused");
    assert_eq!(err.class, ErrorClass::HostKeyUnknown, "{err}");
    assert!(err.message.contains(sshd.host_key_fingerprint()), "{err}");

    config.known_hosts = Some(known.clone());
    let pins = scratch.path().join("pins-b");
    let collector = Collector::new(
        vec![strict.clone()],
        config.clone(),
        agent.clone(),
        pins.clone(),
    );
    let outcomes = smol::block_on(collector.round());
    assert!(outcomes[0].result.is_ok(), "{}", table(&outcomes));
    assert_eq!(
        collector.open_sessions(),
        0,
        "sessions are closed when not persistent"
    );
    let exported = HostKeyStore::new(pins, None).export().unwrap();
    assert_eq!(exported.trim(), sshd.known_hosts_line());

    // A revoked key is refused even though it is also listed as valid.
    std::fs::write(
        &known,
        format!(
            "{}\n@revoked * {}\n",
            sshd.known_hosts_line(),
            sshd.host_public_key()
        ),
    )
    .unwrap();
    let collector = Collector::new(vec![strict], config, agent, scratch.path().join("pins-c"));
    let outcomes = smol::block_on(collector.round());
    let err = outcomes[0]
        .result
        .as_ref()
        .expect_err("revoked key refused");
    assert_eq!(err.class, ErrorClass::HostKeyChanged, "{err}");
    assert!(err.message.contains("revoked"), "{err}");
    let _ = std::fs::remove_dir_all(&agent_dir);
}

/// Writes an edgemon TOML config: `healthy` entries on `sshd`, plus extra raw `[[hosts]]` text.
fn write_config(dir: &Path, sshd: &Sshd, healthy: usize, extra: &str) -> PathBuf {
    let mut text = format!(
        "[appliance]\nid = \"it\"\ndata_dir = \"{data}\"\n\
         [collect]\nconcurrency = 64\nconnect_timeout = \"3s\"\nauth_timeout = \"20s\"\n\
         command_timeout = \"60s\"\nagent_dir = \"{data}/remote-agent\"\n\
         [defaults]\nport = {port}\nuser = \"{user}\"\nidentity_file = \"{key}\"\n\
         [sync]\nurl = \"mysql://nobody@127.0.0.1:1/none\"\n",
        data = dir.join("data").display(),
        port = sshd.port(),
        user = sshd.user(),
        key = sshd.ed25519_key().display(),
    );
    for i in 0..healthy {
        text.push_str(&format!(
            "[[hosts]]\nname = \"h{i:02}\"\naddress = \"127.0.0.1\"\n"
        ));
    }
    text.push_str(extra);
    let path = dir.join("edgemon.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn edgemon_collect_prints_the_table_and_hosts_trust_repins_a_changed_key() {
    let mut sshd = skip_or_fail!(Sshd::start());
    let tarpit = skip_or_fail!(Tarpit::start());
    let random = skip_or_fail!(
        Sshd::builder()
            .force_command("head -c 4096 /dev/urandom")
            .start()
    );
    let dir = temp_dir();
    let extra = format!(
        "[[hosts]]\nname = \"tarpit\"\naddress = \"127.0.0.1\"\nport = {}\n\
         [[hosts]]\nname = \"random\"\naddress = \"127.0.0.1\"\nport = {}\nidentity_file = \"{}\"\n",
        tarpit.port(),
        random.port(),
        random.ed25519_key().display()
    );
    let config = write_config(dir.path(), &sshd, 50, &extra);
    let collect = |expect_ok: usize| {
        // `edgemon collect` exits 1 when every host failed; the table is printed either way.
        let output = Edgemon::new(dir.path())
            .arg("collect")
            .arg("--config")
            .arg(&config)
            .output();
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            out.contains(&format!(
                "52 hosts: {expect_ok} ok, {} failed",
                52 - expect_ok
            )),
            "{out}"
        );
        out
    };
    let out = collect(50);
    assert!(
        out.lines()
            .any(|l| l.starts_with("tarpit") && l.contains("timeout")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("random") && l.contains("bad-envelope")),
        "{out}"
    );

    let exported = Edgemon::new(dir.path())
        .args(["hosts", "export", "--config"])
        .arg(&config)
        .stdout();
    assert!(exported.contains(&sshd.known_hosts_line()), "{exported}");

    let old = sshd.host_key_fingerprint().to_string();
    sshd.restart_with_new_host_key()
        .expect("restart with a new host key");
    let out = collect(0);
    let line = out
        .lines()
        .find(|l| l.starts_with("h00"))
        .unwrap_or_default();
    assert!(
        line.contains("host-key-changed") && line.contains(&old),
        "{out}"
    );
    assert!(line.contains(sshd.host_key_fingerprint()), "{out}");

    // The operator read the old fingerprint somewhere: nothing is pinned, the new one is shown.
    let store = dir.path().join("data").join("host-keys");
    let before = std::fs::read_to_string(&store).unwrap();
    let refused = Edgemon::new(dir.path())
        .args(["hosts", "trust", "h00", "--fingerprint", &old, "--config"])
        .arg(&config)
        .assert_err();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(sshd.host_key_fingerprint()) && stderr.contains("nothing was pinned"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&store).unwrap(), before);

    // Run as root on a store the daemon's user owns: the store keeps its owner and mode.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o640)).unwrap();
    let owner = if crate::support::is_root() {
        std::os::unix::fs::chown(&store, Some(65534), Some(65534)).unwrap();
        (65534, 65534)
    } else {
        let meta = std::fs::metadata(&store).unwrap();
        (meta.uid(), meta.gid())
    };
    let trusted = Edgemon::new(dir.path())
        .args(["hosts", "trust", "h00", "--fingerprint"])
        .arg(sshd.host_key_fingerprint())
        .arg("--config")
        .arg(&config)
        .stdout();
    assert!(
        trusted.contains(sshd.host_key_fingerprint()) && trusted.contains(&old),
        "{trusted}"
    );
    let meta = std::fs::metadata(&store).unwrap();
    assert_eq!((meta.uid(), meta.gid()), owner);
    assert_eq!(meta.mode() & 0o7777, 0o640);
    collect(50);

    // Without --fingerprint, trust pins what is presented and prints its fingerprint.
    let trusted = Edgemon::new(dir.path())
        .args(["hosts", "trust", "h01", "--config"])
        .arg(&config)
        .stdout();
    assert!(trusted.contains(sshd.host_key_fingerprint()), "{trusted}");
}

/// Runs `ssh-keygen -H` on `path`: OpenSSH hashes the host names in place.
fn hash_known_hosts(path: &Path) {
    let out = Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(path)
        .output()
        .expect("run ssh-keygen -H");
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.lines().all(|l| l.starts_with("|1|")),
        "ssh-keygen -H left plain names: {text}"
    );
}

#[test]
fn a_hashed_known_hosts_seed_is_honoured_by_collect_under_accept_new() {
    let sshd = skip_or_fail!(Sshd::start());
    let other = skip_or_fail!(Sshd::start());
    let dir = temp_dir();
    // The seed lists this sshd's port with another server's key: a contradiction.
    let lying = dir.path().join("lying_known_hosts");
    std::fs::write(
        &lying,
        format!("[127.0.0.1]:{} {}\n", sshd.port(), other.host_public_key()),
    )
    .unwrap();
    hash_known_hosts(&lying);
    let truthful = dir.path().join("known_hosts");
    std::fs::write(&truthful, format!("{}\n", sshd.known_hosts_line())).unwrap();
    hash_known_hosts(&truthful);

    let seeded = |seed: &Path, data: &str| {
        let config = write_config(dir.path(), &sshd, 1, "");
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "[collect]\n",
            &format!("[collect]\nknown_hosts = \"{}\"\n", seed.display()),
        );
        let text = text.replace("/data", &format!("/{data}"));
        std::fs::write(&config, text).unwrap();
        let output = Edgemon::new(dir.path())
            .args(["collect", "--config"])
            .arg(&config)
            .output();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let out = seeded(&lying, "data-lying");
    let line = out
        .lines()
        .find(|l| l.starts_with("h00"))
        .unwrap_or_default();
    assert!(
        line.contains("host-key-changed") && line.contains(other.host_key_fingerprint()),
        "{out}"
    );
    let pins = std::fs::read_to_string(dir.path().join("data-lying").join("host-keys"))
        .unwrap_or_default();
    assert!(
        !pins.contains(sshd.host_public_key()),
        "pinned anyway: {pins}"
    );

    let out = seeded(&truthful, "data-true");
    assert!(out.contains("1 hosts: 1 ok, 0 failed"), "{out}");
}

#[test]
fn ssh_agent_and_rsa_identities_authenticate_through_the_cli() {
    let sshd = skip_or_fail!(Sshd::start());
    let dir = temp_dir();
    let sock = dir.path().join("agent.sock");
    let mut agent_cmd = Command::new("ssh-agent");
    agent_cmd
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null());
    let _agent = skip_or_fail!(ChildGuard::spawn("ssh-agent", &mut agent_cmd));
    assert!(
        wait_until(Duration::from_secs(30), || sock.exists()),
        "ssh-agent socket"
    );
    let added = Command::new("ssh-add")
        .arg(sshd.ed25519_key())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .expect("run ssh-add");
    assert!(added.status.success(), "{added:?}");
    let extra = format!(
        "[[hosts]]\nname = \"via-agent\"\naddress = \"127.0.0.1\"\nuse_agent = true\n\
         [[hosts]]\nname = \"via-rsa\"\naddress = \"127.0.0.1\"\nidentity_file = \"{}\"\n",
        sshd.rsa_key().display()
    );
    let config = write_config(dir.path(), &sshd, 0, &extra);
    let out = Edgemon::new(dir.path())
        .env("SSH_AUTH_SOCK", &sock)
        .args(["collect", "--config"])
        .arg(&config)
        .stdout();
    assert!(out.contains("2 hosts: 2 ok, 0 failed"), "{out}");
}

#[test]
fn terminal_escapes_a_host_prints_on_stderr_never_reach_collect_or_status_output() {
    let sshd = skip_or_fail!(Sshd::start());
    // A hostile host: colours, a window title, a bell, a carriage return and a forged line.
    let hostile = skip_or_fail!(
        Sshd::builder()
            .force_command(
                "printf '\\033[31mRED\\033]0;owned\\007\\r\\nlevel=ERROR forged\\033[2J\\n' >&2; exit 3"
            )
            .start()
    );
    let dir = temp_dir();
    let extra = format!(
        "[[hosts]]\nname = \"hostile\"\naddress = \"127.0.0.1\"\nport = {}\nidentity_file = \"{}\"\n",
        hostile.port(),
        hostile.ed25519_key().display()
    );
    let config = write_config(dir.path(), &sshd, 1, &extra);
    let output = Edgemon::new(dir.path())
        .args(["collect", "--config"])
        .arg(&config)
        .output();
    let status = Edgemon::new(dir.path())
        .args(["status", "--config"])
        .arg(&config)
        .output();
    for (what, out) in [("collect", &output), ("status", &status)] {
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("hostile"))
            .unwrap_or_default();
        assert!(
            line.contains("agent-failed") && line.contains("RED") && line.contains("forged"),
            "{what}:\n{text}"
        );
        let controls: Vec<u8> = out
            .stdout
            .iter()
            .chain(&out.stderr)
            .copied()
            .filter(|b| b.is_ascii_control() && *b != b'\n')
            .collect();
        assert!(controls.is_empty(), "{what} printed {controls:?}:\n{text}");
    }
}
