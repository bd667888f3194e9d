//! `edgemon status`: reads the buffer read-only (so it works while the daemon
//! runs) and prints a table, or JSON with the stable field names of
//! [`BufferStatus`](crate::buffer::BufferStatus). Per host it adds what the
//! newest sample's metric families show ([`FamilySummary`], the same summary
//! as the status page's hosts table): the worst filesystem, failed units,
//! missing watched processes, hanging mounts and members cut or refused; in
//! JSON as each host's `families` object.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use crate::buffer::{BufferStatus, StatusReader, now_ms};
use crate::web::families::FamilySummary;

/// The family summary of every host of `status`, by name, from its newest sample.
pub fn host_families(
    reader: &StatusReader,
    status: &BufferStatus,
) -> crate::buffer::Result<BTreeMap<String, FamilySummary>> {
    let mut out = BTreeMap::new();
    for h in &status.hosts {
        let summary = reader
            .latest_sections(&h.name)?
            .map(|s| FamilySummary::of(&s.sections))
            .unwrap_or_default();
        out.insert(h.name.clone(), summary);
    }
    Ok(out)
}

/// `status` as JSON, each host with its `families` summary.
pub fn to_json(
    status: &BufferStatus,
    families: &BTreeMap<String, FamilySummary>,
) -> serde_json::Result<serde_json::Value> {
    let mut value = serde_json::to_value(status)?;
    if let Some(hosts) = value.get_mut("hosts").and_then(|h| h.as_array_mut()) {
        for host in hosts {
            let name = host
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or_default();
            let summary = families.get(name).cloned().unwrap_or_default();
            host["families"] = serde_json::to_value(summary)?;
        }
    }
    Ok(value)
}

/// Prints the hosts' family summaries as a table, when any host has something to show.
pub fn print_families(
    out: &mut impl Write,
    families: &BTreeMap<String, FamilySummary>,
) -> std::io::Result<()> {
    let shown = |s: &FamilySummary| *s != FamilySummary::default();
    if !families.values().any(shown) {
        return Ok(());
    }
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(", ")
        }
    };
    let width = families.keys().map(String::len).max().unwrap_or(4).max(4);
    writeln!(out)?;
    writeln!(
        out,
        "{:width$}  {:28}  {:24}  {:20}  NOT REPORTED / OTHER",
        "HOST", "WORST FILESYSTEM", "FAILED UNITS", "MISSING PROCESSES"
    )?;
    for (name, s) in families.iter().filter(|(_, s)| shown(s)) {
        let worst = s.worst_filesystem.as_ref().map_or("-".to_string(), |w| {
            let free = w
                .avail
                .map(|a| format!(" ({:.1} GiB free)", a as f64 / 1_073_741_824.0))
                .unwrap_or_default();
            format!("{} {:.1}%{free}", w.mount, w.used_percent)
        });
        let mut other: Vec<String> = s
            .shortfalls
            .iter()
            .map(|f| format!("{}: {} cut, {} refused", f.family, f.cut, f.refused))
            .collect();
        if !s.hanging_filesystems.is_empty() {
            other.push(format!("HANGING {}", s.hanging_filesystems.join(", ")));
        }
        if !s.readonly_filesystems.is_empty() {
            other.push(format!("read-only {}", s.readonly_filesystems.join(", ")));
        }
        if !s.interfaces_down.is_empty() {
            other.push(format!("down {}", s.interfaces_down.join(", ")));
        }
        writeln!(
            out,
            "{name:width$}  {worst:28}  {:24}  {:20}  {}",
            list(&s.failed_units),
            list(&s.missing_processes),
            list(&other)
        )?;
    }
    Ok(())
}

/// Prints `status` as a human-readable table.
pub fn print_table(out: &mut impl Write, status: &BufferStatus) -> std::io::Result<()> {
    let now = now_ms();
    let width = status
        .hosts
        .iter()
        .map(|h| h.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:width$}  {:>12}  {:>6}  {:>6}  {:>6}  {:>10}  {:>5}  LAST ERROR",
        "HOST", "LAST SAMPLE", "CPU", "MEM", "SWAP", "UPTIME", "FAILS"
    )?;
    for h in &status.hosts {
        let pct = |v: Option<f64>| v.map(|v| format!("{v:.1}%")).unwrap_or_else(|| "-".into());
        let error = match (&h.last_error_class, &h.last_error) {
            // Sanitised again here: a buffer written before host text was sanitised on entry
            // still holds raw errors.
            (Some(class), Some(msg)) if h.consecutive_failures > 0 => {
                format!("{class}: {}", crate::text::sanitize(msg))
            }
            (Some(class), _) => format!("(earlier) {class}"),
            _ => "-".into(),
        };
        let mut alerts = if h.firing_alerts.is_empty() {
            String::new()
        } else {
            format!("  FIRING: {}", h.firing_alerts.join(", "))
        };
        for a in &h.acks {
            alerts.push_str(&format!(
                "  ACK {} by {} {}{}",
                a.rule,
                a.by,
                ago(now, Some(a.at)),
                if a.comment.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", a.comment)
                }
            ));
        }
        writeln!(
            out,
            "{:width$}  {:>12}  {:>6}  {:>6}  {:>6}  {:>10}  {:>5}  {error}{alerts}",
            h.name,
            ago(now, h.last_sample_at),
            pct(h.cpu),
            pct(h.memory_percent),
            pct(h.swap_percent),
            h.uptime_s
                .map(
                    |s| humantime::format_duration(Duration::from_secs(s.max(0) as u64))
                        .to_string()
                        .split(' ')
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" ")
                )
                .unwrap_or_else(|| "-".into()),
            h.consecutive_failures,
        )?;
    }
    print_bastions(out, status)?;
    writeln!(out)?;
    writeln!(
        out,
        "buffer: {} ({:.1} MiB), {} samples, {} unsynced (oldest {}), {} quarantined, {} dropped",
        status.path,
        status.size_bytes as f64 / 1_048_576.0,
        status.samples,
        status.unsynced,
        ago(now, status.oldest_unsynced_at),
        status.quarantined,
        status.dropped
    )?;
    if let Some(s) = status.time_to_first_loss_s {
        writeln!(
            out,
            "time to first loss: {} (if nothing synced from now on)",
            humantime::format_duration(Duration::from_secs(s.max(0) as u64))
        )?;
    }
    writeln!(
        out,
        "identity: appliance {}, buffer epoch {}",
        status.appliance.as_deref().unwrap_or("(unresolved)"),
        status
            .epoch
            .map_or_else(|| "(not migrated yet)".to_string(), |e| e.to_string())
    )?;
    if status.collisions > 0 {
        writeln!(
            out,
            "WARNING: {} collision(s): MySQL held these identities with other values; the rows are kept in the \
             buffer's collisions table, not written (last: {})",
            status.collisions,
            status.last_collision.as_deref().unwrap_or("-")
        )?;
    }
    if let Some(warning) = &status.buffer_warning {
        writeln!(out, "WARNING: {warning}")?;
    }
    if let Some(damage) = &status.damaged {
        writeln!(
            out,
            "DAMAGED BUFFER replaced {}: the old file is kept as {} ({}); {} unsynced sample(s) \
             salvaged into this buffer, {} unreadable range(s) skipped",
            ago(now, Some(damage.detected_at)),
            damage.set_aside,
            damage.error,
            damage.salvaged_samples,
            damage.unreadable_ranges
        )?;
    }
    print_disk(out, now, status)?;
    if !status.silences.is_empty() {
        writeln!(out, "silences:")?;
        crate::alert::operator::print_silences(out, &status.silences)?;
    }
    writeln!(
        out,
        "sync: last success {}{}",
        ago(now, status.last_sync_at),
        status
            .last_sync_error
            .as_deref()
            .map(|e| format!(", last error: {e}"))
            .unwrap_or_default()
    )?;
    if let Some(servers) = &status.sync_servers {
        writeln!(out, "sync servers: {servers}")?;
    }
    if let Some(rate) = status.sync_drain_rate {
        let eta = match status.sync_eta_s {
            Some(s) if status.unsynced > 0 => format!(
                ", {} unsynced: about {} to go",
                status.unsynced,
                humantime::format_duration(Duration::from_secs(s))
            ),
            _ => String::new(),
        };
        writeln!(out, "sync: drain rate {rate:.0} rows/s{eta}")?;
    }
    if let Some(at) = status.sync_paused_until {
        let when = status
            .sync_next_window
            .clone()
            .unwrap_or_else(|| format!("in {}", ago_until(now, at)));
        writeln!(out, "sync paused by schedule, next window opens {when}")?;
    }
    writeln!(
        out,
        "outbox: {} pending (oldest {}), {} sent, {} failed{}",
        status.outbox.pending,
        ago(now, status.outbox.oldest_pending_at),
        status.outbox.sent,
        status.outbox.failed,
        status
            .outbox
            .last_error
            .as_deref()
            .map(|e| format!(", last error: {e}"))
            .unwrap_or_default()
    )
}

/// The filesystem line, and in plain words what a full disk costs.
/// One line per bastion that hosts are unreachable through, naming them (the hosts' own
/// lines say the same each; this groups them as the bastion alert does).
fn print_bastions(out: &mut impl Write, status: &BufferStatus) -> std::io::Result<()> {
    let mut by_bastion: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for h in &status.hosts {
        if h.consecutive_failures == 0 {
            continue;
        }
        if let (Some(class), Some(message)) = (&h.last_error_class, &h.last_error)
            && let Some(bastion) = crate::collect::outcome::bastion_of(class, message)
        {
            by_bastion.entry(bastion).or_default().push(&h.name);
        }
    }
    for (bastion, hosts) in by_bastion {
        writeln!(
            out,
            "unreachable via bastion {bastion}: {} host{} ({})",
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" },
            hosts.join(", ")
        )?;
    }
    Ok(())
}

fn print_disk(out: &mut impl Write, now: i64, status: &BufferStatus) -> std::io::Result<()> {
    let disk = &status.disk;
    let mib = |b: u64| b as f64 / 1_048_576.0;
    match (disk.free_bytes, disk.total_bytes) {
        (Some(free), Some(total)) => writeln!(
            out,
            "disk: {:.1} MiB free of {:.1} MiB, reserve of {:.1} MiB {}",
            mib(free),
            mib(total),
            mib(disk.reserve_bytes),
            if disk.reserve_in_place {
                "in place"
            } else {
                "released"
            }
        )?,
        _ => writeln!(out, "disk: free space unknown")?,
    }
    if disk.full || disk.unstored_samples > 0 {
        let lost: Vec<String> = status
            .hosts
            .iter()
            .filter(|h| h.unstored_samples > 0)
            .map(|h| format!("{} {}", h.name, h.unstored_samples))
            .collect();
        let cause = if disk.full {
            format!("DISK FULL since {}", ago(now, disk.full_since))
        } else {
            "ROUNDS NOT STORED".to_string()
        };
        writeln!(
            out,
            "{cause}: {} samples could not be stored ({}); they are recorded as drops once there is room. \
             Sync and mail go on. Last error: {}",
            disk.unstored_samples,
            if lost.is_empty() {
                "-".to_string()
            } else {
                lost.join(", ")
            },
            disk.last_error.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}

/// "12s ago", "3m ago", or "never".
pub fn ago(now_ms: i64, at_ms: Option<i64>) -> String {
    match at_ms {
        None => "never".into(),
        Some(at) => {
            let secs = ((now_ms - at).max(0) / 1000) as u64;
            let text = match secs {
                0..=119 => format!("{secs}s"),
                120..=7199 => format!("{}m", secs / 60),
                7200..=172_799 => format!("{}h", secs / 3600),
                _ => format!("{}d", secs / 86_400),
            };
            format!("{text} ago")
        }
    }
}

/// The time from `now` to `at`, both Unix ms, to the second.
fn ago_until(now: i64, at: i64) -> String {
    humantime::format_duration(Duration::from_secs(((at - now).max(0) / 1000) as u64)).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::buffer::{Buffer, now_ms};
    use crate::collect::outcome::{CollectError, ErrorClass, HostOutcome};

    /// A buffer written by an edgemon from before host text was sanitised still holds the raw
    /// text of a host's last error; `edgemon status` must not replay its escapes.
    #[test]
    fn a_stored_host_error_from_before_sanitising_is_printed_without_control_characters() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        let outcome = HostOutcome {
            host: "box".into(),
            address: "box:22".into(),
            started_at_ms: now_ms(),
            duration: Duration::ZERO,
            result: Err(CollectError::new(ErrorClass::AgentFailed, "x")),
        };
        buffer
            .record_round(&[outcome], Duration::from_secs(300), |_, _| Ok(()))
            .unwrap();
        buffer
            .conn()
            .execute(
                "UPDATE hosts SET last_error = ?1",
                ["agent said \u{1b}]0;owned\u{7}\u{1b}[2J\rforged line"],
            )
            .unwrap();
        let status = buffer.reader().status().unwrap();
        let mut out = Vec::new();
        super::print_table(&mut out, &status).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("agent said"), "{text}");
        assert!(
            !text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{7}'),
            "{text:?}"
        );
    }

    /// Hosts unreachable through one bastion are grouped under it in `edgemon status`.
    #[test]
    fn hosts_unreachable_via_a_bastion_are_grouped_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut buffer = Buffer::open(&dir.path().join("b.sqlite")).unwrap();
        let failed = |host: &str, class, message: &str| HostOutcome {
            host: host.into(),
            address: format!("{host}:22"),
            started_at_ms: now_ms(),
            duration: Duration::ZERO,
            result: Err(CollectError::new(class, message)),
        };
        let outcomes = [
            failed(
                "plc1",
                ErrorClass::UnreachableVia,
                "via bastion dmz: refused (unreachable)",
            ),
            failed(
                "plc2",
                ErrorClass::UnreachableVia,
                "via bastion dmz: refused (unreachable)",
            ),
            failed("web", ErrorClass::Unreachable, "TCP connect failed"),
        ];
        buffer
            .record_round(&outcomes, Duration::from_secs(300), |_, _| Ok(()))
            .unwrap();
        let status = buffer.reader().status().unwrap();
        let mut out = Vec::new();
        super::print_table(&mut out, &status).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("unreachable via bastion dmz: 2 hosts (plc1, plc2)\n"),
            "{text}"
        );
        assert!(!text.contains("bastion web"), "{text}");
    }
}
