//! Family `units`: systemd units in the `failed` state, from
//! `systemctl list-units --state=failed --no-legend --plain` (and, only when some failed,
//! one `systemctl show` for their results), each command under a deadline: a systemd that
//! does not answer costs the sample no more than [`DEADLINE`] and yields no section.
//! A host not booted with systemd (no `/run/systemd/system`, sd_booted's test) reports no
//! section ("not measured"); a healthy one an empty section.

use edgemon_proto::report::family::Section;
use edgemon_proto::report::family::units::FailedUnit;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Deadline of each `systemctl` command.
pub const DEADLINE: Duration = Duration::from_secs(3);
/// Most bytes read of a command's output.
const MAX_OUTPUT: u64 = 256 * 1024;

/// Parses `list-units --no-legend --plain` lines (`UNIT LOAD ACTIVE SUB DESCRIPTION...`),
/// tolerating the `●` marker older versions print even with `--plain`.
pub fn parse_list_units(text: &str) -> Vec<FailedUnit> {
    text.lines()
        .filter_map(|line| {
            let mut words = line
                .split_whitespace()
                .skip_while(|w| !w.chars().any(|c| c.is_alphanumeric()));
            let name = words.next()?;
            let _load = words.next();
            let _active = words.next();
            let sub = words.next();
            Some(FailedUnit {
                name: name.to_owned(),
                sub: sub.map(str::to_owned),
                result: None,
            })
        })
        .collect()
}

/// Parses `systemctl show -p Id -p Result` output (blocks of `Key=value` lines separated by
/// blank lines) into unit name → result.
pub fn parse_show(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut result) = (None, None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("Id=") {
                id = Some(v.trim().to_owned());
            } else if let Some(v) = line.strip_prefix("Result=") {
                result = Some(v.trim().to_owned());
            }
        }
        if let (Some(id), Some(result)) = (id, result) {
            out.push((id, result));
        }
    }
    out
}

/// Runs `program args`, returning its stdout when it exits 0 within [`DEADLINE`]; kills it
/// otherwise.
pub fn run_with_deadline(program: &str, args: &[&str]) -> Option<String> {
    let mut child = Command::new(program)
        .args(args)
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut text = String::new();
            let ok = stdout.by_ref().take(MAX_OUTPUT).read_to_string(&mut text);
            let _ = tx.send(ok.map(|_| text));
        })
        .ok()?;
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(text)) => {
            let status = child.wait().ok()?;
            status.success().then_some(text)
        }
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

/// The units section, measured now; `None` on a host without systemd or when systemctl
/// did not answer.
pub fn measure() -> Option<Section> {
    if !std::path::Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let list = run_with_deadline(
        "systemctl",
        &[
            "list-units",
            "--state=failed",
            "--no-legend",
            "--plain",
            "--all",
        ],
    )?;
    let mut units = parse_list_units(&list);
    if !units.is_empty() {
        let mut args = vec!["show", "-p", "Id", "-p", "Result", "--"];
        args.extend(units.iter().map(|u| u.name.as_str()));
        if let Some(show) = run_with_deadline("systemctl", &args) {
            let results = parse_show(&show);
            for unit in &mut units {
                unit.result = results
                    .iter()
                    .find(|(id, _)| *id == unit.name)
                    .map(|(_, r)| r.clone());
            }
        }
    }
    Some(Section::from_typed(&units))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_units_and_their_results() {
        let list = "postgresql@15-main.service loaded failed failed PostgreSQL Cluster 15-main\n\
                    ● nginx.service loaded failed failed A high performance web server\n";
        let units = parse_list_units(list);
        let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["postgresql@15-main.service", "nginx.service"]);
        assert_eq!(units[1].sub.as_deref(), Some("failed"));
        assert!(parse_list_units("").is_empty());
        let show = "Id=postgresql@15-main.service\nResult=exit-code\n\nResult=oom-kill\nId=nginx.service\n";
        assert_eq!(
            parse_show(show),
            [
                (
                    "postgresql@15-main.service".to_owned(),
                    "exit-code".to_owned()
                ),
                ("nginx.service".to_owned(), "oom-kill".to_owned())
            ]
        );
    }

    #[test]
    fn a_command_past_its_deadline_is_killed_and_gives_nothing() {
        assert_eq!(
            run_with_deadline("sh", &["-c", "echo hi"]).as_deref(),
            Some("hi\n")
        );
        assert_eq!(run_with_deadline("sh", &["-c", "exit 1"]), None);
        let start = std::time::Instant::now();
        assert_eq!(run_with_deadline("sh", &["-c", "sleep 30"]), None);
        assert!(start.elapsed() < Duration::from_secs(20));
    }
}
