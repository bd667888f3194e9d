//! `edgemon run`: one process running the collection loop (async, on smol),
//! and the sync and mail loops (blocking, each on its own thread with its own
//! SQLite connection), with one shared [`Shutdown`].
//!
//! Shutdown (SIGTERM, SIGINT): no new round or batch starts; a round whose
//! outcomes are in hand is recorded (one SQLite transaction), the sync loop
//! finishes its MySQL batch and marks it, the mailer finishes the mail it is
//! sending, SSH sessions close; then `run` returns. A round still waiting on
//! hosts is abandoned: nothing of it was stored, so nothing is lost.
//! Rounds are per-host ticks ([`crate::collect::schedule`]): a host still in
//! flight is not started again, and a round commits at the latest at the next
//! tick, so one silent host never sets the others' pace.
//! SIGHUP reloads the configuration from the same file; buffer, alert state
//! and outbox stay as they are, hosts whose settings did not change keep their
//! SSH sessions, and a background thread is restarted only when the sections
//! its job reads changed. The reload never waits on a thread: the old one is
//! told to stop and the new one joins it before starting, off the collection
//! loop, so a mail stuck on a dead server delays no round. A second daemon on
//! the same data directory is refused by an exclusive lock on
//! `<data_dir>/edgemon.lock`.
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
use crate::collect::outcome::ErrorClass;
use crate::collect::schedule::{ClosedRound, Scheduler};
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

/// The background threads (sync, mail, prune), one per job, each stopped by its own child of
/// the daemon's shutdown.
///
/// A reload restarts only the jobs whose inputs changed ([`app::job_changed`]) and never waits
/// for the old thread: it fires the old thread's stop and starts the new one, whose first act
/// is to join the old (a mailer must never send beside its predecessor, nor two syncs drain one
/// queue), so the collection loop goes on at once whatever the old thread is stuck on (a mail
/// on a blackholed server, a schema lock wait). Every thread, current or superseded, is joined
/// through this value: dropping it fires every stop and joins them all, and the daemon drops it
/// before the lock file.
#[derive(Default)]
struct Background {
    parent: Shutdown,
    workers: Vec<Worker>,
    /// Threads of jobs a reload removed (prune turned off): stopped, joined on drop.
    retired: Vec<Worker>,
}

struct Worker {
    name: &'static str,
    stop: Shutdown,
    handle: JoinHandle<()>,
}

impl Background {
    /// Starts every background job of `config` on its own thread.
    fn start(config: &Config, metrics: &Arc<Metrics>, parent: &Shutdown) -> anyhow::Result<Self> {
        let mut background = Background {
            parent: parent.clone(),
            workers: Vec::new(),
            retired: Vec::new(),
        };
        for job in app::background_jobs(config, metrics) {
            // On error, `background` drops here and joins the threads already started.
            let worker = background.spawn(job, Vec::new())?;
            background.workers.push(worker);
        }
        Ok(background)
    }

    /// Applies a reload: restarts the jobs whose inputs changed between `old` and `new`,
    /// starts new ones and stops removed ones, without waiting for any thread. Returns the
    /// names of the jobs (re)started.
    fn reload(
        &mut self,
        old: &Config,
        new: &Config,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Vec<&'static str>> {
        self.retired.retain(|w| !w.handle.is_finished());
        let mut restarted = Vec::new();
        for job in app::background_jobs(new, metrics) {
            let running = self.workers.iter().position(|w| w.name == job.name);
            if running.is_some() && !app::job_changed(job.name, old, new) {
                continue;
            }
            // The job's current thread and any stopped one still ending: the new thread joins
            // them all before it runs, so two generations never work at once.
            let mut previous: Vec<Worker> = running
                .map(|i| self.workers.remove(i))
                .into_iter()
                .collect();
            let (same, others): (Vec<Worker>, Vec<Worker>) = std::mem::take(&mut self.retired)
                .into_iter()
                .partition(|w| w.name == job.name);
            self.retired = others;
            previous.extend(same);
            let name = job.name;
            let worker = self.spawn(job, previous)?;
            self.workers.push(worker);
            restarted.push(name);
        }
        // Jobs the new configuration no longer has.
        let names: Vec<&str> = app::background_jobs(new, metrics)
            .iter()
            .map(|j| j.name)
            .collect();
        let (keep, gone): (Vec<Worker>, Vec<Worker>) = std::mem::take(&mut self.workers)
            .into_iter()
            .partition(|w| names.contains(&w.name));
        self.workers = keep;
        for worker in gone {
            worker.stop.fire();
            tracing::info!(task = worker.name, "stopped by the reload");
            self.retired.push(worker);
        }
        Ok(restarted)
    }

    /// Starts `job` on its own thread; that thread first stops and joins `previous` (earlier
    /// threads of the same job), and runs the job only if not stopped meanwhile. When the
    /// thread cannot start, `previous` are stopped and kept in `retired`, still to be joined.
    fn spawn(&mut self, job: app::Job, previous: Vec<Worker>) -> anyhow::Result<Worker> {
        let stop = self.parent.child();
        for worker in &previous {
            worker.stop.fire();
        }
        let handed = Arc::new(std::sync::Mutex::new(previous));
        let (name, run, own) = (job.name, job.run, stop.clone());
        let body = {
            let handed = handed.clone();
            move || {
                let previous: Vec<Worker> =
                    std::mem::take(&mut *handed.lock().unwrap_or_else(|p| p.into_inner()));
                for worker in previous {
                    let started = Instant::now();
                    if worker.handle.join().is_err() {
                        tracing::error!(task = name, "background task panicked");
                    }
                    tracing::info!(
                        task = name,
                        waited_ms = started.elapsed().as_millis() as u64,
                        "previous generation joined; starting with the new settings"
                    );
                }
                if !own.is_fired() {
                    run(&own);
                }
            }
        };
        match std::thread::Builder::new()
            .name(format!("edgemon-{name}"))
            .spawn(body)
        {
            Ok(handle) => Ok(Worker { name, stop, handle }),
            Err(error) => {
                let previous =
                    std::mem::take(&mut *handed.lock().unwrap_or_else(|p| p.into_inner()));
                self.retired.extend(previous);
                Err(anyhow::Error::new(error).context(format!("starting the {name} thread")))
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let workers: Vec<Worker> = self
            .workers
            .drain(..)
            .chain(self.retired.drain(..))
            .collect();
        for worker in &workers {
            worker.stop.fire();
        }
        for worker in workers {
            // A thread that superseded another joins it first, so this joins both.
            if worker.handle.join().is_err() {
                tracing::error!(task = worker.name, "background task panicked");
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
    let mut scheduler = Scheduler::new();
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
        .or(async { Event::Landed(Box::new(scheduler.next_landed().await)) })
        .await;
        let closed = match event {
            Event::Stop => break,
            Event::Reload => {
                // Nothing here waits on a thread: a reload never delays a round.
                match reload(&config, &mut buffer) {
                    Ok(new_config) => {
                        collector = app::reconfigure_collector(&new_config, &collector)?;
                        match background.reload(&config, &new_config, &metrics) {
                            Ok(restarted) if restarted.is_empty() => {}
                            Ok(restarted) => tracing::info!(
                                restarted = restarted.join(", "),
                                "background jobs restarting with the new settings"
                            ),
                            Err(error) => tracing::error!("{error:#}"),
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
            Event::Tick => {
                next = Instant::now() + config.collect.interval;
                scheduler.tick(&collector)
            }
            Event::Landed(outcome) => scheduler.land(*outcome),
        };
        if let Some(round) = closed {
            match record_round(&config, &mut buffer, &round) {
                Ok(()) => metrics.record_round(&round.outcomes, round.wall),
                Err(err) => tracing::error!("recording the round failed: {err:#}"),
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
    if !scheduler.idle() {
        tracing::info!(
            in_flight = scheduler.in_flight(),
            "shutdown during a round: its samples were not stored yet, nothing is lost"
        );
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

enum Event {
    Tick,
    Stop,
    Reload,
    Landed(Box<crate::collect::outcome::HostOutcome>),
}

/// Records a closed round of the scheduler in one transaction and logs it.
fn record_round(
    config: &Config,
    buffer: &mut crate::buffer::Buffer,
    round: &ClosedRound,
) -> anyhow::Result<()> {
    app::record(config, buffer, &round.outcomes)?;
    let ok = round.outcomes.iter().filter(|o| o.result.is_ok()).count();
    let in_flight = round
        .outcomes
        .iter()
        .filter(|o| matches!(&o.result, Err(e) if e.class == ErrorClass::InFlight))
        .count();
    tracing::info!(
        hosts = round.outcomes.len(),
        ok,
        failed = round.outcomes.len() - ok,
        in_flight,
        wall_ms = round.wall.as_millis() as u64,
        "round recorded"
    );
    Ok(())
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
