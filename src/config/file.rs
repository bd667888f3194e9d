//! The raw configuration: serde structs as close to the user's TOML as
//! possible (`deny_unknown_fields` everywhere), and the layering that fills
//! them: the defaults of `keys::KEYS`, then the file, then
//! `EDGEMON__SECTION__KEY` environment variables typed by their key's kind
//! (the `config` crate). Each field here has its entry in `keys::KEYS`,
//! which holds its default, bounds and documentation; a test keeps the two
//! in step.
//!
//! Nothing here is validated beyond types: durations, sizes and limits are
//! still strings, numbers are `i64` so that `resolve` can say "70000 is
//! above the maximum of 65535" instead of serde's "invalid value". Keys that only exist per
//! host (auth, mail, limits overrides) stay `Option` so that merging with
//! `[defaults]` is explicit in `resolve`.

use std::collections::HashMap;

use serde::Deserialize;

use super::error::ConfigError;
use super::keys::{self, Default, Kind};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[appliance]`.
    pub appliance: ApplianceSection,
    /// `[collect]`.
    pub collect: CollectSection,
    /// `[defaults]`: host settings that `[[hosts]]` entries inherit.
    pub defaults: DefaultsSection,
    /// `[[hosts]]`.
    #[serde(default)]
    pub hosts: Vec<HostSection>,
    /// `[[bastions]]`: jump hosts that `via` names.
    #[serde(default)]
    pub bastions: Vec<BastionSection>,
    /// `[[silence]]`: recurring maintenance windows.
    #[serde(default)]
    pub silence: Vec<SilenceSection>,
    /// `[buffer]`.
    pub buffer: BufferSection,
    /// `[sync]`.
    pub sync: SyncSection,
    /// `[smtp]`, absent when mail goes to files.
    pub smtp: Option<SmtpSection>,
    /// `[mail]`.
    pub mail: MailSection,
    /// `[alert]`.
    pub alert: AlertSection,
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// `[web]`.
    #[serde(default)]
    pub web: WebSection,
    /// `[central]`.
    pub central: CentralSection,
}

/// `[appliance]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplianceSection {
    /// Appliance identifier; absent: derived from /etc/machine-id or generated once.
    pub id: Option<String>,
    /// Data directory.
    pub data_dir: String,
}

/// `[collect]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectSection {
    /// Round interval, e.g. `"60s"`.
    pub interval: String,
    /// Hosts collected at once.
    pub concurrency: i64,
    /// TCP connect timeout.
    pub connect_timeout: String,
    /// SSH handshake and authentication timeout.
    pub auth_timeout: String,
    /// Agent reply deadline.
    pub command_timeout: String,
    /// OpenSSH known_hosts file to seed pins from.
    pub known_hosts: Option<String>,
    /// `"strict"` or `"accept-new"`.
    pub host_key_policy: String,
    /// Remote directory for the agent.
    pub agent_dir: String,
    /// Keep SSH sessions open across rounds.
    pub persistent_sessions: bool,
    /// Keep the agent running between rounds.
    pub resident_agent: bool,
    /// Idle timeout of a resident agent.
    pub agent_idle_timeout: String,
    /// Largest agent reply, e.g. `"1MiB"`.
    pub max_reply_size: String,
    /// Largest tolerated clock skew of an agent.
    pub max_clock_skew: String,
    /// `[collect.families]`: what the agent measures beyond the original sample.
    pub families: FamiliesSection,
}

/// `[collect.families]`: the agent's options for the metric families.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FamiliesSection {
    /// Cap of members per family and sample.
    pub max_members: i64,
    /// Deadline of a sample's statvfs calls, e.g. `"2s"`.
    pub statfs_timeout: String,
    /// Mount points not measured; absent: the agent's defaults.
    pub fs_exclude_mounts: Option<Vec<String>>,
    /// Filesystem types not measured.
    pub fs_exclude_types: Option<Vec<String>>,
    /// Interfaces not measured.
    pub if_exclude: Option<Vec<String>>,
    /// Block devices not measured.
    pub dev_exclude: Option<Vec<String>>,
}

/// Limits as written, in `[defaults.alerts]` or `[hosts.alerts]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// CPU limit, e.g. `"90%"` or `"off"`.
    pub cpu: Option<String>,
    /// Memory limit.
    pub memory: Option<String>,
    /// Swap limit.
    pub swap: Option<String>,
    /// Alert on reboot.
    pub reboot: Option<bool>,
    /// Failed rounds before "unreachable"; 0 turns it off.
    pub unreachable_after: Option<i64>,
    // Family rules (issue 22): limits, flags, ignore patterns and per-member entries.
    /// Filesystem used % warning.
    pub fs_used: Option<String>,
    /// Filesystem used % critical.
    pub fs_used_critical: Option<String>,
    /// Inodes used % warning.
    pub fs_inodes: Option<String>,
    /// Inodes used % critical.
    pub fs_inodes_critical: Option<String>,
    /// Turned read-only.
    pub fs_readonly: Option<bool>,
    /// Mount hanging.
    pub fs_hanging: Option<bool>,
    /// Filling up.
    pub fs_filling: Option<bool>,
    /// Mount patterns to ignore.
    pub fs_ignore: Option<Vec<String>>,
    /// Link down.
    pub if_down: Option<bool>,
    /// Interface error ratio limit.
    pub if_errors: Option<String>,
    /// Interface patterns to ignore.
    pub if_ignore: Option<Vec<String>>,
    /// Failed units.
    pub unit_failed: Option<bool>,
    /// Unit patterns to ignore.
    pub unit_ignore: Option<Vec<String>>,
    /// Watched process missing.
    pub process_missing: Option<bool>,
    /// Watch patterns to ignore.
    pub process_ignore: Option<Vec<String>>,
    /// OOM kills.
    pub oom_kills: Option<bool>,
    /// Memory available floor.
    pub mem_available: Option<String>,
    /// Open files vs file-max.
    pub fds: Option<String>,
    /// Processes vs pid_max.
    pub procs: Option<String>,
    /// Clock offset beyond collect.max_clock_skew.
    pub clock_skew: Option<bool>,
    /// Per-mount entries.
    #[serde(default)]
    pub mounts: Vec<MountSection>,
    /// Per-interface entries.
    #[serde(default)]
    pub interfaces: Vec<InterfaceSection>,
}

/// One `[[defaults.alerts.mounts]]` / `[[hosts.alerts.mounts]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSection {
    /// Glob over mount points.
    pub mount: Option<String>,
    /// Used % warning.
    pub used: Option<String>,
    /// Used % critical.
    pub used_critical: Option<String>,
    /// Inodes % warning.
    pub inodes: Option<String>,
    /// Inodes % critical.
    pub inodes_critical: Option<String>,
    /// Read-only rule.
    pub readonly: Option<bool>,
    /// Hanging rule.
    pub hanging: Option<bool>,
    /// Filling-up rule.
    pub filling: Option<bool>,
}

/// One `[[defaults.alerts.interfaces]]` / `[[hosts.alerts.interfaces]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSection {
    /// Glob over interface names.
    pub name: Option<String>,
    /// Link-down rule.
    pub down: Option<bool>,
    /// Error ratio limit.
    pub errors: Option<String>,
}

/// `[defaults]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSection {
    /// SSH port.
    pub port: i64,
    /// SSH user.
    pub user: Option<String>,
    /// Private key file.
    pub identity_file: Option<String>,
    /// Environment variable holding the key's passphrase.
    pub identity_passphrase_env: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<String>,
    /// Authenticate with the running ssh-agent.
    pub use_agent: Option<bool>,
    /// Host-key policy (falls back to `[collect]`'s).
    pub host_key_policy: Option<String>,
    /// Bastions every host passes through unless it sets its own `via`.
    pub via: Option<Vec<String>>,
    /// Alert mail address.
    pub mail: Option<String>,
    /// Default limits.
    pub alerts: AlertsSection,
}

/// One `[[silence]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceSection {
    /// Hosts covered; all when absent.
    pub hosts: Option<Vec<String>>,
    /// Rules covered; all when absent.
    pub rules: Option<Vec<String>>,
    /// `"Sat 22:00-Sun 06:00"`, UTC.
    pub weekly: Option<String>,
    /// Why.
    pub comment: Option<String>,
}

/// One `[[hosts]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// Unique name.
    pub name: Option<String>,
    /// Host name or IP address (ssh).
    pub address: Option<String>,
    /// SSH port.
    pub port: Option<i64>,
    /// SSH user.
    pub user: Option<String>,
    /// `"ssh"` (default) or `"local"`.
    pub transport: Option<String>,
    /// `"auto"` (default), `"linux"` or `"windows"`.
    pub os: Option<String>,
    /// Private key file.
    pub identity_file: Option<String>,
    /// Environment variable holding the key's passphrase.
    pub identity_passphrase_env: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<String>,
    /// Inline password (as imported from Config.xml; discouraged).
    pub password: Option<String>,
    /// Authenticate with the running ssh-agent.
    pub use_agent: Option<bool>,
    /// Host-key policy.
    pub host_key_policy: Option<String>,
    /// Bastions to pass through, outermost first; `[]` for a direct connection.
    pub via: Option<Vec<String>>,
    /// Alert mail address.
    pub mail: Option<String>,
    /// Limit overrides.
    #[serde(default)]
    pub alerts: AlertsSection,
    /// Processes that must be running (`"sshd"`, `"cmdline:GLOB"`, `"NAME=..."`).
    pub watch: Option<Vec<String>>,
}

/// One `[[bastions]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BastionSection {
    /// Unique name that `via` refers to.
    pub name: Option<String>,
    /// Host name or IP address.
    pub address: Option<String>,
    /// SSH port (default `[defaults]`'s).
    pub port: Option<i64>,
    /// SSH user (default `[defaults]`'s).
    pub user: Option<String>,
    /// Private key file.
    pub identity_file: Option<String>,
    /// Environment variable holding the key's passphrase.
    pub identity_passphrase_env: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<String>,
    /// Authenticate with the running ssh-agent.
    pub use_agent: Option<bool>,
    /// Host-key policy.
    pub host_key_policy: Option<String>,
    /// Bastions to pass through to reach this one.
    pub via: Option<Vec<String>>,
    /// Inner handshakes in flight at once through this bastion.
    pub handshakes: Option<i64>,
}

/// `[buffer]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferSection {
    /// SQLite file (default `<data_dir>/buffer.sqlite`).
    pub path: Option<String>,
    /// Size bound, e.g. `"1GiB"`.
    pub max_size: String,
    /// Age bound of unsynced samples.
    pub max_unsynced_age: String,
    /// How long synced samples stay.
    pub keep_synced: String,
    /// Free space kept on the buffer's filesystem: bytes, a percentage, or `"auto"`.
    pub min_free: String,
}

/// `[sync]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSection {
    /// Inline URL.
    pub url: Option<String>,
    /// Several inline URLs (nodes of one cluster), tried in order.
    pub urls: Option<Vec<String>>,
    /// Environment variable holding the URL.
    pub url_env: Option<String>,
    /// File holding the URL.
    pub url_file: Option<String>,
    /// Time between passes.
    pub interval: String,
    /// Samples per transaction.
    pub batch_size: i64,
    /// Backoff cap.
    pub max_backoff: String,
    /// MySQL timeout.
    pub timeout: String,
    /// Sync windows.
    pub schedule: String,
    /// Zone of the windows.
    pub timezone: String,
    /// Rate cap.
    pub rate_limit: String,
}

/// `[smtp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    /// Server.
    pub host: Option<String>,
    /// Port (default by `tls`: 25, 587 or 465).
    pub port: Option<i64>,
    /// `"none"`, `"starttls"` (default) or `"implicit"`.
    pub tls: Option<String>,
    /// Login.
    pub username: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<String>,
    /// Timeout.
    pub timeout: Option<String>,
}

/// `[mail]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSection {
    /// Sender.
    pub from: String,
    /// Recipients of every alert.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Mails per recipient per window.
    pub rate_limit: i64,
    /// Rate window.
    pub rate_window: String,
}

/// `[alert]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSection {
    /// Consecutive breaching samples before firing.
    #[serde(rename = "for")]
    pub fire_after: i64,
    /// Hysteresis in percentage points.
    pub clear_margin: f64,
    /// Reminder interval.
    pub repeat: String,
    /// Flap counting window.
    pub flap_window: String,
    /// Flips that mark flapping.
    pub flap_threshold: i64,
    /// Share of unreachable hosts that makes one site alert.
    pub site_unreachable_share: f64,
    /// Fewest hosts for site awareness.
    pub site_min_hosts: i64,
    /// Time-to-first-loss below which the operators are mailed.
    pub loss_horizon: String,
    /// Filling-up: least-squares window.
    pub fill_window: String,
    /// Filling-up: warning horizon.
    pub fill_warning: String,
    /// Filling-up: critical horizon.
    pub fill_critical: String,
    /// Filling-up: only while available % is below this.
    pub fill_below: f64,
    /// Filling-up: how long the prediction must hold.
    pub fill_hold: String,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Listen address, e.g. `"127.0.0.1:9100"`; absent means off.
    pub listen: Option<String>,
}

/// `[web]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    /// Listen address of the status page, e.g. `"127.0.0.1:9180"`; absent means off.
    pub listen: Option<String>,
    /// File holding the basic-auth password.
    pub password_file: Option<String>,
    /// Deadline of one request, e.g. `"10s"`.
    pub request_timeout: String,
}

/// `[central]`: the central database's maintenance.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CentralSection {
    /// Age beyond which the daemon prunes central rows, e.g. `"90d"`; `"0s"`: off.
    pub retention: String,
}

/// One `EDGEMON__SECTION__KEY` variable, parsed by its key's kind.
#[derive(Debug)]
pub(crate) struct Override {
    /// The key it sets.
    pub(crate) path: &'static str,
    /// Its value, typed as the key's TOML type.
    pub(crate) value: config::Value,
}

/// Reads the `EDGEMON__*` variables of `env`: each must name a key of
/// [`keys::KEYS`] and hold a value of its type (an integer for an integer
/// key, `true`/`false`, a comma-separated list). Bounds are checked later,
/// with every other value.
pub(crate) fn environment(env: &HashMap<String, String>) -> (Vec<Override>, Vec<ConfigError>) {
    let mut overrides = Vec::new();
    let mut errors = Vec::new();
    let mut names: Vec<&String> = env.keys().filter(|name| name.starts_with(PREFIX)).collect();
    names.sort();
    for name in names {
        let text = &env[name];
        let path = name[PREFIX.len()..].to_lowercase().replace("__", ".");
        let error = |message: String| ConfigError {
            file: format!("${name}"),
            key_path: path.clone(),
            line: None,
            message,
        };
        let Some(key) = keys::from_env_name(name) else {
            let message = if path.starts_with("hosts") {
                "[[hosts]] entries cannot be set from the environment".to_string()
            } else {
                let section = path.split('.').next().unwrap_or_default();
                match keys::children(section) {
                    known if known.is_empty() => format!(
                        "unknown key `{path}` (known sections: {})",
                        keys::children("").join(", ")
                    ),
                    known => format!(
                        "unknown key `{path}` (known in [{section}]: {})",
                        known.join(", ")
                    ),
                }
            };
            errors.push(error(message));
            continue;
        };
        let value = match key.kind {
            Kind::Int { .. } => text.trim().parse::<i64>().map(config::Value::from).ok(),
            Kind::Number { .. } => text.trim().parse::<f64>().map(config::Value::from).ok(),
            Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "true" => Some(config::Value::from(true)),
                "false" => Some(config::Value::from(false)),
                _ => None,
            },
            Kind::TextList => Some(config::Value::from(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<String>>(),
            )),
            _ => Some(config::Value::from(text.as_str())),
        };
        match value {
            Some(value) => overrides.push(Override {
                path: key.path,
                value,
            }),
            None => errors.push(error(format!(
                "expected {}, found {text:?}",
                keys::expected(&key.kind)
            ))),
        }
    }
    (overrides, errors)
}

const PREFIX: &str = "EDGEMON__";

/// Layers the defaults of [`keys::KEYS`], the checked file and the
/// environment's overrides (the `config` crate), into one table.
pub(crate) fn layer(
    file: &toml::Table,
    overrides: &[Override],
) -> Result<toml::Table, config::ConfigError> {
    let mut builder = config::Config::builder();
    for (path, value) in keys::layered_defaults() {
        builder = match value {
            Default::Text(text) => builder.set_default(path, text)?,
            Default::Int(number) => builder.set_default(path, number)?,
            Default::Flag(flag) => builder.set_default(path, flag)?,
            Default::Number(number) => builder.set_default(path, number)?,
        };
    }
    let text =
        toml::to_string(file).map_err(|err| config::ConfigError::Message(err.to_string()))?;
    builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
    for Override { path, value } in overrides {
        builder = builder.set_override(*path, value.clone())?;
    }
    builder.build()?.try_deserialize()
}
