//! Runs the built agent binary as the collector would: requests in on
//! stdin, sealed reports out on stdout, in resident mode.

mod common;

use edgemon_proto::envelope::write_frame;
use std::process::{Command, Stdio};

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgemon-agent"))
}

#[test]
fn resident_agent_answers_two_requests_then_exits_0_at_eof() {
    let mut child = agent()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");

    for round in 0..2 {
        let report = common::ask(&mut stdin, &mut stdout);
        assert!(
            (0.0..=100.0).contains(&report.cpu_percent),
            "round {round}: {report:?}"
        );
        assert!(!report.cores.is_empty(), "round {round}: no cores");
        assert!(report.cores.iter().all(|c| (0.0..=100.0).contains(c)));
        assert!(report.mem_total > 0 && report.mem_used <= report.mem_total);
        let mem_pct = report.mem_used as f64 * 100.0 / report.mem_total as f64;
        assert!((0.0..=100.0).contains(&mem_pct));
        assert!(report.uptime_s > 0, "round {round}: uptime 0");
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

#[test]
fn a_bad_request_exits_2_with_a_diagnostic() {
    let mut child = agent()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    write_frame(&mut stdin, b"GET / HTTP/1.0\r\n\r\n").expect("written");
    drop(stdin);
    let out = child.wait_with_output().expect("agent exits");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing answered to a bad request");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad request"), "stderr: {stderr}");
}

#[test]
fn silence_ends_a_resident_agent_with_code_3() {
    // stdin stays open (piped, never written) so only the timeout can end it.
    let mut child = agent()
        .args(["--idle-timeout", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent starts");
    let stdin = child.stdin.take();
    let status = child.wait().expect("agent exits by itself");
    drop(stdin);
    assert_eq!(status.code(), Some(3));
}

#[test]
fn version_and_usage() {
    let out = agent().arg("--version").output().expect("runs");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("edgemon-agent "));
    let out = agent().arg("--bogus").output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

/// The Linux families (the Windows agent's are checked by its own unit tests under Wine and
/// by `windows_exe.rs`).
#[test]
#[cfg(unix)]
fn the_report_carries_the_families_and_honours_the_options() {
    use edgemon_proto::report::family::filesystems::Filesystem;
    use edgemon_proto::report::family::options::{AgentOptions, Watch, WatchBy};
    use edgemon_proto::report::family::processes::Watched;
    use edgemon_proto::report::family::system::System;
    use edgemon_proto::report::family::{filesystems, interfaces, processes, system};

    let options = AgentOptions {
        fs_exclude_types: Vec::new(),
        watch: vec![
            Watch {
                name: "me".into(),
                by: WatchBy::Cmdline,
                // An idle timeout no other agent on the box uses: only this one matches.
                pattern: "*edgemon-agent --idle-timeout 86399 --options *".into(),
            },
            Watch {
                name: "nothing".into(),
                by: WatchBy::Name,
                pattern: "no-such-process-x".into(),
            },
        ],
        ..AgentOptions::default()
    };
    let mut child = agent()
        .args(["--idle-timeout", "86399", "--options", &options.to_token()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let report = common::ask(&mut stdin, &mut stdout);
    drop(stdin);
    let _ = child.wait();

    let sys: Vec<System> = report.typed();
    let sys = sys.first().expect("system section");
    let modes = [
        sys.cpu_user,
        sys.cpu_system,
        sys.cpu_iowait,
        sys.cpu_steal,
        sys.cpu_idle,
    ];
    let sum: f64 = modes.iter().map(|m| m.expect("every mode measured")).sum();
    assert!((sum - 100.0).abs() < 0.01, "modes sum to {sum}: {sys:?}");
    assert!(sys.mem_available.is_some_and(|m| m > 0));
    assert!(sys.procs.is_some_and(|p| p > 0) && sys.pid_max.is_some_and(|p| p > 0));
    assert!(sys.files_max.is_some_and(|f| f > 0));
    assert!(report.section(&system::SPEC).is_some());

    let fs: Vec<Filesystem> = report.typed();
    let root = fs.iter().find(|f| f.mount == "/").expect("/ reported");
    assert!(
        root.size.is_some_and(|s| s > 0) && !root.hanging,
        "{root:?}"
    );
    assert!(
        fs.iter().all(|f| !f.mount.starts_with("/proc")),
        "default mount exclusions apply"
    );
    assert!(report.section(&filesystems::SPEC).is_some());
    assert!(report.section(&interfaces::SPEC).is_some());

    let watched: Vec<Watched> = report.typed();
    let count = |name: &str| {
        watched
            .iter()
            .find(|w| w.name == name)
            .and_then(|w| w.count)
    };
    assert_eq!(count("me"), Some(1), "{watched:?}");
    assert_eq!(count("nothing"), Some(0));
    assert!(report.section(&processes::SPEC).is_some());
}

#[test]
fn a_bad_options_token_exits_2_and_names_it() {
    let out = agent().args(["--options", "zz"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--options") && stderr.contains("not hex"),
        "{stderr}"
    );
}
