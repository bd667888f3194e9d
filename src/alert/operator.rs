//! The operator's commands: `edgemon silence add|list|remove` and `edgemon ack`.
//!
//! They write the buffer while the daemon runs (SQLite WAL, busy timeout); the
//! daemon reads silences and acknowledgements at every round, so a change takes
//! effect at the next round. The operator is named by their login name
//! ([`operator_name`]).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};

use super::plan::{LOSS_RULE, SITE_RULE};
use super::rules::{FamilyRule, Rule};
use crate::buffer::{Buffer, NewSilence, SilenceRow, now_ms};
use crate::config::Config;

/// The login name of the operator: `SUDO_USER`, else `LOGNAME` or `USER`, else the name of
/// the process's uid in `/etc/passwd`, else `uid N`.
pub fn operator_name() -> String {
    for var in ["SUDO_USER", "LOGNAME", "USER"] {
        if let Ok(v) = std::env::var(var) {
            let v = crate::text::sanitize(v.trim()).into_owned();
            if !v.is_empty() {
                return v;
            }
        }
    }
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else {
        return "unknown".into();
    };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut f = line.split(':');
                let name = f.next()?;
                (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// What `silence add` was asked for.
#[derive(Debug, Clone)]
pub struct SilenceRequest {
    /// Every host (`--all`).
    pub all: bool,
    /// HOST then RULEs, or with `--all` only RULEs.
    pub targets: Vec<String>,
    /// `--for`.
    pub duration: Option<String>,
    /// `--until`.
    pub until: Option<String>,
    /// `--comment`.
    pub comment: String,
}

/// A silence may name a rule (`cpu`, `fs-used:/var`), a family rule alone for all its
/// members (`fs-used`), or a glob (`fs-*:/var*`).
fn valid_rule(rule: &str) -> bool {
    Rule::parse(rule).is_some()
        || FamilyRule::parse(rule).is_some()
        || rule.contains(['*', '?'])
        || rule == SITE_RULE
        || rule == LOSS_RULE
}

fn rule_names() -> String {
    let mut names: Vec<String> = Rule::ALL.iter().map(|r| r.as_str().into_owned()).collect();
    names.extend(FamilyRule::ALL.iter().map(|r| {
        if r.has_members() {
            format!("{}[:MEMBER]", r.as_str())
        } else {
            r.as_str().to_string()
        }
    }));
    names.extend([SITE_RULE.to_string(), LOSS_RULE.to_string()]);
    names.join(", ")
}

fn open(config: &Config) -> anyhow::Result<Buffer> {
    Buffer::open(&config.buffer.path)
        .with_context(|| format!("opening the buffer {}", config.buffer.path.display()))
}

/// Parses `--until`: RFC 3339 (`2026-11-25T18:00:00Z`, or `2026-11-25 18:00:00`, UTC).
fn parse_until(text: &str) -> anyhow::Result<i64> {
    let t = humantime::parse_rfc3339_weak(text.trim()).with_context(|| {
        format!("--until {text:?}: expected a UTC time like 2026-11-25T18:00:00Z")
    })?;
    Ok(t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64))
}

/// `edgemon silence add`.
pub fn silence_add(
    config: &Config,
    req: &SilenceRequest,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let (host, rules) = if req.all {
        (None, req.targets.clone())
    } else {
        let Some((host, rules)) = req.targets.split_first() else {
            bail!("name a HOST to silence, or --all");
        };
        if !config.hosts.iter().any(|h| &h.name == host) {
            bail!(
                "no host {host:?} in the configuration (hosts: {})",
                config
                    .hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        (Some(host.clone()), rules.to_vec())
    };
    if let Some(bad) = rules.iter().find(|r| !valid_rule(r)) {
        bail!("unknown rule {bad:?}; rules are {}", rule_names());
    }
    if req.comment.trim().is_empty() {
        bail!("--comment must say why (it is shown with the silence)");
    }
    let now = now_ms();
    let ends_at = match (&req.duration, &req.until) {
        (Some(d), None) => {
            let d: Duration = humantime::parse_duration(d.trim())
                .with_context(|| format!("--for {d:?}: expected a duration like 2h or 30m"))?;
            now.saturating_add(d.as_millis() as i64)
        }
        (None, Some(u)) => parse_until(u)?,
        _ => bail!("give either --for DURATION or --until TIME"),
    };
    if ends_at <= now {
        bail!("the silence would end before it starts");
    }
    let by = operator_name();
    let buffer = open(config)?;
    let comment = crate::text::sanitize(req.comment.trim()).into_owned();
    let id = buffer.add_silence(&NewSilence {
        host: host.as_deref(),
        rules: &rules,
        starts_at: now,
        ends_at,
        comment: &comment,
        created_by: &by,
        created_at: now,
    })?;
    writeln!(
        out,
        "silence {id} added: {} until {} (by {by}); effective at the next round",
        describe(host.as_deref(), &rules),
        super::message::time(ends_at)
    )?;
    Ok(ExitCode::SUCCESS)
}

fn describe(host: Option<&str>, rules: &[String]) -> String {
    let rules = if rules.is_empty() {
        "every rule".to_string()
    } else {
        rules.join(", ")
    };
    match host {
        Some(h) => format!("{rules} on {h}"),
        None => format!("{rules} on every host"),
    }
}

/// `edgemon silence list [--json]`: silences in force or still to come.
pub fn silence_list(config: &Config, json: bool, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let path = &config.buffer.path;
    if !path.exists() {
        bail!("no buffer at {} yet", path.display());
    }
    let silences = crate::buffer::StatusReader::open(path)?.silences(now_ms())?;
    if json {
        serde_json::to_writer_pretty(&mut *out, &silences)?;
        writeln!(out)?;
    } else {
        print_silences(out, &silences)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The silences as a table (also in `edgemon status`).
pub fn print_silences(out: &mut impl Write, silences: &[SilenceRow]) -> std::io::Result<()> {
    if silences.is_empty() {
        return writeln!(out, "no silences");
    }
    writeln!(
        out,
        "{:>4}  {:<20} {:<20} {:<20} {:<20} {:<12} COMMENT",
        "ID", "HOST", "RULES", "FROM", "UNTIL", "BY"
    )?;
    for s in silences {
        writeln!(
            out,
            "{:>4}  {:<20} {:<20} {:<20} {:<20} {:<12} {}",
            s.id,
            s.host.as_deref().unwrap_or("(all)"),
            if s.rules.is_empty() {
                "(all)".to_string()
            } else {
                s.rules.join(",")
            },
            super::message::time(s.starts_at),
            super::message::time(s.ends_at),
            s.created_by,
            s.comment
        )?;
    }
    Ok(())
}

/// `edgemon silence remove ID`.
pub fn silence_remove(config: &Config, id: i64, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    if open(config)?.remove_silence(id)? {
        writeln!(out, "silence {id} removed; mail resumes at the next round")?;
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("no silence {id} (see `edgemon silence list`)")
    }
}

/// `edgemon ack HOST RULE [--comment]`.
pub fn ack(
    config: &Config,
    host: &str,
    rule: &str,
    comment: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    if Rule::parse(rule).is_none() {
        bail!(
            "unknown rule {rule:?}; rules are {} (a family rule with its member, e.g. fs-used:/var)",
            rule_names()
        );
    }
    let by = operator_name();
    let comment = crate::text::sanitize(comment.unwrap_or("").trim()).into_owned();
    match open(config)?.ack(host, rule, &by, &comment, now_ms())? {
        Some(state) => {
            writeln!(
                out,
                "acknowledged {rule} on {host} ({state}) as {by}: no reminders until it resolves"
            )?;
            Ok(ExitCode::SUCCESS)
        }
        None => bail!("{host} has no active {rule} alert to acknowledge (see `edgemon status`)"),
    }
}
