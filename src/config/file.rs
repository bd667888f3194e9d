//! The raw configuration: serde structs as close to the user's TOML as
//! possible (`deny_unknown_fields` everywhere), and the layering that fills
//! them: defaults in code, then the file, then `EDGEMON__SECTION__KEY`
//! environment variables (the `config` crate).
//!
//! Nothing here is validated beyond types: durations, sizes and limits are
//! still strings, numbers are `i64` so that `resolve` can say "port 70000 is
//! out of range" instead of serde's "invalid value". Keys that only exist per
//! host (auth, mail, limits overrides) stay `Option` so that merging with
//! `[defaults]` is explicit in `resolve`.

use std::collections::HashMap;

use serde::Deserialize;

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
    /// Alert mail address.
    pub mail: Option<String>,
    /// Default limits.
    pub alerts: AlertsSection,
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
    /// Alert mail address.
    pub mail: Option<String>,
    /// Limit overrides.
    #[serde(default)]
    pub alerts: AlertsSection,
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
}

/// `[sync]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSection {
    /// Inline URL.
    pub url: Option<String>,
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
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Listen address, e.g. `"127.0.0.1:9100"`; absent means off.
    pub listen: Option<String>,
}

/// A default value in code.
enum Default {
    Text(&'static str),
    Int(i64),
    Flag(bool),
    Float(f64),
}

/// Defaults for every key that has one (the first layer).
const DEFAULTS: &[(&str, Default)] = &[
    ("appliance.data_dir", Default::Text("/var/lib/edgemon")),
    ("collect.interval", Default::Text("60s")),
    ("collect.concurrency", Default::Int(16)),
    ("collect.connect_timeout", Default::Text("10s")),
    ("collect.auth_timeout", Default::Text("20s")),
    ("collect.command_timeout", Default::Text("60s")),
    ("collect.host_key_policy", Default::Text("accept-new")),
    ("collect.agent_dir", Default::Text("/tmp/.edgemon-agent")),
    ("collect.persistent_sessions", Default::Flag(true)),
    ("collect.resident_agent", Default::Flag(true)),
    ("collect.agent_idle_timeout", Default::Text("10m")),
    ("collect.max_reply_size", Default::Text("1MiB")),
    ("collect.max_clock_skew", Default::Text("5m")),
    ("defaults.port", Default::Int(22)),
    ("defaults.alerts.cpu", Default::Text("90%")),
    ("defaults.alerts.memory", Default::Text("90%")),
    ("defaults.alerts.swap", Default::Text("80%")),
    ("defaults.alerts.reboot", Default::Flag(true)),
    ("defaults.alerts.unreachable_after", Default::Int(3)),
    ("buffer.max_size", Default::Text("1GiB")),
    ("buffer.max_unsynced_age", Default::Text("30d")),
    ("buffer.keep_synced", Default::Text("7d")),
    ("sync.interval", Default::Text("30s")),
    ("sync.batch_size", Default::Int(500)),
    ("sync.max_backoff", Default::Text("30m")),
    ("sync.timeout", Default::Text("30s")),
    ("mail.from", Default::Text("edgemon@localhost")),
    ("mail.rate_limit", Default::Int(10)),
    ("mail.rate_window", Default::Text("1h")),
    ("alert.for", Default::Int(1)),
    ("alert.clear_margin", Default::Float(5.0)),
    ("alert.repeat", Default::Text("1h")),
    ("alert.flap_window", Default::Text("1h")),
    ("alert.flap_threshold", Default::Int(6)),
];

/// Layers defaults, the checked file and the environment, and deserializes.
///
/// `env` is the process environment (a snapshot, so tests can pass their own).
pub(crate) fn layer(
    file: &toml::Table,
    env: &HashMap<String, String>,
) -> Result<ConfigFile, config::ConfigError> {
    let mut builder = config::Config::builder();
    for (key, value) in DEFAULTS {
        builder = match value {
            Default::Text(text) => builder.set_default(*key, *text)?,
            Default::Int(number) => builder.set_default(*key, *number)?,
            Default::Flag(flag) => builder.set_default(*key, *flag)?,
            Default::Float(number) => builder.set_default(*key, *number)?,
        };
    }
    let text =
        toml::to_string(file).map_err(|err| config::ConfigError::Message(err.to_string()))?;
    builder
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("EDGEMON")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("mail.recipients")
                .source(Some(env.clone().into_iter().collect())),
        )
        .build()?
        .try_deserialize()
}

/// The environment variable that overrides `key_path` (`sync.batch_size` ->
/// `EDGEMON__SYNC__BATCH_SIZE`); `None` for paths inside `[[hosts]]`.
pub(crate) fn env_name(key_path: &str) -> Option<String> {
    (!key_path.contains('['))
        .then(|| format!("EDGEMON__{}", key_path.replace('.', "__").to_uppercase()))
}
