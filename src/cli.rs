//! The command line: clap definitions and the dispatch to the modules that
//! own each subcommand. Exit codes: 0 success, 1 failure, 2 invalid
//! configuration or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// edgemon: collects host statistics over SSH, buffers them in SQLite,
/// syncs them to MySQL and mails alerts.
#[derive(Debug, Parser)]
#[command(name = "edgemon", version, about, long_about = None)]
pub struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// `--config FILE`, shared by the commands that read a configuration.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Configuration file (default: config/edgemon.toml, then /etc/edgemon/edgemon.toml).
    #[arg(long, short = 'c', value_name = "FILE", env = "EDGEMON_CONFIG")]
    pub config: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: collection, sync and alert loops until SIGTERM or Ctrl-C.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Run one round of each loop, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Run one collection round now and print a table of results per host.
    Collect {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Drain the buffer to the central MySQL database now.
    Sync {
        #[command(flatten)]
        config: ConfigArg,
        /// Send now even outside the windows of `sync.schedule`.
        #[arg(long)]
        ignore_schedule: bool,
    },
    /// Show hosts, buffer depth, sync and outbox state.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check or import configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Silence alert mail (alerts are still recorded and synced); effective at the next round.
    #[command(subcommand)]
    Silence(SilenceCommand),
    /// Acknowledge a firing alert: no reminders until it resolves (its RESOLVED is still mailed).
    Ack {
        #[command(flatten)]
        config: ConfigArg,
        /// The host's name in the configuration.
        host: String,
        /// The rule: cpu, memory, swap, reboot, unreachable, or a family rule with its member (fs-used:/var, if-down:eth1, oom-kills).
        rule: String,
        /// Why, shown with the acknowledgement.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Manage pinned SSH host keys.
    #[command(subcommand)]
    Hosts(HostsCommand),
    /// Maintain the central MySQL database.
    #[command(subcommand)]
    Central(CentralCommand),
    /// Print the DDL of a database.
    Schema {
        /// Which database.
        #[arg(value_enum)]
        which: SchemaKind,
    },
}

/// `edgemon config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file; print a summary, or every error and exit 2.
    Check {
        /// The file (default: config/edgemon.toml, then /etc/edgemon/edgemon.toml).
        file: Option<PathBuf>,
    },
    /// Print the TOML equivalent of an original-format Config.xml.
    ImportXml {
        /// The Config.xml file.
        file: PathBuf,
    },
    /// Print every configuration key: default, allowed values, environment variable, meaning.
    Keys,
}

/// `edgemon silence ...`
#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Silence HOST (or --all hosts), for every rule or only the RULEs given.
    Add {
        #[command(flatten)]
        config: ConfigArg,
        /// Every host (then every argument is a RULE).
        #[arg(long)]
        all: bool,
        /// HOST [RULE...], or with --all: [RULE...] (rules: cpu, memory, swap, reboot,
        /// unreachable, site-unreachable).
        #[arg(value_name = "HOST|RULE")]
        targets: Vec<String>,
        /// How long, e.g. 2h, 30m, 1day.
        #[arg(long = "for", value_name = "DURATION", conflicts_with = "until")]
        duration: Option<String>,
        /// Until when, UTC, e.g. 2026-11-25T18:00:00Z.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Why (shown in `silence list`, `status` and the status page).
        #[arg(long)]
        comment: String,
    },
    /// List silences in force or still to come.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove a silence by its id.
    Remove {
        #[command(flatten)]
        config: ConfigArg,
        /// The id `silence list` shows.
        id: i64,
    },
}

/// `edgemon central ...`
#[derive(Debug, Subcommand)]
pub enum CentralCommand {
    /// Delete central rows older than an age (retention), in small transactions along the
    /// primary keys; Ctrl-C stops after the batch in flight, running again resumes.
    Prune {
        #[command(flatten)]
        config: ConfigArg,
        /// The age, e.g. 90d, 12w, 2160h (received longer ago than this by the server's clock).
        #[arg(long, value_name = "AGE")]
        older_than: String,
        /// Count what would be deleted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Most rows deleted per transaction (samples and their per-core values together).
        #[arg(long, value_name = "ROWS", default_value_t = crate::sync::prune::DEFAULT_BATCH_ROWS,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
        batch: usize,
        /// Prune the rows of every appliance in the database, not only this one's.
        #[arg(long)]
        all_appliances: bool,
    },
}

/// `edgemon hosts ...`
#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Pin the host key a host presents now (after a legitimate key change).
    Trust {
        #[command(flatten)]
        config: ConfigArg,
        /// The host's name in the configuration.
        name: String,
        /// Pin only a key with this fingerprint (`SHA256:...`, as `ssh-keygen -lf` prints it,
        /// taken from the host's console); any other key is shown and nothing is pinned.
        #[arg(long, value_name = "SHA256:...")]
        fingerprint: Option<String>,
    },
    /// List pinned host keys as OpenSSH known_hosts lines.
    Export {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the hosts (and jump hosts) of an ssh_config or an Ansible inventory as
    /// `[[hosts]]` and `[[bastions]]` TOML to merge into the configuration; what cannot be
    /// mapped is listed at its top and on stderr.
    Import {
        /// The kind of file.
        #[arg(long, value_enum)]
        from: crate::config::host_import::Source,
        /// The file (`~/.ssh/config`, an INI or YAML inventory).
        file: std::path::PathBuf,
    },
}

/// Which DDL `edgemon schema` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemaKind {
    /// The central database.
    Mysql,
    /// The local buffer.
    Sqlite,
}

/// Runs a parsed command line; the returned code is the process exit code.
pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Schema { which } => {
            match which {
                SchemaKind::Mysql => print!("{}", crate::schema::MYSQL),
                SchemaKind::Sqlite => print!("{}", crate::schema::SQLITE),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Check { file }) => {
            crate::config::commands::check(file.as_deref())
        }
        Command::Config(ConfigCommand::ImportXml { file }) => {
            crate::config::commands::import_xml(&file)
        }
        Command::Config(ConfigCommand::Keys) => Ok(crate::config::commands::keys()),
        Command::Collect { config } => crate::app::collect_command(&load(&config)?),
        Command::Sync {
            config,
            ignore_schedule,
        } => crate::sync::command(&load(&config)?, ignore_schedule),
        Command::Status { config, json } => crate::app::status_command(&load(&config)?, json),
        Command::Run { config, once } => {
            let config = load(&config)?;
            let control = crate::daemon::signal_control()?;
            smol::block_on(crate::daemon::run(config, control, once))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Silence(SilenceCommand::Add {
            config,
            all,
            targets,
            duration,
            until,
            comment,
        }) => {
            let request = crate::alert::operator::SilenceRequest {
                all,
                targets,
                duration,
                until,
                comment,
            };
            crate::alert::operator::silence_add(&load(&config)?, &request, &mut std::io::stdout())
        }
        Command::Silence(SilenceCommand::List { config, json }) => {
            crate::alert::operator::silence_list(&load(&config)?, json, &mut std::io::stdout())
        }
        Command::Silence(SilenceCommand::Remove { config, id }) => {
            crate::alert::operator::silence_remove(&load(&config)?, id, &mut std::io::stdout())
        }
        Command::Ack {
            config,
            host,
            rule,
            comment,
        } => crate::alert::operator::ack(
            &load(&config)?,
            &host,
            &rule,
            comment.as_deref(),
            &mut std::io::stdout(),
        ),
        Command::Hosts(HostsCommand::Import { from, file }) => {
            crate::config::host_import::command(from, &file)
        }
        Command::Hosts(HostsCommand::Trust {
            config,
            name,
            fingerprint,
        }) => crate::collect::hosts::trust(
            &load(&config)?,
            &name,
            fingerprint.as_deref(),
            &mut std::io::stdout().lock(),
        ),
        Command::Central(CentralCommand::Prune {
            config,
            older_than,
            dry_run,
            batch,
            all_appliances,
        }) => crate::sync::prune::command(
            &load(&config)?,
            &older_than,
            crate::sync::prune::PruneOptions {
                older_than: std::time::Duration::ZERO,
                batch_rows: batch,
                dry_run,
                all_appliances,
            },
        ),
        Command::Hosts(HostsCommand::Export { config }) => {
            crate::collect::hosts::export(&load(&config)?, &mut std::io::stdout().lock())
        }
    }
}

fn load(arg: &ConfigArg) -> anyhow::Result<crate::config::Config> {
    crate::config::load_default_or(arg.config.as_deref())
}
