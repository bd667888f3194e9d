//! `edgemon sync`: drains the whole backlog now, with a progress bar (rows
//! and rows/s) on a terminal. Ctrl-C or SIGTERM finishes the batch in flight
//! (COMMIT, then marking) and stops. Exits non-zero with a message naming the
//! server when MySQL is unreachable, refuses the credentials, or the central
//! schema is wrong.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use super::{Progress, SyncTask};
use crate::config::Config;

/// Runs `edgemon sync` for `config`.
pub fn command(config: &Config) -> anyhow::Result<ExitCode> {
    let appliance = crate::identity::appliance_id(&config.appliance)?;
    let task = SyncTask::new(&config.sync, &config.buffer, &appliance);
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let backlog = task.backlog()?;
    let bar = ProgressBar::new(backlog);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:40}] {human_pos}/{human_len} rows, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let result = task.drain(&stop, &mut |p: Progress| {
        bar.set_length(p.done + p.remaining);
        bar.set_position(p.done);
    });
    let report = match result {
        Ok(report) => {
            bar.finish_and_clear();
            report
        }
        Err(err) => {
            bar.abandon();
            return Err(err).context(format!(
                "sync of {} as appliance '{}' failed (the unsynced samples stay buffered)",
                config.buffer.path.display(),
                appliance
            ));
        }
    };
    let secs = report.elapsed.as_secs_f64().max(1e-3);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "synced {} samples in {:.1} s ({:.0} rows/s), {} journal rows; {} quarantined; {} unsynced left",
        report.samples,
        secs,
        report.samples as f64 / secs,
        report.journal_rows,
        report.quarantined,
        report.remaining
    )?;
    writeln!(
        out,
        "sent {} new samples as appliance '{appliance}', buffer epoch {}; {} were already in MySQL unchanged",
        report.samples - report.already_present,
        report.epoch,
        report.already_present
    )?;
    write_servers(&mut out, &report)?;
    if report.collisions > 0 {
        writeln!(
            out,
            "warning: {} row(s) collided: MySQL holds their identity with other values; they were not written \
             and are kept in the buffer's collisions table (see `edgemon status`)",
            report.collisions
        )?;
    }
    if report.quarantined > 0 || report.journal_rejected > 0 {
        writeln!(
            out,
            "warning: MySQL refused {} sample(s) and {} journal row(s) for their content; \
             they are kept in the buffer's quarantine with MySQL's message",
            report.quarantined, report.journal_rejected
        )?;
    }
    if report.stopped {
        writeln!(out, "stopped by a signal after the batch in flight")?;
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The central server used, failovers and conflict retries, and with several servers listed
/// each one's health.
fn write_servers(out: &mut impl Write, report: &super::PassReport) -> std::io::Result<()> {
    let server = report.server.as_deref().unwrap_or("none");
    write!(out, "central server: {server}")?;
    if report.failovers > 0 {
        write!(out, " (after {} failover(s))", report.failovers)?;
    }
    if report.conflict_retries > 0 {
        write!(
            out,
            "; {} batch(es) retried after a cluster write conflict",
            report.conflict_retries
        )?;
    }
    writeln!(out)?;
    if report.servers.len() > 1 {
        for health in &report.servers {
            writeln!(out, "  {health}")?;
        }
    }
    Ok(())
}
