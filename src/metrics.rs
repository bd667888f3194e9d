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
    error_class: Option<&'static str>,
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
                error_class: o.result.as_ref().err().map(|e| e.class.as_str()),
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
                let class = g.error_class.unwrap_or("");
                let _ = writeln!(
                    out,
                    "edgemon_host_up{{host=\"{}\",error=\"{class}\"}} {}",
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
            text.contains("edgemon_host_up{host=\"web-\\\"1\\\"\",error=\"timeout\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("edgemon_host_duration_seconds{host=\"web-\\\"1\\\"\"} 0.250"),
            "{text}"
        );
    }
}
