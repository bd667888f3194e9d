//! The glue the CLI and the daemon share: open the buffer for a
//! configuration, build the collector, run and record one round.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;

use crate::alert::{Alerting, Mailer};
use crate::buffer::{Buffer, Room, RoundTotals};
use crate::collect::Collector;
use crate::collect::outcome::HostOutcome;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sync::Backoff;

/// Opens (creating and migrating) the buffer of `config` and registers its hosts. A damaged
/// file (found by the page check at open or by SQLite's errors) is set aside and replaced
/// ([`replace_damaged_buffer`]): the appliance carries on under a new buffer.
pub fn open_buffer(config: &Config) -> anyhow::Result<Buffer> {
    let mut buffer = match Buffer::open_checked(&config.buffer.path) {
        Err(error) if error.is_damaged() => replace_damaged_buffer(config, &error.to_string())?,
        other => other?,
    };
    buffer.register_hosts(
        config
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.display_address())),
    )?;
    Ok(buffer)
}

/// Sets the damaged buffer of `config` aside (renamed with a timestamp, never deleted),
/// carries on under a new one (a new epoch) with the unsynced samples the damaged file still
/// gives copied in, and says so loudly: an error in the log, the note `edgemon status`, the
/// page and `/api/status` show, and one operator mail queued with the salvage.
pub fn replace_damaged_buffer(config: &Config, error: &str) -> anyhow::Result<Buffer> {
    let path = &config.buffer.path;
    let (buffer, damage) = Buffer::replace_damaged(path, error, crate::buffer::now_ms(), |d| {
        damage_mails(config, d)
    })
    .with_context(|| format!("replacing the damaged buffer {}", path.display()))?;
    tracing::error!(
        buffer = %path.display(),
        set_aside = %damage.set_aside,
        %error,
        salvaged_samples = damage.salvaged_samples,
        unreadable_ranges = damage.unreadable_ranges,
        "the buffer file is damaged: set aside for salvage, collecting under a new buffer"
    );
    Ok(buffer)
}

/// Message-ID tag of the damaged-buffer operator mail (beside `alert::plan`'s tags).
const TAG_DAMAGE: i64 = -4;

/// The operator mail about a replaced damaged buffer, one per global recipient.
fn damage_mails(config: &Config, damage: &crate::buffer::Damage) -> Vec<crate::buffer::QueuedMail> {
    let id = crate::identity::appliance_id(&config.appliance)
        .unwrap_or_else(|_| "unnamed-appliance".to_string());
    let subject = format!("[edgemon] DAMAGED buffer replaced on {id}");
    let body = format!(
        "The local buffer of appliance {id} is damaged and was replaced:\n\n  {}\n\n\
         The damaged file is kept as\n  {}\nfor salvage by hand; it is never deleted by edgemon.\n\
         Collection goes on under a new buffer (a new epoch). {} unsynced sample(s) could still be\n\
         read and were copied into it (they sync as samples of the new epoch); {} unreadable\n\
         range(s) were skipped. Check the storage (SD card, power) of the appliance.\n\n\
         Observed:  {}\nAppliance: {id}\n",
        damage.error,
        damage.set_aside,
        damage.salvaged_samples,
        damage.unreadable_ranges,
        crate::alert::message::time(damage.detected_at),
    );
    config
        .mail
        .recipients
        .iter()
        .map(|to| crate::buffer::QueuedMail {
            message_id: crate::alert::message::message_id(&id, damage.detected_at, TAG_DAMAGE, to),
            recipient: to.clone(),
            subject: subject.clone(),
            body: body.clone(),
        })
        .collect()
}

/// Builds the collector of `config`, installing the local agent under the data directory.
pub fn collector(config: &Config) -> anyhow::Result<Collector> {
    let agent = crate::agent_bin::install_local(&config.appliance.data_dir).with_context(|| {
        format!(
            "installing the local agent under {}",
            config.appliance.data_dir.display()
        )
    })?;
    Ok(Collector::new(
        config.hosts.clone(),
        config.collect.clone(),
        agent,
        crate::collect::hosts::host_keys_path(&config.appliance.data_dir),
    )
    .with_local_windows_agent(local_windows_agent(config)?))
}

/// Installs the embedded Windows agent under the data directory when a local host has
/// `os = "windows"` (it runs under Wine, for tests); `None` when none does or this build has
/// no Windows agent (such a host then fails with the message saying how to get one).
fn local_windows_agent(config: &Config) -> anyhow::Result<Option<std::path::PathBuf>> {
    let wanted = config.hosts.iter().any(|host| {
        host.os == crate::config::HostOs::Windows
            && matches!(host.transport, crate::config::Transport::Local)
    });
    if !wanted {
        return Ok(None);
    }
    crate::agent_bin::install_local_windows(&config.appliance.data_dir).with_context(|| {
        format!(
            "installing the local Windows agent under {}",
            config.appliance.data_dir.display()
        )
    })
}

/// The collector of a reloaded `config`, keeping `old`'s sessions of unchanged hosts.
pub fn reconfigure_collector(config: &Config, old: &Collector) -> anyhow::Result<Collector> {
    let agent = crate::agent_bin::install_local(&config.appliance.data_dir).with_context(|| {
        format!(
            "installing the local agent under {}",
            config.appliance.data_dir.display()
        )
    })?;
    Ok(old
        .reconfigure(
            config.hosts.clone(),
            config.collect.clone(),
            agent,
            crate::collect::hosts::host_keys_path(&config.appliance.data_dir),
        )
        .with_local_windows_agent(local_windows_agent(config)?))
}

/// Runs one round and records it in one transaction.
pub fn collect_and_record(
    config: &Config,
    collector: &Collector,
    buffer: &mut Buffer,
) -> anyhow::Result<(Vec<HostOutcome>, RoundTotals)> {
    let outcomes = smol::block_on(collector.round());
    let totals = record(config, buffer, &outcomes)?;
    Ok((outcomes, totals))
}

/// Records a round's outcomes, and the alert transitions they cause, in one transaction.
///
/// Before writing, retention sheds for `buffer.min_free` if the filesystem is below it, and
/// the disk reserve must be in place; a round that cannot be stored (no room, or the
/// transaction failed) is an error that says why and which samples were lost, and those
/// samples are counted per host, to be recorded as drops by the next round that commits.
/// Alert transitions are logged only after the round committed.
pub fn record(
    config: &Config,
    buffer: &mut Buffer,
    outcomes: &[HostOutcome],
) -> anyhow::Result<RoundTotals> {
    let now = crate::buffer::now_ms();
    // A step of the wall clock is logged and the samples stamped before it flagged; ages
    // are measured on the buffer's monotonic clock, so nothing is shed for it.
    if let Err(error) = buffer.check_clock(now) {
        tracing::debug!(%error, "cannot check the wall clock this round");
    }
    match buffer.prepare_round(&config.buffer, now) {
        Ok(Room::Ok) => {}
        Ok(Room::Full { avail, reserve }) => {
            let why = format!(
                "disk full: the filesystem of {} has {avail} bytes free; rounds are stored again \
                 once its {reserve}-byte reserve fits beside buffer.min_free",
                buffer.path().display()
            );
            return Err(lost_round(buffer, outcomes, &why, true, now));
        }
        // Shedding failed; the round may still fit, so try it.
        Err(error) => tracing::warn!(%error, "retention before the round failed"),
    }
    let alerting = Alerting::new(config);
    let result = alerting.record_round(buffer, outcomes, config.collect.max_clock_skew, now);
    match result {
        Ok((totals, alerts)) => {
            alerts.log();
            Ok(totals)
        }
        Err(error) => {
            buffer.note_damage(&error);
            let disk_full = matches!(error, crate::buffer::Error::DiskFull { .. });
            Err(lost_round(
                buffer,
                outcomes,
                &error.to_string(),
                disk_full,
                now,
            ))
        }
    }
}

/// Counts the samples of a round that was not stored and says what was lost.
fn lost_round(
    buffer: &mut Buffer,
    outcomes: &[HostOutcome],
    why: &str,
    disk_full: bool,
    now: i64,
) -> anyhow::Error {
    let hosts: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.result.is_ok())
        .map(|o| o.host.as_str())
        .collect();
    let lost = buffer.count_unstored(&hosts, why, disk_full, now);
    const SHOWN: usize = 10;
    let mut names = lost
        .hosts
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if lost.hosts.len() > SHOWN {
        names.push_str(&format!(" and {} more", lost.hosts.len() - SHOWN));
    }
    anyhow::anyhow!(
        "round not stored ({why}); lost {} samples ({names}), {} unstored in all, \
         to be recorded as drops once a round is stored",
        lost.samples,
        lost.pending
    )
}

/// A loop the daemon runs on its own thread (sync, mail), and its single pass for `--once`.
pub struct Job {
    /// Short name, for the thread and the logs.
    pub name: &'static str,
    /// The loop; returns when the shutdown fires, after finishing the work in flight.
    pub run: Box<dyn FnOnce(&Shutdown) + Send>,
    /// One pass, for `edgemon run --once`.
    pub once: Box<dyn FnOnce() -> anyhow::Result<()> + Send>,
}

/// The background loops of `config`: sync to MySQL and the mail outbox, and central retention
/// when `central.retention` is set.
pub fn background_jobs(config: &Config, metrics: &Arc<Metrics>) -> Vec<Job> {
    let mut jobs = vec![
        sync_job(config, metrics.clone()),
        mail_job(config, metrics.clone()),
    ];
    if let Some(retention) = config.central.retention {
        jobs.push(prune_job(config, retention));
    }
    jobs
}

/// Whether a reload from `old` to `new` changed what background job `name` is built from
/// (each job's constructor below reads exactly these sections); an unchanged job keeps its
/// thread across the reload.
pub fn job_changed(name: &str, old: &Config, new: &Config) -> bool {
    match name {
        "sync" => {
            old.appliance != new.appliance || old.buffer != new.buffer || old.sync != new.sync
        }
        "mail" => old.mail != new.mail || old.buffer.path != new.buffer.path,
        "prune" => {
            old.appliance != new.appliance || old.sync != new.sync || old.central != new.central
        }
        _ => true,
    }
}

/// First central prune after the daemon starts (so a restart loop does not prune in a loop,
/// and the first sync pass goes first).
const PRUNE_FIRST: Duration = Duration::from_secs(600);
/// Time between two central prunes, and after a failed one.
const PRUNE_EVERY: (Duration, Duration) = (Duration::from_secs(86_400), Duration::from_secs(3600));

/// Central retention: once a day, prunes this appliance's central rows older than `retention`
/// (`edgemon central prune --older-than`), stopping after the batch in flight at shutdown.
pub fn prune_job(config: &Config, retention: Duration) -> Job {
    let (sync, appliance) = (config.sync.clone(), config.appliance.clone());
    let pass = move |stop: &AtomicBool| -> anyhow::Result<()> {
        let id = crate::identity::appliance_id(&appliance)?;
        let options = crate::sync::prune::PruneOptions {
            older_than: retention,
            batch_rows: crate::sync::prune::DEFAULT_BATCH_ROWS,
            dry_run: false,
            all_appliances: false,
        };
        let urls = crate::sync::prune::central_urls(&sync);
        let report =
            crate::sync::prune::prune(urls, sync.timeout, &id, &options, stop, &mut |_| {})
                .context("central prune")?;
        tracing::info!(
            cutoff = %report.cutoff,
            samples = report.samples,
            cores = report.cores,
            journal_rows = report.collection_errors + report.alert_events + report.drops,
            transactions = report.transactions,
            longest_ms = report.longest_transaction.as_millis() as u64,
            stopped = report.stopped,
            "central prune"
        );
        Ok(())
    };
    let pass = Arc::new(pass);
    let once = pass.clone();
    Job {
        name: "prune",
        run: Box::new(move |stop| {
            let mut wait = PRUNE_FIRST;
            while !stop.wait_timeout(wait) {
                wait = match pass(stop.flag()) {
                    Ok(()) => PRUNE_EVERY.0,
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), retry_in = ?PRUNE_EVERY.1,
                            "central prune failed; nothing is lost, it runs again later");
                        PRUNE_EVERY.1
                    }
                };
            }
        }),
        once: Box::new(move || {
            if let Err(error) = once(&AtomicBool::new(false)) {
                tracing::warn!(error = format!("{error:#}"), "central prune failed");
            }
            Ok(())
        }),
    }
}

/// The sync loop: drains the buffer to MySQL through its own buffer connection.
pub fn sync_job(config: &Config, metrics: Arc<Metrics>) -> Job {
    let appliance = match crate::identity::appliance_id(&config.appliance) {
        Ok(id) => id,
        Err(error) => {
            let message = format!("{error:#}");
            let once = message.clone();
            return Job {
                name: "sync",
                run: Box::new(
                    move |_| tracing::error!(error = %message, "sync cannot start: no appliance id; samples stay buffered"),
                ),
                once: Box::new(move || Err(anyhow::anyhow!("sync cannot start: {once}"))),
            };
        }
    };
    let task = Arc::new(crate::sync::SyncTask::new(
        &config.sync,
        &config.buffer,
        &appliance,
    ));
    let once = task.clone();
    Job {
        name: "sync",
        run: Box::new(move |stop| task.run_with(stop, |pass| metrics.record_sync(pass.ok()))),
        once: Box::new(move || {
            let stop = AtomicBool::new(false);
            match once.run_once(&stop) {
                Ok(report) => tracing::info!(
                    samples = report.samples,
                    remaining = report.remaining,
                    "sync pass"
                ),
                // Offline is the appliance's normal state: samples stay buffered.
                Err(error) => tracing::warn!(%error, "sync failed; samples stay buffered"),
            }
            Ok(())
        }),
    }
}

/// The mail loop: sends the outbox through its own buffer connection.
pub fn mail_job(config: &Config, metrics: Arc<Metrics>) -> Job {
    let (mail, path) = (config.mail.clone(), config.buffer.path.clone());
    let (mail_once, path_once) = (mail.clone(), path.clone());
    Job {
        name: "mail",
        run: Box::new(move |stop| {
            let Some(mailer) = open_with_backoff(stop, "mailer", || Mailer::new(&mail, &path))
            else {
                return;
            };
            mailer.run(stop, |report| metrics.record_mail(report))
        }),
        once: Box::new(move || {
            let report = Mailer::new(&mail_once, &path_once)
                .context("starting the mailer")?
                .send_due()
                .context("sending alert mail")?;
            tracing::info!(
                sent = report.sent,
                retried = report.retried,
                failed = report.failed,
                pending = report.pending,
                "mail pass"
            );
            Ok(())
        }),
    }
}

/// First and largest wait between two attempts of a background loop to open what it needs.
const OPEN_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));

/// Opens a loop's resource (`what`), retrying with the shared backoff until it opens or
/// `stop` fires (`None`): a mail directory or buffer that cannot be opened now may be
/// fixed later, and the loop must not end for the life of the process.
pub fn open_with_backoff<T, E: std::fmt::Display>(
    stop: &Shutdown,
    what: &str,
    mut open: impl FnMut() -> Result<T, E>,
) -> Option<T> {
    let mut backoff = Backoff::new(OPEN_RETRY.0, OPEN_RETRY.1);
    loop {
        match open() {
            Ok(resource) => {
                if backoff.failures() > 0 {
                    tracing::info!(what, "opened after {} failures", backoff.failures());
                }
                return Some(resource);
            }
            Err(error) => {
                let wait = backoff.next_delay();
                tracing::error!(what, %error, failures = backoff.failures(), retry_in = ?wait,
                    "cannot start; its work stays queued in the buffer");
                if stop.wait_timeout(wait) {
                    return None;
                }
            }
        }
    }
}

/// `edgemon collect`: one round now, a table of results.
pub fn collect_command(config: &Config) -> anyhow::Result<ExitCode> {
    let mut buffer = open_buffer(config)?;
    let collector = collector(config)?;
    let start = Instant::now();
    let (outcomes, _) = collect_and_record(config, &collector, &mut buffer)?;
    let mut out = std::io::stdout().lock();
    crate::collect::print_round(&mut out, &outcomes, start.elapsed())?;
    out.flush()?;
    let all_failed = !outcomes.is_empty() && outcomes.iter().all(|o| o.result.is_err());
    Ok(if all_failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `edgemon status [--json]`.
pub fn status_command(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let path = &config.buffer.path;
    if !path.exists() {
        anyhow::bail!(
            "no buffer at {} yet: run `edgemon collect` or `edgemon run` first",
            path.display()
        );
    }
    let buffer = crate::buffer::StatusReader::open(path)?;
    let mut status = buffer.status()?;
    status.appliance = crate::identity::appliance_id(&config.appliance).ok();
    // The schedule as configured decides, whether the daemon runs or not.
    status.sync_paused_until = match config
        .sync
        .schedule
        .state(crate::buffer::now_ms(), &config.sync.timezone)
    {
        crate::sync::schedule::State::Closed { opens_at } => Some(opens_at),
        crate::sync::schedule::State::Open { .. } => None,
    };
    status.sync_next_window = status
        .sync_paused_until
        .map(|at| crate::sync::schedule::format_at(at, &config.sync.timezone));
    status.silences.extend(crate::alert::weekly_in_force(
        &config.silences,
        crate::buffer::now_ms(),
    ));
    let families = crate::status::host_families(&buffer, &status)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &crate::status::to_json(&status, &families)?)?;
        writeln!(out)?;
    } else {
        crate::status::print_table(&mut out, &status)?;
        crate::status::print_families(&mut out, &families)?;
    }
    Ok(ExitCode::SUCCESS)
}
