//! Windows hosts over SSH (issue 20, items 3 and 4) against the Windows OpenSSH
//! rig ([`WindowsSshd`]: a loopback sshd with the `OpenSSH_for_Windows` banner
//! whose commands run in Wine's `cmd.exe` and whose SFTP sees the prefix's
//! `C:` drive): detection by banner, the probe, the upload into
//! `%LOCALAPPDATA%\edgemon` by hash name, the resident agent answering many
//! rounds on one exec, samples reaching MySQL through the daemon, a tampered
//! agent refused and never run, a new build uploaded beside a running one, a
//! build without the Windows agent and `os = "windows"` on a Linux sshd failing
//! clearly.
//!
//! What the rig does not reproduce of a real Windows Server, so these tests do
//! not show it (README's manual check covers it on real Windows):
//! - ACLs: Wine's `icacls` is a stub that exits 0 and changes nothing, and
//!   files live on a Linux filesystem owned by root; that the agent directory
//!   ends up private (inheritance off; the user, SYSTEM and Administrators
//!   only) is not checked here, only that the `icacls` command runs.
//! - A running `.exe` being locked against overwriting: Linux lets anyone with
//!   write access replace it; the test checks that a new build is written beside
//!   the running one and the running one's bytes are untouched.
//! - Case-insensitive paths: the Linux side of `drive_c` is case-sensitive;
//!   the paths edgemon uses are exactly those `%LOCALAPPDATA%` names. Only the
//!   `/C:/...` form of SFTP paths exists (Windows also takes `C:/...`), and
//!   the files are owned by root, not by the login user.
//! - Junctions and Windows symbolic links: a Linux symlink stands in for them
//!   (refused the same way, as SFTP reports a link).
//! - PowerShell as the default shell: Wine's `powershell.exe` is a stub, so
//!   only `cmd.exe` answers here; PowerShell's command lines are unit-tested.
//! - The banner is only emulated (`VersionAddendum` on Debian's OpenSSH); the
//!   key exchange, authentication (no `administrators_authorized_keys`), SFTP
//!   server and session environment are Debian's OpenSSH's, and the launcher
//!   stands in for Windows OpenSSH's `cmd.exe /c "<command>"`.
//! - Defender (scanning or quarantining a fresh unsigned `.exe`), user
//!   profiles being created at first logon, domain accounts, and job objects
//!   killing the agent when the session ends (here it exits on EOF).

use std::path::Path;
use std::time::{Duration, Instant};

use edgemon::collect::outcome::ErrorClass;
use edgemon::collect::ssh::{self, Link, Shared, Watch, hostkeys::HostKeyStore};
use edgemon::config::{Auth, CollectConfig, HostKeyPolicy, HostOs, SshTarget};
use edgemon::report::Report;
use sha2::{Digest, Sha256};

use crate::skip_or_fail;
use crate::support::mariadb::MariaDb;
use crate::support::sshd::Sshd;
use crate::support::windows_sshd::WindowsSshd;
use crate::support::{temp_dir, wait_until};
use crate::sync::{PATIENCE, assert_complete, unsynced};

fn settings() -> CollectConfig {
    CollectConfig {
        interval: Duration::from_secs(60),
        concurrency: 4,
        connect_timeout: Duration::from_secs(5),
        auth_timeout: Duration::from_secs(30),
        // Wine starts slowly on a loaded two-core box.
        command_timeout: Duration::from_secs(60),
        known_hosts: None,
        host_key_policy: HostKeyPolicy::AcceptNew,
        agent_dir: "~/.cache/edgemon-unused-on-windows".to_string(),
        persistent_sessions: true,
        resident_agent: true,
        agent_idle_timeout: Duration::from_secs(600),
        max_reply_bytes: 1 << 20,
        max_clock_skew: Duration::from_secs(300),
    }
}

fn target(sshd: &Sshd) -> SshTarget {
    SshTarget {
        address: "127.0.0.1".to_string(),
        port: sshd.port(),
        user: sshd.user().to_string(),
        auth: Auth::IdentityFile {
            path: sshd.ed25519_key().to_path_buf(),
            passphrase: None,
        },
        host_key_policy: HostKeyPolicy::AcceptNew,
        via: Vec::new(),
    }
}

/// One collection of `target` on `link` (a fresh session when `None`).
fn collect(
    target: &SshTarget,
    os: HostOs,
    shared: &Shared,
    link: Option<Link>,
) -> (
    Result<Report, edgemon::collect::outcome::CollectError>,
    Option<Link>,
) {
    let watch = Watch::default();
    ssh::collect("win", target, os, None, shared, &watch, link)
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn agent_name(hash: &str) -> String {
    format!("edgemon-agent-{}.exe", &hash[..16])
}

/// How many commands the rig ran that start the agent file `name`.
fn starts(rig: &WindowsSshd, name: &str) -> usize {
    rig.commands()
        .iter()
        .filter(|c| c.contains(name) && !c.starts_with("icacls"))
        .count()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_windows_host_gets_its_agent_by_hash_name_runs_it_resident_and_refuses_a_tampered_one() {
    let rig = skip_or_fail!(WindowsSshd::start());
    let scratch = temp_dir();
    let target = target(rig.sshd());
    let shared = Shared::new(
        settings(),
        HostKeyStore::new(scratch.path().join("pins"), None),
    );
    let (agent, hash) = shared.windows_agent.expect("Wine::start checked the agent");

    // A build without the Windows agent: detected by the banner, failed saying how to get it.
    let mut bare = Shared::new(
        settings(),
        HostKeyStore::new(scratch.path().join("pins"), None),
    );
    bare.windows_agent = None;
    let (result, link) = collect(&target, HostOs::Auto, &bare, None);
    let err = result.expect_err("no Windows agent in this Shared");
    assert_eq!(err.class, ErrorClass::AgentFailed, "{err}");
    assert!(err.message.contains("OpenSSH_for_Windows"), "{err}");
    assert!(
        err.message
            .contains(edgemon::agent_bin::WINDOWS_AGENT_MISSING),
        "{err}"
    );
    assert!(link.is_none());
    assert!(rig.commands().is_empty(), "{:?}", rig.commands());

    // Round 1: detected by the banner, probed, uploaded, started resident.
    let (result, link) = collect(&target, HostOs::Auto, &shared, None);
    let report = result.unwrap_or_else(|e| panic!("round 1: {e}\n{}", rig.sshd().log()));
    assert!(
        report
            .os
            .as_deref()
            .is_some_and(|os| os.contains("Windows")),
        "{report:?}"
    );
    assert!(report.mem_total > 0, "{report:?}");
    let name = agent_name(hash);
    let file = rig.agent_dir().join(&name);
    assert_eq!(
        std::fs::read(&file).expect("the agent is in %LOCALAPPDATA%\\edgemon"),
        agent
    );
    assert_eq!(
        dir_names(&rig.agent_dir()),
        vec![name.clone()],
        "no temporary file left"
    );
    let commands = rig.commands();
    assert!(
        commands[0].starts_with("echo \"edgemon-probe|"),
        "{commands:?}"
    );
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("icacls \"C:\\users\\")
                && c.contains("AppData\\Local\\edgemon\" /inheritance:r")),
        "{commands:?}"
    );
    assert_eq!(starts(&rig, &name), 1, "{commands:?}");

    // Rounds 2-5: the same session and agent answer; nothing is executed again.
    let mut link = link.expect("a persistent session");
    for round in 2..=5 {
        let (result, next) = collect(&target, HostOs::Auto, &shared, Some(link));
        result.unwrap_or_else(|e| panic!("round {round}: {e}"));
        link = next.expect("the session is kept");
    }
    assert_eq!(rig.commands().len(), commands.len(), "{:?}", rig.commands());

    // A new collector build: uploaded beside the running agent, which is not touched.
    let mut newer: Vec<u8> = agent.to_vec();
    newer.extend_from_slice(b"\0edgemon test: another build");
    let newer: &'static [u8] = Box::leak(newer.into_boxed_slice());
    let newer_hash: &'static str = Box::leak(hex_sha256(newer).into_boxed_str());
    let mut upgraded = Shared::new(
        settings(),
        HostKeyStore::new(scratch.path().join("pins"), None),
    );
    upgraded.windows_agent = Some((newer, newer_hash));
    let (result, upgraded_link) = collect(&target, HostOs::Auto, &upgraded, None);
    result.unwrap_or_else(|e| panic!("the new build: {e}"));
    let newer_name = agent_name(newer_hash);
    let mut both = vec![name.clone(), newer_name.clone()];
    both.sort();
    assert_eq!(dir_names(&rig.agent_dir()), both);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        agent,
        "the running agent was overwritten"
    );
    assert_eq!(
        std::fs::read(rig.agent_dir().join(&newer_name)).unwrap(),
        newer
    );
    // The old resident agent still answers on its session.
    let (result, link) = collect(&target, HostOs::Auto, &shared, Some(link));
    result.unwrap_or_else(|e| panic!("the old agent after the upgrade: {e}"));
    drop((link, upgraded_link));

    // Tampered: other bytes under the build's name. Not run, not replaced.
    let mut tampered = agent.to_vec();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x5a;
    std::fs::write(&file, &tampered).unwrap();
    let before = starts(&rig, &name);
    for _ in 0..2 {
        let (result, link) = collect(&target, HostOs::Auto, &shared, None);
        let err = result.expect_err("a tampered agent is refused");
        assert_eq!(err.class, ErrorClass::AgentUntrusted, "{err}");
        assert!(
            err.message.contains(&format!("edgemon\\{name}"))
                && err.message.contains(&hex_sha256(&tampered)[..16])
                && err.message.contains("not run"),
            "{err}"
        );
        assert!(link.is_none());
    }
    assert_eq!(
        starts(&rig, &name),
        before,
        "the tampered agent was started"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        tampered,
        "refused, left for the operator"
    );

    // A link to a copy of the build: the bytes read back match, but what runs could change
    // under the link. Refused too.
    std::fs::remove_file(&file).unwrap();
    let copy = rig.agent_dir().join("copy.bin");
    std::fs::write(&copy, agent).unwrap();
    std::os::unix::fs::symlink("copy.bin", &file).unwrap();
    let (result, _) = collect(&target, HostOs::Auto, &shared, None);
    let err = result.expect_err("a linked agent is refused");
    assert_eq!(err.class, ErrorClass::AgentUntrusted, "{err}");
    assert!(err.message.contains("not a plain file"), "{err}");
    assert_eq!(starts(&rig, &name), before, "the linked agent was started");
    std::fs::remove_file(&copy).unwrap();

    // The operator deletes it: the next round uploads the build again.
    std::fs::remove_file(&file).unwrap();
    let (result, _link) = collect(&target, HostOs::Auto, &shared, None);
    result.unwrap_or_else(|e| panic!("after the tampered file was removed: {e}"));
    assert_eq!(std::fs::read(&file).unwrap(), agent);
}

#[test]
fn a_host_configured_windows_on_a_linux_sshd_fails_clearly() {
    let sshd = skip_or_fail!(Sshd::start());
    let scratch = temp_dir();
    let shared = Shared::new(
        settings(),
        HostKeyStore::new(scratch.path().join("pins"), None),
    );
    let (result, link) = collect(&target(&sshd), HostOs::Windows, &shared, None);
    let err = result.expect_err("a Linux host is not Windows");
    assert_eq!(err.class, ErrorClass::AgentFailed, "{err}");
    assert!(err.message.contains("configured os = \"windows\""), "{err}");
    if shared.windows_agent.is_some() {
        assert!(
            err.message.contains("neither by cmd.exe nor by PowerShell"),
            "{err}"
        );
    } else {
        assert!(
            err.message
                .contains(edgemon::agent_bin::WINDOWS_AGENT_MISSING),
            "{err}"
        );
    }
    assert!(link.is_none());
}

/// The daemon collects the rig's host every second (resident agent, one exec) and syncs to
/// MariaDB; after SIGTERM, `edgemon sync` leaves MySQL equal to the buffer.
#[test]
fn a_windows_hosts_samples_reach_mysql_through_the_daemon() {
    let rig = skip_or_fail!(WindowsSshd::start());
    let db = skip_or_fail!(MariaDb::start());
    let dir = temp_dir();
    let buffer = dir.path().join("buffer.sqlite");
    let config = dir.path().join("edgemon.toml");
    let sshd = rig.sshd();
    std::fs::write(
        &config,
        format!(
            "[appliance]\nid = \"site-windows\"\ndata_dir = \"{data}\"\n\n\
             [collect]\ninterval = \"1s\"\nconnect_timeout = \"5s\"\nauth_timeout = \"30s\"\n\
             command_timeout = \"120s\"\n\n\
             [[hosts]]\nname = \"win01\"\naddress = \"127.0.0.1\"\nport = {port}\nuser = \"{user}\"\n\
             identity_file = \"{key}\"\nos = \"auto\"\n\n\
             [buffer]\npath = \"{buffer}\"\n\n\
             [sync]\nurl = \"{url}\"\ninterval = \"1s\"\nbatch_size = 2\nmax_backoff = \"2s\"\ntimeout = \"5s\"\n",
            data = dir.path().join("data").display(),
            port = sshd.port(),
            user = sshd.user(),
            key = sshd.ed25519_key().display(),
            buffer = buffer.display(),
            url = db.url(),
        ),
    )
    .expect("write the config");
    let mut daemon = crate::support::daemon::Daemon::start(dir.path(), &config);
    let started = Instant::now();
    assert!(
        wait_until(PATIENCE * 2, || db.sample_count().is_some_and(|n| n >= 6)),
        "6 samples of the Windows host did not reach MySQL in {:?}:\n{}\n{:?}",
        started.elapsed(),
        daemon.log(),
        rig.commands()
    );
    daemon.signal("TERM");
    let (status, log) = daemon.wait(Duration::from_secs(120));
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{log}");
    crate::sync::sync_now(dir.path(), &config);
    assert_eq!(unsynced(&buffer), 0);
    assert_complete(&db, &buffer, "site-windows");
    let hash = edgemon::agent_bin::windows_sha256_hex().expect("Wine::start checked the agent");
    let name = agent_name(hash);
    assert!(rig.agent_dir().join(&name).is_file());
    // Many rounds, one probe and one start of the agent: it stayed resident.
    let commands = rig.commands();
    assert_eq!(starts(&rig, &name), 1, "{commands:?}");
    assert_eq!(
        commands
            .iter()
            .filter(|c| c.contains("edgemon-probe"))
            .count(),
        1,
        "{commands:?}"
    );
}

/// Whether an agent started from `%LOCALAPPDATA%\edgemon` runs (Wine shows the Windows path
/// in the process's command line).
fn agent_running() -> bool {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries.flatten().any(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                    String::from_utf8_lossy(&c).contains("AppData\\Local\\edgemon\\edgemon-agent-")
                })
            })
        })
        .unwrap_or(false)
}

/// Two entries on one Windows box upload once; a resident agent that idle-timed out is started
/// again on the same session without a new probe; without `resident_agent` every round starts
/// the agent, on the same session.
#[test]
fn entries_sharing_a_windows_box_upload_once_and_an_idle_agent_restarts_on_its_session() {
    let rig = skip_or_fail!(WindowsSshd::start());
    let scratch = temp_dir();
    let sshd = rig.sshd();
    let key = crate::ssh::key(sshd.ed25519_key());
    let hosts: Vec<_> = ["win-a", "win-b"]
        .iter()
        .map(|name| {
            let mut host =
                crate::ssh::ssh_entry(name, "127.0.0.1", sshd.port(), sshd.user(), key.clone());
            host.os = HostOs::Auto;
            host
        })
        .collect();
    let collector = edgemon::collect::Collector::new(
        hosts,
        settings(),
        scratch.path().join("unused-local-agent"),
        scratch.path().join("pins"),
    );
    let outcomes = smol::block_on(collector.round());
    for outcome in &outcomes {
        assert!(
            outcome.result.is_ok(),
            "{}: {:?}\n{:?}\n{}",
            outcome.host,
            outcome.result,
            rig.commands(),
            processes()
        );
    }
    let count = |needle: &str| {
        rig.commands()
            .iter()
            .filter(|c| c.starts_with(needle))
            .count()
    };
    assert_eq!(count("echo \"edgemon-probe|"), 2, "{:?}", rig.commands());
    assert_eq!(count("icacls "), 1, "one upload: {:?}", rig.commands());
    let hash = edgemon::agent_bin::windows_sha256_hex().expect("Wine::start checked the agent");
    let name = agent_name(hash);
    assert_eq!(starts(&rig, &name), 2, "{:?}", rig.commands());
    drop(collector);
    assert!(
        wait_until(PATIENCE, || !agent_running()),
        "the agents outlived their sessions"
    );

    // A one-second idle timeout: the agent exits between rounds and starts again on the same
    // session, without a new probe.
    let mut quick = settings();
    quick.agent_idle_timeout = Duration::from_secs(1);
    let shared = Shared::new(
        quick.clone(),
        HostKeyStore::new(scratch.path().join("pins"), None),
    );
    let target = target(sshd);
    let probes = count("echo \"edgemon-probe|");
    let before = starts(&rig, &name);
    let (result, link) = collect(&target, HostOs::Auto, &shared, None);
    result.unwrap_or_else(|e| panic!("first round: {e}"));
    assert!(
        wait_until(PATIENCE, || !agent_running()),
        "the agent did not idle out"
    );
    let (result, link) = collect(&target, HostOs::Auto, &shared, link);
    result.unwrap_or_else(|e| panic!("after the idle timeout: {e}"));
    assert!(link.is_some());
    assert_eq!(starts(&rig, &name), before + 2, "{:?}", rig.commands());
    assert_eq!(
        count("echo \"edgemon-probe|"),
        probes + 1,
        "{:?}",
        rig.commands()
    );
    drop(link);

    // Not resident: one start per round, one session, one probe.
    quick.resident_agent = false;
    let shared = Shared::new(quick, HostKeyStore::new(scratch.path().join("pins"), None));
    let before = starts(&rig, &name);
    let mut link = None;
    for round in 1..=3 {
        let (result, next) = collect(&target, HostOs::Auto, &shared, link);
        result.unwrap_or_else(|e| panic!("round {round} without a resident agent: {e}"));
        link = next;
        assert!(link.is_some(), "the session is kept");
    }
    assert_eq!(starts(&rig, &name), before + 3, "{:?}", rig.commands());
    assert_eq!(
        count("echo \"edgemon-probe|"),
        probes + 2,
        "{:?}",
        rig.commands()
    );
}

/// `ps` of everything, for failure messages.
fn processes() -> String {
    std::process::Command::new("ps")
        .args(["-eo", "pid,ppid,sid,stat,etime,args"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
