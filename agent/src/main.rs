//! `edgemon-agent`: answers envelope requests on stdin with sealed stats
//! reports on stdout. Runs on monitored hosts as a static binary, uploaded
//! and started over SSH by the collector. This file only parses arguments
//! and maps outcomes to exit codes:
//!
//! - 0: stdin ended cleanly;
//! - 1: stdout could not be written;
//! - 2: bad usage or a bad request (diagnostic on stderr);
//! - 3: no request within `--idle-timeout` seconds (default 600).
//!
//! The same crate builds the Windows agent (`edgemon-agent.exe`, x86_64-pc-windows-gnu):
//! `sample` is then [`windows::sample`], measured with the Windows API (see [`windows`]);
//! the arguments, the envelope and the request loop are the same.

#[cfg(unix)]
mod family;
#[cfg(unix)]
mod sample;
mod serve;
/// The deadline workers, shared with the Windows volumes (`windows::volumes`).
#[cfg(windows)]
#[path = "family/statfs.rs"]
mod statfs;
mod window;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows::sample;

use edgemon_proto::report::family::options::AgentOptions;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str =
    "usage: edgemon-agent [--idle-timeout SECS] [--options TOKEN] | --version | --help
Reads length-prefixed envelope requests on stdin and writes one sealed stats
report per request on stdout. Exits 0 at end of input, 3 after SECS (default
600) without a request, 2 on a bad request or bad arguments. TOKEN is the
collector's encoding of what to measure (exclusions, caps, watched processes);
without it the defaults apply.";

/// What the arguments ask for.
struct Args {
    idle: Duration,
    options: AgentOptions,
}

/// Default idle timeout: a resident agent never outlives its collector by long.
const DEFAULT_IDLE_SECS: u64 = 600;

fn main() -> ExitCode {
    let Args { idle, options } = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("edgemon-agent: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    match serve::run(std::io::stdin(), &mut stdout, idle, options) {
        serve::Outcome::Eof => ExitCode::SUCCESS,
        serve::Outcome::Output(e) => {
            eprintln!("edgemon-agent: writing the reply to stdout: {e}");
            ExitCode::from(1)
        }
        serve::Outcome::BadRequest(why) => {
            eprintln!("edgemon-agent: bad request on stdin: {why}");
            ExitCode::from(2)
        }
        serve::Outcome::Idle(after) => {
            eprintln!(
                "edgemon-agent: no request for {} s, exiting",
                after.as_secs()
            );
            ExitCode::from(3)
        }
    }
}

/// The arguments, or `None` when they asked only for version or help.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut idle_secs = DEFAULT_IDLE_SECS;
    let mut options = AgentOptions::default();
    while let Some(arg) = args.next() {
        if arg == "--options" || arg.starts_with("--options=") {
            let token = match arg.strip_prefix("--options=") {
                Some(token) => token.to_owned(),
                None => args.next().ok_or("--options needs a token")?,
            };
            options = AgentOptions::from_token(&token).map_err(|e| format!("--options: {e}"))?;
            continue;
        }
        let value = match arg.as_str() {
            "--version" | "-V" => {
                println!("edgemon-agent {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(None);
            }
            "--idle-timeout" => args
                .next()
                .ok_or("--idle-timeout needs a number of seconds")?,
            other => match other.strip_prefix("--idle-timeout=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unknown argument `{other}`")),
            },
        };
        idle_secs = match value.parse::<u64>() {
            Ok(secs) if secs > 0 => secs,
            _ => {
                return Err(format!(
                    "--idle-timeout `{value}` is not a positive number of seconds"
                ));
            }
        };
    }
    Ok(Some(Args {
        idle: Duration::from_secs(idle_secs),
        options,
    }))
}
