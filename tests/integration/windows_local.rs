//! The Windows agent end to end under Wine, through the local transport: a daemon
//! (`edgemon run`) with one local host of `os = "windows"` runs the embedded
//! `edgemon-agent.exe` under `wine64` every round. Its envelope opens and its
//! report parses (and says Windows), every round's sample lands in the buffer
//! and reaches a real MariaDB exactly once, and its memory alert is mailed to a
//! real SMTP server. When the agent measures volumes, `C:` reaches the
//! filesystems family's table in MySQL; a service that stops with an error is
//! mailed as a failed unit and reaches the units family's table.
//!
//! Skipped (failed under `EDGEMON_REQUIRE_SERVERS=1`) without Wine or without a
//! Windows agent in this build (`EDGEMON_WINDOWS_AGENT_BIN` at build time, or
//! the Windows toolchain). A build without the Windows agent is checked instead
//! to explain such a host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mysql::prelude::Queryable;

use crate::skip_or_fail;
use crate::support::daemon::Daemon;
use crate::support::mariadb::MariaDb;
use crate::support::smtp::Smtp;
use crate::support::wine::Wine;
use crate::support::{ChildGuard, Edgemon, temp_dir, wait_until};
use crate::sync::{assert_complete, count};

/// Generous: the first round under Wine starts the prefix's `wineserver`, and the machine is
/// shared while tests run.
const WAIT: Duration = Duration::from_secs(180);

const HOST: &str = "win-wine";
const APPLIANCE: &str = "site-win";

/// The daemon's configuration: the one Windows host (memory alert at 0 %, so it fires at
/// the first sample; every other rule off, the box's own disk may be full), MySQL at
/// `url`, mail to the SMTP server on `smtp_port`.
fn write_config(dir: &Path, url: &str, smtp_port: u16) -> PathBuf {
    let path = dir.join("edgemon.toml");
    let text = format!(
        "[appliance]\nid = \"{APPLIANCE}\"\ndata_dir = \"{data}\"\n\n\
         [collect]\ninterval = \"2s\"\n\n\
         [[hosts]]\nname = \"{HOST}\"\ntransport = \"local\"\nos = \"windows\"\n\n\
         [hosts.alerts]\nmemory = \"0%\"\ncpu = \"off\"\nswap = \"off\"\n\
         fs_used = \"off\"\nfs_used_critical = \"off\"\nfs_inodes = \"off\"\nfs_inodes_critical = \"off\"\nfs_filling = false\n\n\
         [buffer]\npath = \"{buffer}\"\n\n\
         [sync]\nurl = \"{url}\"\ninterval = \"1s\"\ntimeout = \"10s\"\n\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n\n\
         [mail]\nfrom = \"edgemon@localhost\"\nrecipients = [\"ops@localhost\"]\n",
        data = dir.join("data").display(),
        buffer = dir.join("buffer.sqlite").display(),
    );
    std::fs::write(&path, text).expect("write the config");
    path
}

/// The Windows host's samples in the buffer: (seq, os, cores, mem_used, mem_total), by seq.
fn buffer_samples(buffer: &Path) -> Vec<(i64, Option<String>, String, i64, i64)> {
    let conn = rusqlite::Connection::open(buffer).expect("open the buffer");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    let mut stmt = conn
        .prepare(
            "SELECT s.seq, s.os, s.cores, s.mem_used, s.mem_total FROM samples s
             JOIN hosts h ON h.id = s.host_id WHERE h.name = ?1 ORDER BY s.seq",
        )
        .expect("prepare");
    stmt.query_map([HOST], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// The Windows host's rows in MySQL: (rows, distinct seqs, lowest seq, highest seq).
fn central_seqs(db: &MariaDb) -> (i64, i64, i64, i64) {
    let mut conn = db.conn().expect("connect");
    conn.exec_first(
        "SELECT COUNT(*), COUNT(DISTINCT s.seq), COALESCE(MIN(s.seq), 0), COALESCE(MAX(s.seq), 0)
         FROM samples s JOIN hosts h ON h.id = s.host_id WHERE h.name = ?",
        (HOST,),
    )
    .expect("count the host's rows")
    .unwrap_or((0, 0, 0, 0))
}

/// Waits for the prefix's `wineserver` to exit on its own (3 s after its last program), so
/// that the test leaves no process behind; other Wine tests may still hold it, so this waits
/// a bounded time and then goes on.
fn let_wineserver_exit(wine: &Wine) {
    let server = Path::new(crate::support::wine::WINE).with_file_name("wineserver");
    let mut command = Command::new(server);
    command
        .arg("-w")
        .envs(wine.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Ok(mut waiting) = ChildGuard::spawn("wineserver -w", &mut command) {
        waiting.wait_exit(Duration::from_secs(30));
    }
}

/// Starts the prefix's demand-start service `edgemon-test-failing` (tests/windows/
/// wine-prefix.sh), which stops at once with exit code 42; `sc` says it failed to start, which
/// is the point. Its output is not read: Wine's services may hold the pipes open.
fn start_failing_service(wine: &Wine) {
    let mut command = wine.command("sc");
    command
        .args(["start", "edgemon-test-failing"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut sc =
        ChildGuard::spawn("sc start edgemon-test-failing", &mut command).expect("run Wine's sc");
    sc.wait_exit(Duration::from_secs(60));
}

#[test]
fn a_local_windows_host_under_wine_reaches_the_buffer_mysql_and_mail() {
    let wine = skip_or_fail!(Wine::start());
    let db = skip_or_fail!(MariaDb::start());
    let smtp = skip_or_fail!(Smtp::start());
    let dir = temp_dir();
    let config = write_config(dir.path(), &db.url(), smtp.port());
    let buffer = dir.path().join("buffer.sqlite");

    let mut daemon = Daemon::start_with_env(dir.path(), &config, &wine.env());
    let mails = smtp
        .wait_for_messages(1, WAIT)
        .unwrap_or_else(|| panic!("no alert mail; daemon log:\n{}", daemon.log()));
    let subject = mails[0].subject();
    assert!(
        subject.contains("FIRING memory") && subject.contains(HOST),
        "{subject}"
    );
    assert!(
        mails[0].body.contains("memory") && mails[0].body.contains(HOST),
        "{}",
        mails[0].body
    );

    // A service that stops with an error (the prefix's `edgemon-test-failing`, exit code 42)
    // is a failed unit: mailed under its name, and in MySQL's units family.
    start_failing_service(&wine);
    let failed = "unit-failed:edgemon-test-failing";
    assert!(
        wait_until(WAIT, || smtp
            .messages()
            .iter()
            .any(|m| m.subject().contains(failed))),
        "no {failed} mail; mails {:?}; daemon log:\n{}",
        smtp.messages()
            .iter()
            .map(|m| m.subject().to_owned())
            .collect::<Vec<_>>(),
        daemon.log()
    );
    assert!(
        wait_until(WAIT, || buffer_samples(&buffer).len() >= 5
            && central_seqs(&db).0 >= 3),
        "five samples in the buffer and three in MySQL; daemon log:\n{}",
        daemon.log()
    );
    let status = daemon.stop();
    assert!(status.success(), "{status}\n{}", daemon.log());
    let log = daemon.log();
    let rounds = log.matches("round recorded").count();
    let rounds_ok = log
        .lines()
        .filter(|l| l.contains("round recorded") && l.contains(" ok=1 "))
        .count();

    // The report came through the envelope whole: it says Windows, with cores and memory.
    let samples = buffer_samples(&buffer);
    let (_, os, cores, used, total) = samples.last().expect("a sample").clone();
    let os = os.unwrap_or_default();
    assert!(os.contains("Windows"), "the report's OS is {os:?}");
    let cores: Vec<f64> = cores
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| c.parse().expect("a core's CPU"))
        .collect();
    assert!(!cores.is_empty(), "no core in the report");
    assert!(cores.iter().all(|c| (0.0..=100.0).contains(c)), "{cores:?}");
    assert!(
        total > 0 && used > 0 && used <= total,
        "memory {used} of {total}"
    );

    // Every round's sample is in the buffer, once, in sequence.
    assert_eq!(rounds_ok, rounds, "a round failed; log:\n{log}");
    let seqs: Vec<i64> = samples.iter().map(|s| s.0).collect();
    let n = i64::try_from(samples.len()).expect("a count");
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "buffer seqs");
    assert_eq!(samples.len(), rounds, "one sample per recorded round");

    // The rest drains, and MySQL holds each of them exactly once.
    crate::sync::sync_now(dir.path(), &config);
    assert_eq!(central_seqs(&db), (n, n, 1, n), "MySQL rows of {HOST}");
    assert_complete(&db, &buffer, APPLIANCE);

    let units = count(
        &db,
        &format!(
            "SELECT COUNT(*) FROM family_units WHERE host = '{HOST}' \
             AND name = 'edgemon-test-failing' AND sub = 'stopped' AND result = 'exit-code 42'"
        ),
    );
    assert!(units >= 1, "no failed-service row in family_units");

    // Volumes, when the agent measures them: C: is a member of the filesystems family.
    let volumes = count(
        &db,
        &format!("SELECT COUNT(*) FROM family_filesystems WHERE host = '{HOST}'"),
    );
    if volumes > 0 {
        let c_drive = count(
            &db,
            &format!(
                "SELECT COUNT(*) FROM family_filesystems WHERE host = '{HOST}' AND mount LIKE 'C:%'"
            ),
        );
        assert_eq!(c_drive, n, "one C: row per sample ({volumes} volume rows)");
        let mounts: Vec<String> = db
            .conn()
            .expect("connect")
            .exec(
                "SELECT DISTINCT mount FROM family_filesystems WHERE host = ? ORDER BY mount",
                (HOST,),
            )
            .expect("the volumes");
        eprintln!(
            "{HOST}: {n} samples of {os:?}, {} cores, volumes {mounts:?}",
            cores.len()
        );
    } else {
        eprintln!("NOTE: this Windows agent reports no volumes; the C: check was not made");
    }
    drop(daemon);
    let_wineserver_exit(&wine);
}

/// A build without the Windows agent fails a local Windows host, naming it and saying how to
/// get the agent; the other hosts are collected.
#[test]
fn a_build_without_the_windows_agent_explains_a_local_windows_host() {
    let Some(binary) = linux_only_build() else {
        return;
    };
    let dir = temp_dir();
    let config = crate::local::local_config(
        dir.path(),
        1,
        &format!("[[hosts]]\nname = \"{HOST}\"\ntransport = \"local\"\nos = \"windows\"\n"),
    );
    let table = Edgemon::binary(&binary, dir.path())
        .args(["collect", "--config"])
        .arg(&config)
        .stdout();
    assert!(table.contains("2 hosts: 1 ok, 1 failed"), "{table}");
    assert!(
        table.contains(&format!("host {HOST} has os = \"windows\""))
            && table.contains("built without the Windows agent"),
        "{table}"
    );
    let check = Edgemon::binary(&binary, dir.path())
        .args(["config", "check"])
        .arg(&config)
        .stdout();
    assert!(
        check.contains(&format!(
            "warning: host with os = \"windows\" ({HOST}) will fail"
        )),
        "{check}"
    );
}

/// A collector built without the Windows agent: this test binary's own `edgemon` when this
/// build has none, else the one `tests/run.sh` builds with `EDGEMON_WINDOWS_AGENT=skip` and
/// names in `EDGEMON_LINUX_ONLY_BIN`; `None` (the test prints SKIPPED) without one, which
/// fails under `EDGEMON_REQUIRE_SERVERS=1`.
pub(crate) fn linux_only_build() -> Option<std::path::PathBuf> {
    if edgemon::agent_bin::WINDOWS_AGENT.is_none() {
        return Some(env!("CARGO_BIN_EXE_edgemon").into());
    }
    match std::env::var_os("EDGEMON_LINUX_ONLY_BIN") {
        Some(binary) => Some(binary.into()),
        None if crate::support::require_servers() => panic!(
            "this build has the Windows agent and EDGEMON_LINUX_ONLY_BIN names no build without it (tests/run.sh makes one)"
        ),
        None => {
            eprintln!(
                "SKIPPED: this build has the Windows agent and EDGEMON_LINUX_ONLY_BIN is unset"
            );
            None
        }
    }
}
