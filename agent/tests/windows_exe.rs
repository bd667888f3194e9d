//! Drives the built Windows agent (`edgemon-agent.exe`) under Wine from the Linux host, as the
//! collector drives an agent: requests on stdin, sealed reports on stdout, resident.
//!
//! The exe is the one named by `EDGEMON_WINDOWS_AGENT_EXE` (what
//! `packaging/windows/build-agent.sh` printed); it runs through `tests/windows/wine-runner.sh`
//! (prefix `target/wine-prefix` unless WINEPREFIX says otherwise). Without the variable the
//! test prints SKIPPED, or fails when `EDGEMON_REQUIRE_SERVERS=1`.
#![cfg(unix)]

mod common;

use edgemon_proto::report::family::filesystems::Filesystem;
use edgemon_proto::report::family::system::System;
use edgemon_proto::report::family::{interfaces, processes};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The Windows agent under the Wine runner, or `None` (after saying why) when not built.
fn windows_agent() -> Option<Command> {
    let exe = match std::env::var_os("EDGEMON_WINDOWS_AGENT_EXE") {
        Some(exe) => PathBuf::from(exe),
        None => {
            let why = "EDGEMON_WINDOWS_AGENT_EXE is not set (packaging/windows/build-agent.sh prints the exe)";
            assert!(
                std::env::var("EDGEMON_REQUIRE_SERVERS").as_deref() != Ok("1"),
                "EDGEMON_REQUIRE_SERVERS=1: {why}"
            );
            eprintln!("SKIPPED: {why}");
            return None;
        }
    };
    assert!(
        exe.is_file(),
        "EDGEMON_WINDOWS_AGENT_EXE={} is no file",
        exe.display()
    );
    let runner = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/windows/wine-runner.sh");
    let mut cmd = Command::new(runner);
    cmd.arg(exe);
    Some(cmd)
}

#[test]
fn the_windows_agent_answers_envelope_requests_under_wine() {
    let Some(mut agent) = windows_agent() else {
        return;
    };
    let version = agent
        .arg("--version")
        .output()
        .expect("wine runs the agent");
    assert!(
        version.status.success()
            && String::from_utf8_lossy(&version.stdout).starts_with("edgemon-agent "),
        "{version:?}"
    );

    let mut agent = windows_agent().expect("still configured");
    let mut child = agent
        .args(["--idle-timeout", "300"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wine starts the agent");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    for round in 0..2 {
        let report = common::ask(&mut stdin, &mut stdout);
        // Shown with --nocapture: what Wine's figures look like.
        eprintln!(
            "round {round}:\n{}",
            String::from_utf8_lossy(&report.to_xml())
        );
        assert!(!report.cores.is_empty(), "round {round}: {report:?}");
        assert!(report.cores.iter().all(|c| (0.0..=100.0).contains(c)));
        assert!((0.0..=100.0).contains(&report.cpu_percent));
        assert!(report.mem_total > 0 && report.mem_used <= report.mem_total);
        assert!(report.swap_used <= report.swap_total);
        assert!(report.uptime_s > 0 && report.boot_time_s.is_some());
        assert_eq!(report.load, None, "Windows has no load average");
        assert!(report.hostname.is_some(), "{report:?}");
        assert!(
            report
                .os
                .as_deref()
                .is_some_and(|os| os.contains("Windows")),
            "{:?}",
            report.os
        );
        assert!(report.kernel.is_some());

        let sys: Vec<System> = report.typed();
        let sys = sys.first().expect("system section");
        let modes = [sys.cpu_user, sys.cpu_system, sys.cpu_idle];
        let sum: f64 = modes
            .iter()
            .map(|m| m.expect("user, system, idle measured"))
            .sum();
        assert!((sum - 100.0).abs() < 0.01, "modes sum to {sum}: {sys:?}");
        assert_eq!(
            (sys.cpu_iowait, sys.cpu_steal, sys.pid_max),
            (None, None, None)
        );
        assert!(sys.mem_available.is_some_and(|m| m > 0) && sys.procs.is_some_and(|p| p > 0));

        let fs: Vec<Filesystem> = report.typed();
        let c = fs
            .iter()
            .find(|f| f.mount == "C:\\")
            .expect("C:\\ reported");
        assert!(c.size.is_some_and(|s| s > 0) && !c.hanging, "{c:?}");
        assert!(report.section(&interfaces::SPEC).is_some());
        assert!(
            report.section(&processes::SPEC).is_none(),
            "not measured on Windows"
        );
    }
    drop(stdin);
    let out = child.wait_with_output().expect("agent exits");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
