//! `edgemon run`: one process running the collection loop (async, on smol),
//! and the sync and mail loops (blocking, each on its own thread with its own
//! SQLite connection), with one shared [`Shutdown`].
//!
//! Shutdown (SIGTERM, SIGINT): no new round or batch starts; a round whose
//! outcomes are in hand is recorded (one SQLite transaction), the sync loop
//! finishes its MySQL batch and marks it, the mailer finishes the mail it is
//! sending, SSH sessions close; then `run` returns. A round still waiting on
//! hosts is abandoned: nothing of it was stored, so nothing is lost.
//! SIGHUP reloads the configuration from the same file; buffer, alert state
//! and outbox stay as they are, hosts whose settings did not change keep their
//! SSH sessions, and the sync and mail threads are stopped, joined and started
//! again only when their sections changed. A second daemon on the same data
//! directory is refused by an exclusive lock on `<data_dir>/edgemon.lock`.
//!
//! Lifecycle: one [`Shutdown`] reaches every loop. The sync and mail threads
//! sleep on it and wake at once when it fires; the collection loop and the
//! metrics endpoint race their work against it. Every thread is joined before
//! the lock file is released, on every path out of [`run`], errors included.
//! A loop that cannot open what it needs (MySQL, the mailer) retries with the
//! shared backoff rather than ending.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;

use crate::app;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// How the outside world steers a running daemon.
pub struct Control {
    /// Fires when the daemon must stop; every loop waits on it.
    pub shutdown: Shutdown,
    /// Receives when the host list must be reloaded (closed: stop).
    pub reload: Receiver<()>,
}

/// Handles of a [`Control`], for tests and the signal thread.
#[derive(Clone)]
pub struct ControlHandle {
    /// Fire to stop the daemon.
    pub shutdown: Shutdown,
    /// Send to reload the host list.
    pub reload: Sender<()>,
}

/// A new control pair.
pub fn control() -> (ControlHandle, Control) {
    let shutdown = Shutdown::new();
    let (reload_tx, reload) = smol::channel::bounded(1);
    (
        ControlHandle {
            shutdown: shutdown.clone(),
            reload: reload_tx,
        },
        Control { shutdown, reload },
    )
}

/// A control driven by SIGTERM / SIGINT (stop) and SIGHUP (reload).
pub fn signal_control() -> anyhow::Result<Control> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let (handle, control) = control();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("edgemon-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    let _ = handle.reload.try_send(());
                } else {
                    tracing::info!(signal, "stopping: finishing in-flight work");
                    handle.shutdown.fire();
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(control)
}

/// The lock that keeps a second daemon off a data directory; released when dropped.
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock, or explains who holds it.
    pub fn acquire(data_dir: &Path) -> anyhow::Result<DataDirLock> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let path = data_dir.join("edgemon.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        if file.try_lock().is_err() {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "another edgemon is already running on data directory {} (pid {}); stop it first",
                data_dir.display(),
                holder.trim()
            );
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The background threads of one configuration (sync, mail), stopped by their own child of
/// the daemon's shutdown. Dropping it fires that child and joins every thread, so no thread
/// outlives it: the daemon drops it before the lock file, and before starting the next
/// generation on SIGHUP.
#[derive(Default)]
struct Background {
    stop: Shutdown,
    threads: Vec<(&'static str, JoinHandle<()>)>,
}

impl Background {
    /// Starts every background job of `config` on its own thread.
    fn start(config: &Config, metrics: &Arc<Metrics>, parent: &Shutdown) -> anyhow::Result<Self> {
        let mut background = Background {
            stop: parent.child(),
            threads: Vec::new(),
        };
        for job in app::background_jobs(config, metrics) {
            let (stop, run) = (background.stop.clone(), job.run);
            // On error, `background` drops here and joins the threads already started.
            let handle = std::thread::Builder::new()
                .name(format!("edgemon-{}", job.name))
                .spawn(move || run(&stop))
                .with_context(|| format!("starting the {} thread", job.name))?;
            background.threads.push((job.name, handle));
        }
        Ok(background)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.fire();
        for (name, handle) in self.threads.drain(..) {
            if handle.join().is_err() {
                tracing::error!(task = name, "background task panicked");
            }
        }
    }
}

/// Runs the daemon until `control.shutdown` fires (or, with `once`, for one round of each loop).
pub async fn run(config: Config, control: Control, once: bool) -> anyhow::Result<()> {
    // Declared first, so released last: after every thread below has been joined.
    let _lock = DataDirLock::acquire(&config.appliance.data_dir)?;
    let shutdown = control.shutdown.clone();
    let metrics = Arc::new(Metrics::default());
    let mut buffer = app::open_buffer(&config)?;
    let mut collector = app::collector(&config)?;
    let server = match config.metrics.listen {
        Some(listen) => {
            let listener = crate::metrics::bind(listen)
                .with_context(|| format!("binding the metrics endpoint on {listen}"))?;
            tracing::info!(%listen, "metrics endpoint listening");
            Some(smol::spawn(crate::metrics::serve(
                listener,
                metrics.clone(),
                config.buffer.path.clone(),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    // Resolved before anything runs: a box that cannot name itself must not sync.
    let appliance = crate::identity::appliance_id(&config.appliance)?;
    tracing::info!(hosts = config.hosts.len(), %appliance, "edgemon running");
    let web = crate::web::start(&config, &appliance)?;

    if once {
        let (outcomes, wall) = timed_round(&config, &collector, &mut buffer).await?;
        metrics.record_round(&outcomes, wall);
        for job in crate::app::background_jobs(&config, &metrics) {
            (job.once)()?;
        }
        return Ok(());
    }

    let mut background = Background::start(&config, &metrics, &shutdown)?;
    let mut config = config;
    let mut next = Instant::now();
    loop {
        let event = async {
            smol::Timer::at(next).await;
            Event::Tick
        }
        .or(async {
            shutdown.wait().await;
            Event::Stop
        })
        .or(async {
            control
                .reload
                .recv()
                .await
                .map_or(Event::Stop, |()| Event::Reload)
        })
        .await;
        match event {
            Event::Stop => break,
            Event::Reload => {
                match reload(&config, &mut buffer) {
                    Ok(new_config) => {
                        collector = app::reconfigure_collector(&new_config, &collector)?;
                        if background_changed(&config, &new_config) {
                            // The old generation finishes its work in flight and is joined
                            // before the new one opens the same buffer and servers.
                            let old = std::mem::take(&mut background);
                            smol::unblock(move || drop(old)).await;
                            background = Background::start(&new_config, &metrics, &shutdown)?;
                            tracing::info!("sync and mail restarted with the new settings");
                        }
                        tracing::info!(
                            hosts = new_config.hosts.len(),
                            open_sessions = collector.open_sessions(),
                            "configuration reloaded"
                        );
                        config = new_config;
                    }
                    Err(err) => tracing::error!(
                        "reload refused, keeping the running configuration: {err:#}"
                    ),
                }
                continue;
            }
            Event::Tick => {}
        }
        next = Instant::now() + config.collect.interval;
        // A round still waiting on hosts is abandoned at shutdown; one in hand is recorded.
        let round = async { Some(timed_round(&config, &collector, &mut buffer).await) };
        let stopped = async {
            shutdown.wait().await;
            None
        };
        match round.or(stopped).await {
            Some(Ok((outcomes, wall))) => metrics.record_round(&outcomes, wall),
            Some(Err(err)) => tracing::error!("recording the round failed: {err:#}"),
            None => {
                tracing::info!(
                    "shutdown during a round: its samples were not stored yet, nothing is lost"
                );
                break;
            }
        }
        if let Some(why) = buffer.damage_seen().map(str::to_string) {
            // A damaged buffer file: sync and mail hold connections on it, so they are
            // joined before it is set aside, and restarted on the new buffer.
            let old = std::mem::take(&mut background);
            smol::unblock(move || drop(old)).await;
            buffer.close();
            buffer = app::replace_damaged_buffer(&config, &why)?;
            background = Background::start(&config, &metrics, &shutdown)?;
        }
    }
    shutdown.fire();
    smol::unblock(move || drop(background)).await;
    if let Some(server) = server {
        server.await;
    }
    drop(web);
    tracing::info!("edgemon stopped");
    Ok(())
}

/// Whether a reload changed what the background jobs were built from.
fn background_changed(old: &Config, new: &Config) -> bool {
    old.appliance != new.appliance
        || old.buffer != new.buffer
        || old.sync != new.sync
        || old.mail != new.mail
        || old.central != new.central
}

enum Event {
    Tick,
    Stop,
    Reload,
}

async fn timed_round(
    config: &Config,
    collector: &crate::collect::Collector,
    buffer: &mut crate::buffer::Buffer,
) -> anyhow::Result<(Vec<crate::collect::outcome::HostOutcome>, Duration)> {
    let start = Instant::now();
    let outcomes = collector.round().await;
    app::record(config, buffer, &outcomes)?;
    let wall = start.elapsed();
    let ok = outcomes.iter().filter(|o| o.result.is_ok()).count();
    tracing::info!(
        hosts = outcomes.len(),
        ok,
        failed = outcomes.len() - ok,
        wall_ms = wall.as_millis() as u64,
        "round recorded"
    );
    Ok((outcomes, wall))
}

fn reload(current: &Config, buffer: &mut crate::buffer::Buffer) -> anyhow::Result<Config> {
    let new = crate::config::load(&current.source).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    if new.appliance.data_dir != current.appliance.data_dir
        || new.buffer.path != current.buffer.path
    {
        anyhow::bail!("data_dir and buffer.path cannot change on reload; restart edgemon instead");
    }
    buffer.register_hosts(
        new.hosts
            .iter()
            .map(|h| (h.name.as_str(), h.display_address())),
    )?;
    Ok(new)
}
