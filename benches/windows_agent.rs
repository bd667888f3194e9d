//! The Windows agent's own cost per sample under Wine, next to the Linux agent's, in one run:
//! each agent runs resident (the embedded static Linux `edgemon-agent` directly, the embedded
//! `edgemon-agent.exe` under `wine64`) and answers one envelope request every 120 ms (above
//! the agents' 100 ms reuse threshold, so each sample's CPU window starts at the previous
//! one, as in a real round). Per agent and round it reports:
//!
//! - the agent process's CPU per sample: utime + stime from `/proc/PID/stat` (all its threads,
//!   exited ones included), over the steady samples after three warm-up requests;
//! - under Wine, the CPU of the prefix's `wineserver` in the same window, separately (every
//!   Windows API call that needs the server lands there), and of the prefix's other Wine
//!   processes (`services.exe`, `winedevice.exe`, `explorer.exe`, ...), found by their
//!   `WINEPREFIX`; a prefix shared with other Wine programs in that window counts their work
//!   too, so a recorded run uses a prefix of its own (`EDGEMON_WINEPREFIX`);
//! - the agent's peak resident set (`VmHWM`, and the wineserver's), and the median reply time.
//!
//! The rounds alternate Linux, Windows, Linux, Windows, ...; the summary gives the medians over
//! rounds and the Windows/Linux ratio.
//!
//! Run: `cargo bench --bench windows_agent` (`ROUNDS`, default 5; `SAMPLES` per agent and
//! round, default 200), with the Windows agent embedded (the Windows toolchain at build time,
//! or `EDGEMON_WINDOWS_AGENT_BIN=/path/edgemon-agent.exe`). `cargo test --all-targets` runs a
//! smoke run (one round of 5 samples, printed, nothing about time asserted). The Wine prefix
//! is `EDGEMON_WINEPREFIX`, else `target/wine-prefix`, made by `tests/windows/wine-prefix.sh`.
//! Without Wine or the Windows agent it prints why it is skipped; under
//! `EDGEMON_REQUIRE_SERVERS=1` that is a failure instead.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use edgemon_proto::envelope::{Initiator, read_frame, write_frame};

const GAP: Duration = Duration::from_millis(120);
const MAX_REPLY: usize = 1 << 20;
const WARM_UP: usize = 3;
/// `/proc/PID/stat` counts in USER_HZ, which Linux fixes at 100 on every architecture
/// edgemon builds for.
const TICKS_PER_SECOND: f64 = 100.0;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (rounds, samples) = if bench {
        (env("ROUNDS", 5).max(1), env("SAMPLES", 200).max(1))
    } else {
        (1, 5)
    };
    let wine = match prepare() {
        Ok(wine) => wine,
        Err(why) => {
            assert!(
                std::env::var("EDGEMON_REQUIRE_SERVERS").as_deref() != Ok("1"),
                "windows_agent: {why} (EDGEMON_REQUIRE_SERVERS=1)"
            );
            println!("windows_agent: skipped: {why}");
            return;
        }
    };
    let dir = tempfile::Builder::new()
        .prefix("edgemon-bench-")
        .tempdir()
        .expect("temp dir");
    let linux = dir.path().join("edgemon-agent");
    std::fs::write(&linux, edgemon::agent_bin::AGENT).expect("write the Linux agent");
    std::fs::set_permissions(&linux, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exe = dir.path().join("edgemon-agent.exe");
    let windows_bytes = edgemon::agent_bin::WINDOWS_AGENT.expect("checked by prepare");
    std::fs::write(&exe, windows_bytes).expect("write the Windows agent");

    println!(
        "windows_agent: {rounds} round(s) x {samples} samples per agent, one request every {GAP:?}; \
         Wine {} prefix {}; load average at start {}",
        wine.loader.display(),
        wine.prefix.display(),
        loadavg()
    );
    println!(
        "| round | agent | agent CPU µs/sample | wineserver µs/sample | other Wine µs/sample | reply ms (median) | agent VmHWM KiB | wineserver VmHWM KiB |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut linux_runs = Vec::new();
    let mut windows_runs = Vec::new();
    for round in 1..=rounds {
        let mut agent = Agent::start(Command::new(&linux));
        let run = measure(&mut agent, None, samples);
        agent.stop();
        print_row(round, "Linux", &run);
        linux_runs.push(run);

        let mut command = Command::new(&wine.loader);
        command
            .arg(&exe)
            .env("WINEPREFIX", &wine.prefix)
            .env("WINEDEBUG", "-all")
            .env("TMPDIR", wine.prefix.join("tmp"));
        let mut agent = Agent::start(command);
        let run = measure(&mut agent, Some(&wine.prefix), samples);
        agent.stop();
        print_row(round, "Windows (Wine)", &run);
        windows_runs.push(run);
    }
    let l = medians(&linux_runs);
    let w = medians(&windows_runs);
    println!(
        "median over {rounds} round(s): Linux agent {:.0} µs/sample, VmHWM {} KiB, reply {:.2} ms; \
         Windows agent under Wine {:.0} µs/sample + wineserver {:.0} µs + other Wine {:.0} µs, \
         VmHWM {} KiB (wineserver {} KiB), reply {:.2} ms",
        l.agent_us,
        l.hwm_kib,
        l.reply_ms,
        w.agent_us,
        w.server_us,
        w.others_us,
        w.hwm_kib,
        w.server_hwm_kib,
        w.reply_ms
    );
    println!(
        "ratio Windows/Linux: agent CPU {:.2}x, agent + wineserver {:.2}x, all Wine {:.2}x, VmHWM {:.2}x; \
         load average at end {}",
        ratio(w.agent_us, l.agent_us),
        ratio(w.agent_us + w.server_us, l.agent_us),
        ratio(w.agent_us + w.server_us + w.others_us, l.agent_us),
        ratio(w.hwm_kib as f64, l.hwm_kib as f64),
        loadavg()
    );
    wait_for_wineserver(&wine);
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The Wine loader and a ready prefix.
struct WineSetup {
    loader: PathBuf,
    prefix: PathBuf,
}

/// Wine, the Windows agent and the prefix, or why the bench cannot run.
fn prepare() -> Result<WineSetup, String> {
    if edgemon::agent_bin::WINDOWS_AGENT.is_none() {
        return Err(
            "this build of edgemon has no Windows agent (build with the Windows \
                    toolchain or EDGEMON_WINDOWS_AGENT_BIN=/path/edgemon-agent.exe)"
                .into(),
        );
    }
    let loader = edgemon::collect::local::wine_binary();
    if !loader.is_file() {
        return Err(format!(
            "Wine not installed ({} not found; install wine64 or set EDGEMON_WINE)",
            loader.display()
        ));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let prefix = std::env::var_os("EDGEMON_WINEPREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/wine-prefix"));
    let script = root.join("tests/windows/wine-prefix.sh");
    if script.is_file() {
        let out = Command::new("bash")
            .arg(&script)
            .arg(&prefix)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} {} failed ({}): {}",
                script.display(),
                prefix.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    } else if !prefix.join("system.reg").is_file() {
        return Err(format!(
            "no Wine prefix at {} and no {} to make one",
            prefix.display(),
            script.display()
        ));
    }
    Ok(WineSetup { loader, prefix })
}

/// A resident agent on pipes; its pid is the agent's (wine64 becomes the Windows process).
struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
}

impl Agent {
    fn start(mut command: Command) -> Agent {
        // stderr to /dev/null: a wineserver that this wine64 starts would hold a pipe open.
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout piped");
        Agent {
            child,
            stdin,
            stdout,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One request: the time to its reply, after checking the reply opens and parses.
    fn ask(&mut self) -> Duration {
        let init = Initiator::new();
        let stdin = self.stdin.as_mut().expect("stdin open");
        let t = Instant::now();
        write_frame(stdin, &init.request()).expect("write the request");
        stdin.flush().expect("flush the request");
        let reply = read_frame(&mut self.stdout, MAX_REPLY)
            .expect("a reply frame")
            .expect("a reply before EOF");
        let took = t.elapsed();
        let xml = init.open(&reply, MAX_REPLY).expect("open the reply");
        let report = edgemon::report::parse(&xml).expect("parse the report");
        assert!(
            !report.cores.is_empty() && report.mem_total > 0,
            "an empty report"
        );
        took
    }

    /// EOF on stdin ends the agent; killed if it has not exited 10 s later.
    fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One agent's figures in one round.
struct Run {
    agent_us: f64,
    server_us: f64,
    others_us: f64,
    reply_ms: f64,
    hwm_kib: u64,
    server_hwm_kib: u64,
}

fn measure(agent: &mut Agent, prefix: Option<&Path>, samples: usize) -> Run {
    for _ in 0..WARM_UP {
        agent.ask();
        std::thread::sleep(GAP);
    }
    let pid = agent.pid();
    let wine0 = prefix.map(|p| wine_ticks(p, pid)).unwrap_or_default();
    let agent0 = ticks(pid).expect("the agent's /proc/PID/stat");
    let mut took = Vec::with_capacity(samples);
    for _ in 0..samples {
        std::thread::sleep(GAP);
        took.push(agent.ask());
    }
    let agent1 = ticks(pid).expect("the agent's /proc/PID/stat");
    let wine1 = prefix.map(|p| wine_ticks(p, pid)).unwrap_or_default();
    took.sort();
    let per_sample = |t: u64| t as f64 / TICKS_PER_SECOND * 1e6 / samples as f64;
    Run {
        agent_us: per_sample(agent1.saturating_sub(agent0)),
        server_us: per_sample(wine1.server.saturating_sub(wine0.server)),
        others_us: per_sample(wine1.others.saturating_sub(wine0.others)),
        reply_ms: took[took.len() / 2].as_secs_f64() * 1000.0,
        hwm_kib: hwm_kib(pid),
        server_hwm_kib: wine1.server_hwm_kib,
    }
}

fn print_row(round: usize, label: &str, r: &Run) {
    let wine = |v: f64| {
        if label == "Linux" {
            "-".to_string()
        } else {
            format!("{v:.0}")
        }
    };
    println!(
        "| {round} | {label} | {:.0} | {} | {} | {:.2} | {} | {} |",
        r.agent_us,
        wine(r.server_us),
        wine(r.others_us),
        r.reply_ms,
        r.hwm_kib,
        if label == "Linux" {
            "-".to_string()
        } else {
            r.server_hwm_kib.to_string()
        }
    );
}

/// Medians over rounds: a [`Run`] of the median of each figure.
fn medians(runs: &[Run]) -> Run {
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    Run {
        agent_us: median(runs.iter().map(|r| r.agent_us).collect()),
        server_us: median(runs.iter().map(|r| r.server_us).collect()),
        others_us: median(runs.iter().map(|r| r.others_us).collect()),
        reply_ms: median(runs.iter().map(|r| r.reply_ms).collect()),
        hwm_kib: median(runs.iter().map(|r| r.hwm_kib as f64).collect()) as u64,
        server_hwm_kib: median(runs.iter().map(|r| r.server_hwm_kib as f64).collect()) as u64,
    }
}

/// utime + stime of process `pid` (all its threads, exited ones too), in clock ticks.
fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU ticks of the Wine processes of `prefix` other than the agent `agent`.
#[derive(Default)]
struct WineTicks {
    server: u64,
    others: u64,
    server_hwm_kib: u64,
}

fn wine_ticks(prefix: &Path, agent: u32) -> WineTicks {
    let wanted = format!("WINEPREFIX={}", prefix.display());
    let mut sum = WineTicks::default();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return sum;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == agent {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let t = ticks(pid).unwrap_or(0);
        if comm.starts_with("wineserver") {
            sum.server += t;
            sum.server_hwm_kib = sum.server_hwm_kib.max(hwm_kib(pid));
        } else {
            sum.others += t;
        }
    }
    sum
}

/// Waits (at most 30 s) for the prefix's wineserver to exit on its own, so that the bench
/// leaves no process behind.
fn wait_for_wineserver(wine: &WineSetup) {
    let server = wine.loader.with_file_name("wineserver");
    let Ok(mut child) = Command::new(&server)
        .arg("-w")
        .env("WINEPREFIX", &wine.prefix)
        .env("TMPDIR", wine.prefix.join("tmp"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}
