//! Operational metrics: counters the loops update, and the optional HTTP
//! endpoint (`[metrics] listen`) that serves them in the Prometheus text
//! format at `/metrics`, with `/healthz` for liveness probes.
//!
//! Counters live in memory and restart at zero with the process (Prometheus'
//! `rate()` handles that); gauges of the buffer are read from SQLite at each
//! scrape, so they are exact. The HTTP side is `web::http`, shared with the
//! status page: GET and HEAD of two paths, one request per connection,
//! bounded request size and time, accept errors waited out; it ends with the
//! daemon's shutdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use smol::Async;

use crate::buffer::StatusReader;
use crate::collect::outcome::HostOutcome;
use crate::shutdown::Shutdown;
use crate::web::http::Response;

/// Counters shared by the daemon's loops.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Collection rounds completed.
    pub rounds: AtomicU64,
    /// Samples stored.
    pub samples: AtomicU64,
    /// Failed host attempts.
    pub collect_failures: AtomicU64,
    /// Rows written to MySQL.
    pub sync_rows: AtomicU64,
    /// Failed sync passes.
    pub sync_errors: AtomicU64,
    /// Times sync left a central server that failed under it for the next one listed.
    pub sync_failovers: AtomicU64,
    /// Batch transactions retried after losing a conflict (Galera certification, 1213).
    pub sync_conflict_retries: AtomicU64,
    /// Mails the server accepted.
    pub mails_sent: AtomicU64,
    /// Mail attempts that failed (transient or permanent).
    pub mails_failed: AtomicU64,
    /// Duration of the last round, milliseconds.
    pub last_round_ms: AtomicU64,
    hosts: Mutex<BTreeMap<String, HostGauge>>,
}

#[derive(Debug, Clone)]
struct HostGauge {
    up: bool,
    duration_s: f64,
    /// The figures of the last attempt's report; `None` when it failed, so a
    /// down host's series end instead of repeating old values.
    latest: Option<HostFigures>,
}

/// What the per-host gauges show of one report: the seed's metrics and the sections.
#[derive(Debug, Clone)]
struct HostFigures {
    cpu_percent: f64,
    mem_used: u64,
    mem_total: u64,
    swap_used: u64,
    swap_total: u64,
    uptime_s: u64,
    load: Option<[f64; 3]>,
    sections: Vec<crate::report::family::Section>,
}

impl HostFigures {
    fn of(report: &crate::report::Report) -> HostFigures {
        HostFigures {
            cpu_percent: report.cpu_percent,
            mem_used: report.mem_used,
            mem_total: report.mem_total,
            swap_used: report.swap_used,
            swap_total: report.swap_total,
            uptime_s: report.uptime_s,
            load: report.load,
            sections: report.sections.clone(),
        }
    }
}

impl Metrics {
    /// Records the outcomes of one round.
    pub fn record_round(&self, outcomes: &[HostOutcome], wall: Duration) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        self.last_round_ms
            .store(wall.as_millis() as u64, Ordering::Relaxed);
        let ok = outcomes.iter().filter(|o| o.result.is_ok()).count() as u64;
        self.samples.fetch_add(ok, Ordering::Relaxed);
        self.collect_failures
            .fetch_add(outcomes.len() as u64 - ok, Ordering::Relaxed);
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for o in outcomes {
            let gauge = HostGauge {
                up: o.result.is_ok(),
                duration_s: o.duration.as_secs_f64(),
                latest: o.result.as_ref().ok().map(HostFigures::of),
            };
            hosts.insert(o.host.clone(), gauge);
        }
    }

    /// Records one sync pass: its rows on success, an error otherwise.
    pub fn record_sync(&self, pass: Option<&crate::sync::PassReport>) {
        match pass {
            Some(report) => {
                self.sync_rows
                    .fetch_add(report.samples + report.journal_rows, Ordering::Relaxed);
                self.sync_failovers
                    .fetch_add(report.failovers, Ordering::Relaxed);
                self.sync_conflict_retries
                    .fetch_add(report.conflict_retries, Ordering::Relaxed);
            }
            None => {
                self.sync_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records one pass of the mailer.
    pub fn record_mail(&self, report: &crate::alert::SendReport) {
        self.mails_sent
            .fetch_add(report.sent as u64, Ordering::Relaxed);
        self.mails_failed
            .fetch_add((report.failed + report.retried) as u64, Ordering::Relaxed);
    }

    /// Renders every metric in the Prometheus text exposition format (version 0.0.4).
    /// `buffer` supplies the buffer gauges when it can be read.
    pub fn render(&self, buffer: Option<&StatusReader>) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut out,
            "edgemon_rounds_total",
            "Collection rounds completed.",
            get(&self.rounds),
        );
        counter(
            &mut out,
            "edgemon_samples_collected_total",
            "Samples stored in the buffer.",
            get(&self.samples),
        );
        counter(
            &mut out,
            "edgemon_collect_failures_total",
            "Host attempts that produced no sample.",
            get(&self.collect_failures),
        );
        counter(
            &mut out,
            "edgemon_sync_rows_total",
            "Rows written to the central MySQL database.",
            get(&self.sync_rows),
        );
        counter(
            &mut out,
            "edgemon_sync_errors_total",
            "Sync passes that failed.",
            get(&self.sync_errors),
        );
        counter(
            &mut out,
            "edgemon_sync_failovers_total",
            "Times sync left a failed central server for the next one listed.",
            get(&self.sync_failovers),
        );
        counter(
            &mut out,
            "edgemon_sync_conflict_retries_total",
            "Batch transactions retried after a cluster write conflict (1213).",
            get(&self.sync_conflict_retries),
        );
        counter(
            &mut out,
            "edgemon_mails_sent_total",
            "Alert mails accepted by the mail server.",
            get(&self.mails_sent),
        );
        counter(
            &mut out,
            "edgemon_mails_failed_total",
            "Alert mail attempts that failed.",
            get(&self.mails_failed),
        );
        let _ = writeln!(
            out,
            "# HELP edgemon_round_duration_seconds Wall time of the last round.\n# TYPE edgemon_round_duration_seconds gauge\nedgemon_round_duration_seconds {}",
            get(&self.last_round_ms) as f64 / 1000.0
        );
        {
            let hosts = self
                .hosts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            out.push_str("# HELP edgemon_host_up 1 when the host's last attempt produced a sample.\n# TYPE edgemon_host_up gauge\n");
            for (name, g) in hosts.iter() {
                let _ = writeln!(
                    out,
                    "edgemon_host_up{{host=\"{}\"}} {}",
                    escape(name),
                    u8::from(g.up)
                );
            }
            out.push_str("# HELP edgemon_host_duration_seconds Duration of the host's last attempt.\n# TYPE edgemon_host_duration_seconds gauge\n");
            for (name, g) in hosts.iter() {
                let _ = writeln!(
                    out,
                    "edgemon_host_duration_seconds{{host=\"{}\"}} {:.3}",
                    escape(name),
                    g.duration_s
                );
            }
            render_host_figures(&mut out, &hosts);
            render_families(&mut out, &hosts);
        }
        if let Some(status) = buffer.and_then(|b| b.status().ok()) {
            let gauges: [(&str, &str, f64); 8] = [
                (
                    "edgemon_buffer_samples",
                    "Samples held in the local buffer.",
                    status.samples as f64,
                ),
                (
                    "edgemon_buffer_unsynced",
                    "Samples not yet in MySQL.",
                    status.unsynced as f64,
                ),
                (
                    "edgemon_buffer_bytes",
                    "Size of the buffer file and its WAL.",
                    status.size_bytes as f64,
                ),
                (
                    "edgemon_buffer_dropped",
                    "Unsynced samples dropped by retention (recorded).",
                    status.dropped as f64,
                ),
                (
                    "edgemon_buffer_collisions",
                    "Rows whose central identity held other values: kept locally, not written.",
                    status.collisions as f64,
                ),
                (
                    "edgemon_buffer_quarantined",
                    "Samples MySQL refused for their content.",
                    status.quarantined as f64,
                ),
                (
                    "edgemon_outbox_pending",
                    "Alert mails waiting to be sent.",
                    status.outbox.pending as f64,
                ),
                (
                    "edgemon_outbox_failed",
                    "Alert mails refused permanently.",
                    status.outbox.failed as f64,
                ),
            ];
            for (name, help, value) in gauges {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
                );
            }
            let disk: [(&str, &str, f64); 3] = [
                (
                    "edgemon_disk_full",
                    "1 while rounds are lost because the buffer's filesystem is full.",
                    f64::from(u8::from(status.disk.full)),
                ),
                (
                    "edgemon_disk_free_bytes",
                    "Free space on the buffer's filesystem.",
                    status.disk.free_bytes.unwrap_or(0) as f64,
                ),
                (
                    "edgemon_samples_unstored",
                    "Samples collected but not stored (disk full), not yet recorded as drops.",
                    status.disk.unstored_samples as f64,
                ),
            ];
            for (name, help, value) in disk {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
                );
            }
            if let Some(seconds) = status.time_to_first_loss_s {
                let name = "edgemon_time_to_first_loss_seconds";
                let _ = writeln!(
                    out,
                    "# HELP {name} Seconds until retention would shed an unsynced sample if nothing synced from now on.\n# TYPE {name} gauge\n{name} {seconds}"
                );
            }
            out.push_str("# HELP edgemon_host_samples_unstored Samples of the host not stored (disk full), not yet recorded as drops.\n# TYPE edgemon_host_samples_unstored gauge\n");
            for h in &status.hosts {
                let _ = writeln!(
                    out,
                    "edgemon_host_samples_unstored{{host=\"{}\"}} {}",
                    escape(&h.name),
                    h.unstored_samples
                );
            }
            let name = "edgemon_sync_paused";
            let _ = writeln!(
                out,
                "# HELP {name} 1 while sync.schedule holds sync (outside every window).\n# TYPE {name} gauge\n{name} {}",
                u8::from(status.sync_paused_until.is_some())
            );
            if let Some(at) = status.sync_paused_until {
                let name = "edgemon_sync_next_window_timestamp_seconds";
                let _ = writeln!(
                    out,
                    "# HELP {name} When the next sync window opens, while sync is paused by schedule.\n# TYPE {name} gauge\n{name} {}",
                    at as f64 / 1000.0
                );
            }
            if let Some(rate) = status.sync_drain_rate {
                let name = "edgemon_sync_drain_rows_per_second";
                let _ = writeln!(
                    out,
                    "# HELP {name} Samples per second of the last sync pass that sent samples.\n# TYPE {name} gauge\n{name} {rate}"
                );
            }
            if let Some(at) = status.last_sync_at {
                let _ = writeln!(
                    out,
                    "# HELP edgemon_last_sync_timestamp_seconds Time of the last successful sync.\n# TYPE edgemon_last_sync_timestamp_seconds gauge\nedgemon_last_sync_timestamp_seconds {}",
                    at as f64 / 1000.0
                );
            }
        }
        out
    }
}

/// The seed's per-host gauges (CPU, memory, swap, uptime, load) of the last report.
fn render_host_figures(out: &mut String, hosts: &BTreeMap<String, HostGauge>) {
    type Get = fn(&HostFigures) -> Option<f64>;
    let gauges: [(&str, &str, Get); 9] = [
        (
            "edgemon_host_cpu_percent",
            "CPU in use of the last report, percent.",
            |f| Some(f.cpu_percent),
        ),
        ("edgemon_host_memory_used_bytes", "Memory in use.", |f| {
            Some(f.mem_used as f64)
        }),
        (
            "edgemon_host_memory_total_bytes",
            "Memory installed.",
            |f| Some(f.mem_total as f64),
        ),
        ("edgemon_host_swap_used_bytes", "Swap in use.", |f| {
            Some(f.swap_used as f64)
        }),
        ("edgemon_host_swap_total_bytes", "Swap configured.", |f| {
            Some(f.swap_total as f64)
        }),
        (
            "edgemon_host_uptime_seconds",
            "Seconds since the host booted.",
            |f| Some(f.uptime_s as f64),
        ),
        ("edgemon_host_load1", "Load average over 1 minute.", |f| {
            f.load.map(|l| l[0])
        }),
        ("edgemon_host_load5", "Load average over 5 minutes.", |f| {
            f.load.map(|l| l[1])
        }),
        (
            "edgemon_host_load15",
            "Load average over 15 minutes.",
            |f| f.load.map(|l| l[2]),
        ),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (host, g) in hosts {
            if let Some(v) = g.latest.as_ref().and_then(get).filter(|v| v.is_finite()) {
                let _ = writeln!(out, "{name}{{host=\"{}\"}} {v}", escape(host));
            }
        }
    }
}

/// The name, type and scale of the series of `field` of `spec`, from the
/// spec alone: `edgemon_<family>_<field>` in base units (ms as seconds,
/// Mbit/s as bytes per second, bytes and percent as suffixes), counters with
/// `_total`; `None` for text fields, which are no number.
fn family_metric(
    spec: &crate::report::family::FamilySpec,
    field: &crate::report::family::Field,
) -> Option<(String, &'static str, f64)> {
    use crate::report::family::Kind;
    if field.kind == Kind::Text {
        return None;
    }
    let mut name = format!("edgemon_{}_{}", spec.name, field.name);
    let mut scale = 1.0;
    match field.unit {
        "ms" => {
            name = format!("{}_seconds", name.trim_end_matches("_ms"));
            scale = 0.001;
        }
        "Mbit/s" => {
            name.push_str("_bytes_per_second");
            scale = 125_000.0;
        }
        "bytes" if !name.ends_with("_bytes") => name.push_str("_bytes"),
        "percent" if !name.ends_with("_percent") => name.push_str("_percent"),
        _ => {}
    }
    let kind = if field.counter {
        name.push_str("_total");
        "counter"
    } else {
        "gauge"
    };
    Some((name, kind, scale))
}

/// Every family's series of every host's last report, from the specs:
/// one series per member and numeric field, labelled `host`, `family` and
/// `member` (the member's key; none in a singleton family); counters typed
/// as counters. A family without a numeric field (failed units) gives one
/// `edgemon_<family>_member` series of 1 per member. Per host and family,
/// `edgemon_family_members`, `_cut` and `_refused`.
///
/// Cardinality is bounded by the report: at most the agent's per-family cap
/// of members (64 by default, never more than `MAX_MEMBERS` read) times the
/// spec's numeric fields, per host in the configuration; a member that
/// disappears from a report and a host whose last attempt failed have no
/// series, and no label holds free text but names the host already shows
/// (mount points, interfaces, devices, units, watches).
fn render_families(out: &mut String, hosts: &BTreeMap<String, HostGauge>) {
    use crate::report::family::FAMILIES;
    let sections = |spec: &'static crate::report::family::FamilySpec| {
        hosts.iter().filter_map(move |(host, g)| {
            let section = g
                .latest
                .as_ref()?
                .sections
                .iter()
                .find(|s| s.family.id == spec.id)?;
            Some((host, section))
        })
    };
    let labels = |host: &str, spec: &crate::report::family::FamilySpec, key: &str| {
        let mut l = format!("host=\"{}\",family=\"{}\"", escape(host), spec.name);
        if !spec.is_singleton() {
            let _ = write!(l, ",member=\"{}\"", escape(key));
        }
        l
    };
    for spec in FAMILIES {
        let mut numeric = false;
        for (i, field) in spec.fields.iter().enumerate() {
            let Some((name, kind, scale)) = family_metric(spec, field) else {
                continue;
            };
            numeric = true;
            let _ = writeln!(
                out,
                "# HELP {name} {} ({}).\n# TYPE {name} {kind}",
                field.doc, spec.name
            );
            for (host, section) in sections(spec) {
                for member in &section.members {
                    let Some(v) = member
                        .values
                        .get(i)
                        .and_then(Option::as_ref)
                        .and_then(|v| v.as_f64())
                    else {
                        continue;
                    };
                    let _ = writeln!(
                        out,
                        "{name}{{{}}} {}",
                        labels(host, spec, &member.key),
                        v * scale
                    );
                }
            }
        }
        if !numeric {
            let name = format!("edgemon_{}_member", spec.name);
            let _ = writeln!(
                out,
                "# HELP {name} 1 per member reported: {}.\n# TYPE {name} gauge",
                spec.doc
            );
            for (host, section) in sections(spec) {
                for member in &section.members {
                    let _ = writeln!(out, "{name}{{{}}} 1", labels(host, spec, &member.key));
                }
            }
        }
    }
    type Count = fn(&crate::report::family::Section) -> u64;
    let counts: [(&str, &str, Count); 3] = [
        (
            "edgemon_family_members",
            "Members of the family in the host's last report.",
            |s| s.members.len() as u64,
        ),
        (
            "edgemon_family_members_cut",
            "Members the agent left out of the last report (per-family cap).",
            |s| u64::from(s.cut),
        ),
        (
            "edgemon_family_members_refused",
            "Members of the last report refused as invalid.",
            |s| u64::from(s.refused),
        ),
    ];
    for (name, help, get) in counts {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for spec in FAMILIES {
            for (host, section) in sections(spec) {
                let _ = writeln!(
                    out,
                    "{name}{{host=\"{}\",family=\"{}\"}} {}",
                    escape(host),
                    spec.name,
                    get(section)
                );
            }
        }
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Binds the endpoint now (so a taken port is an error at start-up, not later).
pub fn bind(listen: SocketAddr) -> std::io::Result<Async<TcpListener>> {
    crate::web::http::bind(listen)
}

/// Serves `/metrics` and `/healthz` until `stop` fires (or the future is dropped), through
/// the HTTP server the status page uses (`web::http`: GET and HEAD only; accept errors are
/// waited out with a growing pause, so the loop never spins).
pub async fn serve(
    listener: Async<TcpListener>,
    metrics: std::sync::Arc<Metrics>,
    buffer_path: PathBuf,
    stop: Shutdown,
) {
    let serving = crate::web::http::serve(listener, move |request| {
        let (metrics, buffer_path) = (metrics.clone(), buffer_path.clone());
        async move {
            match request.path.as_str() {
                "/metrics" => {
                    // Open, read and render on the blocking pool: the status read is SQLite
                    // work, and on smol's executor thread it would stall every host's
                    // deadline timer for as long as it takes.
                    // Dropped with this future: a scrape abandoned at its deadline interrupts
                    // its read (`web::cancel`) instead of holding a blocking-pool thread.
                    let (_guard, cancel) = crate::web::cancel::pair();
                    let body = smol::unblock(move || {
                        let buffer = StatusReader::open(&buffer_path)
                            .ok()
                            .filter(|buffer| cancel.watch(buffer.conn()));
                        metrics.render(buffer.as_ref())
                    })
                    .await;
                    Response::new(200, "text/plain; version=0.0.4; charset=utf-8", body)
                }
                "/healthz" => Response::text(200, "ok\n"),
                _ => Response::text(404, "not found\n"),
            }
        }
    });
    smol::future::or(serving, stop.wait()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::outcome::{CollectError, ErrorClass};

    #[test]
    fn render_shows_counters_and_per_host_gauges() {
        let metrics = Metrics::default();
        let outcomes = [HostOutcome {
            host: "web-\"1\"".into(),
            address: "x".into(),
            started_at_ms: 0,
            duration: Duration::from_millis(250),
            result: Err(CollectError::new(ErrorClass::Timeout, "slow")),
        }];
        metrics.record_round(&outcomes, Duration::from_secs(1));
        let text = metrics.render(None);
        assert!(text.contains("edgemon_rounds_total 1"), "{text}");
        assert!(text.contains("edgemon_collect_failures_total 1"), "{text}");
        assert!(
            text.contains("edgemon_host_up{host=\"web-\\\"1\\\"\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("edgemon_host_duration_seconds{host=\"web-\\\"1\\\"\"} 0.250"),
            "{text}"
        );
    }

    /// One sample: name, labels, value.
    type Sample = (String, Vec<(String, String)>, f64);

    fn report(sections: Vec<crate::report::family::Section>) -> crate::report::Report {
        crate::report::Report {
            version: 1,
            collected_at_ms: 0,
            cpu_percent: 12.5,
            cores: vec![12.5],
            mem_used: 256,
            mem_total: 1024,
            swap_used: 0,
            swap_total: 512,
            uptime_s: 3600,
            boot_time_s: None,
            load: Some([0.5, 0.25, 0.125]),
            hostname: None,
            os: None,
            kernel: None,
            extras: Vec::new(),
            sections,
        }
    }

    #[test]
    fn every_line_is_valid_exposition_with_seed_and_family_series_and_no_error_label() {
        use crate::report::family::FAMILIES;
        let metrics = Metrics::default();
        let mut sections = crate::buffer::example_sections(1, 7);
        // A mount point with every character a label value must escape.
        sections[1].members[0].key = "/mnt/\"q\"\\back\nline".into();
        sections[2].cut = 436;
        let ok = |host: &str, sections| HostOutcome {
            host: host.into(),
            address: "x".into(),
            started_at_ms: 0,
            duration: Duration::from_millis(20),
            result: Ok(report(sections)),
        };
        let outcomes = [
            ok("web1", sections.clone()),
            ok("web2", crate::buffer::example_sections(2, 7)),
            HostOutcome {
                host: "down".into(),
                address: "x".into(),
                started_at_ms: 0,
                duration: Duration::from_millis(20),
                result: Err(CollectError::new(
                    ErrorClass::Timeout,
                    "a message\nwith \"text\"",
                )),
            },
        ];
        metrics.record_round(&outcomes, Duration::from_secs(1));
        let text = metrics.render(None);
        let (samples, types) = parse_exposition(&text);
        assert!(
            !samples.iter().any(|s| s.1.iter().any(|l| l.0 == "error")),
            "{text}"
        );
        let find = |name: &str, host: &str, member: Option<&str>| {
            samples
                .iter()
                .find(|s| {
                    s.0 == name
                        && s.1.iter().any(|l| l.0 == "host" && l.1 == host)
                        && member.is_none_or(|m| s.1.iter().any(|l| l.0 == "member" && l.1 == m))
                })
                .map(|s| s.2)
        };
        // The seed's gauges; none for the host whose last attempt failed.
        assert_eq!(find("edgemon_host_cpu_percent", "web1", None), Some(12.5));
        assert_eq!(
            find("edgemon_host_memory_total_bytes", "web1", None),
            Some(1024.0)
        );
        assert_eq!(
            find("edgemon_host_swap_total_bytes", "web1", None),
            Some(512.0)
        );
        assert_eq!(
            find("edgemon_host_uptime_seconds", "web1", None),
            Some(3600.0)
        );
        assert_eq!(find("edgemon_host_load15", "web1", None), Some(0.125));
        assert_eq!(find("edgemon_host_up", "down", None), Some(0.0));
        assert_eq!(find("edgemon_host_cpu_percent", "down", None), None);
        assert!(
            !samples
                .iter()
                .any(|s| s.0.starts_with("edgemon_filesystems") && s.1[0].1 == "down")
        );
        // Every family's numeric fields, from the spec; counters as counters.
        let fs = &sections[1];
        let mount = fs.members[0].key.as_str();
        assert_eq!(
            find("edgemon_filesystems_size_bytes", "web1", Some(mount)),
            fs.members[0]
                .u64(crate::report::family::filesystems::SIZE)
                .map(|v| v as f64)
        );
        assert_eq!(types["edgemon_interfaces_rx_bytes_total"], "counter");
        assert_eq!(types["edgemon_devices_busy_seconds_total"], "counter");
        assert_eq!(types["edgemon_filesystems_avail_bytes"], "gauge");
        assert_eq!(types["edgemon_system_oom_kills_total"], "counter");
        assert_eq!(
            find("edgemon_units_member", "web1", Some("backup.service")),
            Some(1.0)
        );
        assert_eq!(
            samples
                .iter()
                .find(|s| s.0 == "edgemon_family_members_cut"
                    && s.1.contains(&("host".into(), "web1".into()))
                    && s.1.contains(&("family".into(), "interfaces".into())))
                .map(|s| s.2),
            Some(436.0)
        );
        // Bounded: per host, one series per member and numeric field, and per family
        // one members/cut/refused gauge; nothing for text fields.
        let per_host: usize = FAMILIES
            .iter()
            .map(|spec| {
                let members = sections
                    .iter()
                    .find(|s| s.family.id == spec.id)
                    .map_or(0, |s| s.members.len());
                let numeric = spec
                    .fields
                    .iter()
                    .filter(|f| f.kind != crate::report::family::Kind::Text)
                    .count();
                let values: usize =
                    sections
                        .iter()
                        .find(|s| s.family.id == spec.id)
                        .map_or(0, |s| {
                            s.members
                                .iter()
                                .map(|m| {
                                    m.values
                                        .iter()
                                        .zip(spec.fields)
                                        .filter(|(v, f)| {
                                            v.is_some()
                                                && f.kind != crate::report::family::Kind::Text
                                        })
                                        .count()
                                })
                                .sum()
                        });
                (if numeric == 0 { members } else { values }) + 3
            })
            .sum();
        let web1 = samples
            .iter()
            .filter(|s| s.1.first().is_some_and(|l| l.1 == "web1"))
            .filter(|s| s.0.starts_with("edgemon_") && s.1.iter().any(|l| l.0 == "family"))
            .count();
        assert_eq!(web1, per_host, "{text}");
        assert!(
            samples
                .iter()
                .any(|s| s.1.iter().any(|l| l.0 == "member" && l.1 == mount)),
            "the escaped mount point reads back"
        );
    }

    /// The labels of a sample (`{k="v",...}` with `\\`, `\"` and `\n` escapes) and the rest.
    fn parse_labels<'a>(text: &'a str, at: &str) -> (Vec<(String, String)>, &'a str) {
        let Some(mut rest) = text.strip_prefix('{') else {
            return (Vec::new(), text);
        };
        let mut labels = Vec::new();
        loop {
            let eq = rest
                .find("=\"")
                .unwrap_or_else(|| panic!("label without =\", {at}"));
            let key = &rest[..eq];
            assert!(
                !key.is_empty()
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !key.starts_with(|c: char| c.is_ascii_digit()),
                "label name {key:?}, {at}"
            );
            let mut value = String::new();
            let mut chars = rest[eq + 2..].char_indices();
            let end = loop {
                let (i, c) = chars
                    .next()
                    .unwrap_or_else(|| panic!("open label value, {at}"));
                match c {
                    '\\' => match chars.next().map(|c| c.1) {
                        Some('n') => value.push('\n'),
                        Some(c @ ('\\' | '"')) => value.push(c),
                        other => panic!("escape {other:?}, {at}"),
                    },
                    '"' => break eq + 2 + i,
                    c => value.push(c),
                }
            };
            labels.push((key.to_string(), value));
            rest = &rest[end + 1..];
            if let Some(next) = rest.strip_prefix(',') {
                rest = next;
            } else if let Some(next) = rest.strip_prefix('}') {
                return (labels, next);
            } else {
                panic!("{rest:?} after a label, {at}");
            }
        }
    }

    /// Checks `text` line by line against the text exposition format 0.0.4: every line a
    /// `# HELP`, a `# TYPE` (counter or gauge, once per name, before its samples) or a
    /// sample `name{label="value",...} number` whose name has a TYPE and whose samples
    /// are contiguous. Returns the samples as (name, labels, value).
    fn parse_exposition(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
        let metric_name = |n: &str| {
            !n.is_empty()
                && n.chars().enumerate().all(|(i, c)| {
                    c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
                })
        };
        let mut typed: BTreeMap<String, String> = BTreeMap::new();
        let mut finished: std::collections::BTreeSet<String> = Default::default();
        let mut current: Option<String> = None;
        let mut samples = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let at = format!("line {}: {line:?}", n + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(metric_name(name), "{at}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect(&at);
                assert!(metric_name(name), "{at}");
                assert!(matches!(kind, "counter" | "gauge"), "{at}");
                assert!(
                    typed.insert(name.into(), kind.into()).is_none(),
                    "TYPE twice, {at}"
                );
                continue;
            }
            assert!(!line.starts_with('#') && !line.is_empty(), "{at}");
            let (name, rest) = match line.find('{') {
                Some(i) => (&line[..i], &line[i..]),
                None => line.split_at(line.find(' ').expect(&at)),
            };
            assert!(metric_name(name), "{at}");
            assert!(typed.contains_key(name), "sample before its TYPE, {at}");
            if current.as_deref() != Some(name) {
                if let Some(previous) = current.take() {
                    finished.insert(previous);
                }
                assert!(
                    !finished.contains(name),
                    "samples of {name} not contiguous, {at}"
                );
                current = Some(name.to_string());
            }
            let (labels, rest) = parse_labels(rest, &at);
            let value = rest.strip_prefix(' ').expect(&at);
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value, {at}"));
            samples.push((name.to_string(), labels, value));
        }
        (samples, typed)
    }
}
