//! The resolved configuration: what the rest of edgemon sees.
//!
//! Every value here has been validated and every default applied (see
//! `resolve.rs`); nothing is an `Option` that "must be `Some` at runtime".
//! Each task receives only its own section (`&SyncConfig`, not `&Config`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use edgemon_proto::report::family::options::AgentOptions;

use super::secret::Secret;
use super::units::Percent;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from (for messages).
    pub source: PathBuf,
    /// Identity and data directory of this appliance.
    pub appliance: ApplianceConfig,
    /// How collection rounds run.
    pub collect: CollectConfig,
    /// The monitored hosts, in configuration order, names unique.
    pub hosts: Vec<HostConfig>,
    /// The local SQLite buffer.
    pub buffer: BufferConfig,
    /// Sync to the central MySQL database.
    pub sync: SyncConfig,
    /// Where alert mail goes and how it is sent.
    pub mail: MailConfig,
    /// Alert lifecycle policy (the limits themselves are per host).
    pub alert: AlertPolicy,
    /// `[[silence]]`: recurring weekly silences.
    pub silences: Vec<WeeklySilence>,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// The status page and its JSON API.
    pub web: WebConfig,
    /// Maintenance of the central database.
    pub central: CentralConfig,
}

/// `[central]`: maintenance of the central database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CentralConfig {
    /// Age beyond which the daemon prunes this appliance's central rows once a day;
    /// `None`: off (the default).
    pub retention: Option<Duration>,
}

/// `[appliance]`: who this box is.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplianceConfig {
    /// `appliance.id` as configured (validated). `None`: derived from the machine or generated
    /// once; `identity::appliance_id` resolves it, and every central row carries the result.
    pub id: Option<String>,
    /// Directory for the buffer, mail files, host-key pins and the lock file.
    pub data_dir: PathBuf,
}

/// What to do with a host key that is not pinned yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// An unknown or changed key is refused.
    Strict,
    /// Trust on first use: an unknown key is pinned, a changed key refused.
    AcceptNew,
}

/// `[collect]`: the scheduler and the transports.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectConfig {
    /// Time between the starts of two rounds.
    pub interval: Duration,
    /// Hosts collected at once.
    pub concurrency: usize,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// SSH handshake plus authentication timeout.
    pub auth_timeout: Duration,
    /// Deadline for the agent's reply (upload, exec, answer).
    pub command_timeout: Duration,
    /// OpenSSH known_hosts file to seed pinned host keys from.
    pub known_hosts: Option<PathBuf>,
    /// Global host-key policy (hosts may override).
    pub host_key_policy: HostKeyPolicy,
    /// Directory on the remote host that holds the agent: absolute, or `~/...` (expanded by the
    /// remote shell); it must be private to the login user.
    pub agent_dir: String,
    /// Keep SSH sessions open across rounds.
    pub persistent_sessions: bool,
    /// Keep the agent running on its channel between rounds.
    pub resident_agent: bool,
    /// A resident agent exits after this long without a request.
    pub agent_idle_timeout: Duration,
    /// Largest reply accepted from an agent, in bytes.
    pub max_reply_bytes: u64,
    /// Agent clocks further than this from the appliance's are flagged.
    pub max_clock_skew: Duration,
}

/// The operating system of a host, which decides the agent build and how it is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostOs {
    /// Decided when connecting: Windows when the SSH server's banner names
    /// `OpenSSH_for_Windows`, Linux otherwise; a local host is this box (Linux).
    #[default]
    Auto,
    /// A Linux host: the static Linux agent, deployed with POSIX shell commands.
    Linux,
    /// A Windows host: `edgemon-agent.exe`, deployed over SFTP into `%LOCALAPPDATA%`; a local
    /// Windows host runs the agent under Wine (`wine64` on PATH), which is for tests.
    Windows,
}

/// How edgemon reaches a host.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// Run the agent on this box as a child process (the default config).
    Local,
    /// Reach the host over SSH.
    Ssh(SshTarget),
}

/// Where and how to log in over SSH.
#[derive(Debug, Clone, PartialEq)]
pub struct SshTarget {
    /// Host name or IP address.
    pub address: String,
    /// TCP port.
    pub port: u16,
    /// Remote user.
    pub user: String,
    /// How to authenticate.
    pub auth: Auth,
    /// Host-key policy for this host.
    pub host_key_policy: HostKeyPolicy,
    /// The bastions to pass through, outermost first (`via`, expanded with each bastion's own
    /// `via`); empty for a direct connection. Each hop's key is pinned under the hop's name.
    pub via: Vec<Bastion>,
}

impl SshTarget {
    /// `address:port` as operators write it: `[::1]:22` for an IPv6 address.
    pub fn socket_text(&self) -> String {
        host_port(&self.address, self.port)
    }
}

/// `address:port`, with an IPv6 address in brackets.
pub fn host_port(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// A `[[bastions]]` entry: a jump host that carries the sessions of the hosts behind it (one
/// authenticated session, a `direct-tcpip` channel per target).
#[derive(Debug, Clone, PartialEq)]
pub struct Bastion {
    /// Its unique name (letters, digits, `.`, `_`, `-`): named in errors, alerts and pins.
    pub name: String,
    /// How to log in to it; `login.via` is always empty (the chain is the target's `via`).
    pub login: Box<SshTarget>,
    /// Inner SSH handshakes in flight at once through it (below sshd's `MaxStartups`).
    pub handshakes: usize,
}

/// SSH authentication method.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// A private key file (ed25519, ECDSA or RSA), optionally encrypted.
    IdentityFile {
        /// Path to the private key.
        path: PathBuf,
        /// Passphrase of the key, if it has one.
        passphrase: Option<Secret>,
    },
    /// Keys held by the running ssh-agent (`SSH_AUTH_SOCK`).
    Agent,
    /// A password (from an env var, a file, or inline from an imported Config.xml).
    Password(Secret),
}

/// Limits of one host, global defaults already merged with its overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertLimits {
    /// Total CPU usage limit.
    pub cpu: Option<Percent>,
    /// Memory used / total limit.
    pub memory: Option<Percent>,
    /// Swap used / total limit.
    pub swap: Option<Percent>,
    /// Alert when uptime goes down (a reboot).
    pub reboot: bool,
    /// Alert after this many consecutive failed rounds.
    pub unreachable_after: Option<u32>,
    /// The rules of the metric families (filesystems, interfaces, units, ...).
    pub families: FamilyLimits,
}

// --- Family alert limits (issue 22) -------------------------------------------------------

/// The family alert limits of one host, `[defaults.alerts]` merged with its own
/// `[hosts.alerts]`. [`Default`] turns every family rule off.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FamilyLimits {
    /// Limits of every mount no pattern overrides.
    pub fs: MountLimits,
    /// Per-mount overrides, the host's entries before the defaults'; per setting, the
    /// first entry whose pattern matches and that sets it wins.
    pub mounts: Vec<MountOverride>,
    /// Mount patterns no filesystem rule looks at.
    pub fs_ignore: Vec<String>,
    /// Limits of every interface no pattern overrides.
    pub iface: InterfaceLimits,
    /// Per-interface overrides, as [`FamilyLimits::mounts`].
    pub interfaces: Vec<InterfaceOverride>,
    /// Interface patterns no interface rule looks at.
    pub if_ignore: Vec<String>,
    /// Alert on each failed systemd unit (Windows: each service stopped with an error).
    pub unit_failed: bool,
    /// Unit patterns that never alert.
    pub unit_ignore: Vec<String>,
    /// Alert when a watched process has no running instance.
    pub process_missing: bool,
    /// Watch patterns that never alert.
    pub process_ignore: Vec<String>,
    /// Alert when the OOM-kill counter went up.
    pub oom_kills: bool,
    /// Alert when memory available falls below this share of the total.
    pub mem_available: Option<Percent>,
    /// Alert when open files exceed this share of `file-max`.
    pub fds: Option<Percent>,
    /// Alert when processes exceed this share of `pid_max`.
    pub procs: Option<Percent>,
    /// Alert when the agent's clock is off by more than `collect.max_clock_skew`.
    pub clock_skew: bool,
}

/// The filesystem rules of one mount.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MountLimits {
    /// Used % (of used + available) warning level.
    pub used: Option<Percent>,
    /// Used % critical level.
    pub used_critical: Option<Percent>,
    /// Inodes used % warning level.
    pub inodes: Option<Percent>,
    /// Inodes used % critical level.
    pub inodes_critical: Option<Percent>,
    /// Alert when the mount turns read-only.
    pub readonly: bool,
    /// Alert when its `statvfs` hangs.
    pub hanging: bool,
    /// Alert when it is predicted to fill up.
    pub filling: bool,
}

/// One `[[defaults.alerts.mounts]]` / `[[hosts.alerts.mounts]]` entry; `None` leaves a
/// setting to the next entry or the host's level, `Some(None)` is `"off"`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MountOverride {
    /// Glob over the mount point (`*`, `?`).
    pub pattern: String,
    /// Used % warning.
    pub used: Option<Option<Percent>>,
    /// Used % critical.
    pub used_critical: Option<Option<Percent>>,
    /// Inodes % warning.
    pub inodes: Option<Option<Percent>>,
    /// Inodes % critical.
    pub inodes_critical: Option<Option<Percent>>,
    /// Read-only rule.
    pub readonly: Option<bool>,
    /// Hanging rule.
    pub hanging: Option<bool>,
    /// Filling-up rule.
    pub filling: Option<bool>,
}

/// The interface rules of one interface.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct InterfaceLimits {
    /// Alert when the link goes down (it was up).
    pub down: bool,
    /// Alert when errors / packets over a sample interval exceed this.
    pub errors: Option<Percent>,
}

/// One `[[defaults.alerts.interfaces]]` / `[[hosts.alerts.interfaces]]` entry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InterfaceOverride {
    /// Glob over the interface name.
    pub pattern: String,
    /// Link-down rule.
    pub down: Option<bool>,
    /// Error ratio limit.
    pub errors: Option<Option<Percent>>,
}

/// Whether `pattern` (a glob with `*` and `?`) matches `text`.
fn glob(pattern: &str, text: &str) -> bool {
    edgemon_proto::report::family::options::glob_match(pattern, text)
}

impl FamilyLimits {
    /// The rules of mount `mount`, or `None` when it is ignored.
    pub fn mount(&self, mount: &str) -> Option<MountLimits> {
        if self.fs_ignore.iter().any(|p| glob(p, mount)) {
            return None;
        }
        let hits: Vec<&MountOverride> = self
            .mounts
            .iter()
            .filter(|o| glob(&o.pattern, mount))
            .collect();
        let pick = |f: fn(&MountOverride) -> Option<Option<Percent>>, own: Option<Percent>| {
            hits.iter().find_map(|o| f(o)).unwrap_or(own)
        };
        let flag = |f: fn(&MountOverride) -> Option<bool>, own: bool| {
            hits.iter().find_map(|o| f(o)).unwrap_or(own)
        };
        Some(MountLimits {
            used: pick(|o| o.used, self.fs.used),
            used_critical: pick(|o| o.used_critical, self.fs.used_critical),
            inodes: pick(|o| o.inodes, self.fs.inodes),
            inodes_critical: pick(|o| o.inodes_critical, self.fs.inodes_critical),
            readonly: flag(|o| o.readonly, self.fs.readonly),
            hanging: flag(|o| o.hanging, self.fs.hanging),
            filling: flag(|o| o.filling, self.fs.filling),
        })
    }

    /// The rules of interface `name`, or `None` when it is ignored.
    pub fn interface(&self, name: &str) -> Option<InterfaceLimits> {
        if self.if_ignore.iter().any(|p| glob(p, name)) {
            return None;
        }
        let hits: Vec<&InterfaceOverride> = self
            .interfaces
            .iter()
            .filter(|o| glob(&o.pattern, name))
            .collect();
        Some(InterfaceLimits {
            down: hits.iter().find_map(|o| o.down).unwrap_or(self.iface.down),
            errors: hits
                .iter()
                .find_map(|o| o.errors)
                .unwrap_or(self.iface.errors),
        })
    }
}

/// `[alert]`'s settings of the family rules that are the same for every host.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyPolicy {
    /// The least-squares window of the filling-up prediction.
    pub fill_window: Duration,
    /// Predicted full within this: warning.
    pub fill_warning: Duration,
    /// Predicted full within this: critical.
    pub fill_critical: Duration,
    /// The prediction only counts while available space is below this share.
    pub fill_below: Percent,
    /// The prediction must hold this long before it fires.
    pub fill_hold: Duration,
    /// `collect.interval`, which turns `fill_hold` into samples.
    pub interval: Duration,
    /// `collect.max_clock_skew`, the limit of `clock-skew`.
    pub max_clock_skew: Duration,
}

impl Default for FamilyPolicy {
    /// The shipped defaults (12 h window, 24 h / 4 h horizons, below 40 %, held 1 h).
    fn default() -> FamilyPolicy {
        FamilyPolicy {
            fill_window: Duration::from_secs(12 * 3600),
            fill_warning: Duration::from_secs(24 * 3600),
            fill_critical: Duration::from_secs(4 * 3600),
            fill_below: Percent::new(40.0).unwrap_or(Percent::ZERO),
            fill_hold: Duration::from_secs(3600),
            interval: Duration::from_secs(60),
            max_clock_skew: Duration::from_secs(300),
        }
    }
}

// --- end of family alert limits ------------------------------------------------------------

/// One monitored host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// Unique name (used in mail, status and the central database).
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Which agent it runs (`hosts[].os`).
    pub os: HostOs,
    /// Address where alerts about this host are mailed.
    pub mail: Option<String>,
    /// Its limits.
    pub alerts: AlertLimits,
    /// What its agent measures (`[collect.families]` and the host's `watch`), passed to the
    /// agent as `--options TOKEN`; a change restarts the host's resident agent.
    pub agent: AgentOptions,
}

impl HostConfig {
    /// The address shown to operators: `user@host:port`, or `local`.
    pub fn display_address(&self) -> String {
        match &self.transport {
            Transport::Local => "local".to_string(),
            Transport::Ssh(t) => format!("{}@{}", t.user, t.socket_text()),
        }
    }
}

/// `[buffer]`: the local SQLite buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferConfig {
    /// The SQLite file.
    pub path: PathBuf,
    /// Largest size of the database before data is shed.
    pub max_size: u64,
    /// Unsynced samples older than this are shed (and recorded).
    pub max_unsynced_age: Duration,
    /// Synced samples are kept locally this long.
    pub keep_synced: Duration,
    /// Free space retention keeps on the buffer's filesystem.
    pub min_free: MinFree,
}

/// `buffer.min_free`: the free space retention keeps on the buffer's filesystem, shedding
/// synced data first and then the oldest unsynced samples (recorded as drops).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFree {
    /// The smaller of 5% of the filesystem and 64 MiB: 5% is the usual root reserve of small
    /// disks; on large ones 64 MiB is minutes of growth for thousands of hosts, and more
    /// would shed data the disk could hold.
    Auto,
    /// A fixed number of bytes.
    Bytes(u64),
    /// A percentage of the filesystem's size.
    Percent(f64),
}

impl MinFree {
    /// The bound in bytes on a filesystem of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            MinFree::Auto => (total / 20).min(64 << 20),
            MinFree::Bytes(b) => b,
            MinFree::Percent(p) => (total as f64 * p / 100.0) as u64,
        }
    }
}

/// `[sync]`: the central MySQL database.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    /// `mysql://user:password@host:port/db`, one or more (the nodes of one cluster, tried in
    /// order; never empty once resolved); secrets because they may hold a password.
    pub urls: Vec<Secret>,
    /// Time between two sync passes.
    pub interval: Duration,
    /// Samples per MySQL transaction.
    pub batch_size: usize,
    /// Cap of the exponential backoff after errors.
    pub max_backoff: Duration,
    /// Connect and read/write timeout towards MySQL.
    pub timeout: Duration,
    /// When sync may send (`sync.schedule`).
    pub schedule: crate::sync::schedule::Schedule,
    /// The zone of `schedule`'s times (`sync.timezone`).
    pub timezone: crate::sync::schedule::Zone,
    /// Cap of the sync rate (`sync.rate_limit`).
    pub rate_limit: crate::sync::pace::RateLimit,
}

/// TLS towards the SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a local relay).
    None,
    /// STARTTLS after connecting (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
}

/// An SMTP server.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpConfig {
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// TLS mode.
    pub tls: SmtpTls,
    /// Login, if the server wants one.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<Secret>,
    /// Connect and command timeout.
    pub timeout: Duration,
}

/// Where mail goes.
#[derive(Debug, Clone, PartialEq)]
pub struct MailConfig {
    /// Sender address.
    pub from: String,
    /// Recipients of every alert, beside the host's own address.
    pub recipients: Vec<String>,
    /// SMTP, or `None` for files under `<data_dir>/mail`.
    pub smtp: Option<SmtpConfig>,
    /// Directory for the file transport.
    pub file_dir: PathBuf,
    /// Most mails per recipient per `rate_window`; beyond that, one summary.
    pub rate_limit: u32,
    /// Window of `rate_limit`.
    pub rate_window: Duration,
}

/// `[alert]`: lifecycle policy.
#[derive(Debug, Clone)]
pub struct AlertPolicy {
    /// Consecutive breaching samples before an alert fires.
    pub fire_after: u32,
    /// An alert clears when the value drops below `limit - clear_margin`.
    pub clear_margin: f64,
    /// Reminder interval while firing.
    pub repeat: Duration,
    /// Window in which flips are counted for flap detection.
    pub flap_window: Duration,
    /// Flips within `flap_window` that mark an alert flapping.
    pub flap_threshold: u32,
    /// When more than this share of a round's hosts is unreachable, one `site-unreachable`
    /// alert goes to the operators instead of one per host.
    pub site_unreachable_share: f64,
    /// Fewest hosts in a round for site awareness to apply.
    pub site_min_hosts: u32,
    /// The operators are mailed when time-to-first-loss falls below this (zero: never).
    pub loss_horizon: Duration,
    /// The family rules' settings shared by every host (filling-up, clock skew).
    pub families: FamilyPolicy,
}

/// A `[[silence]]` entry: a weekly window (UTC) in which matching alerts are not mailed.
#[derive(Debug, Clone, PartialEq)]
pub struct WeeklySilence {
    /// Hosts covered; empty for every host.
    pub hosts: Vec<String>,
    /// Rules covered; empty for every rule.
    pub rules: Vec<String>,
    /// Start, minutes after Monday 00:00 UTC.
    pub start: u32,
    /// End, minutes after Monday 00:00 UTC (before `start` when it wraps over Sunday night).
    pub end: u32,
    /// The window as written.
    pub weekly: String,
    /// Why.
    pub comment: String,
}

/// Minutes in a week.
const WEEK_MIN: i64 = 7 * 24 * 60;

impl WeeklySilence {
    /// Parses `"Sat 22:00-Sun 06:00"` (days Mon..Sun, 24-hour UTC times) into minutes
    /// after Monday 00:00.
    pub fn parse_window(text: &str) -> Result<(u32, u32), String> {
        let point = |p: &str| -> Result<u32, String> {
            let (day, time) = p
                .trim()
                .split_once(' ')
                .ok_or_else(|| format!("{p:?}: expected DAY HH:MM"))?;
            let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
            let d = days
                .iter()
                .position(|x| day.trim().to_ascii_lowercase().starts_with(x))
                .ok_or_else(|| format!("{day:?}: expected a day Mon..Sun"))?;
            let (h, m) = time
                .trim()
                .split_once(':')
                .ok_or_else(|| format!("{time:?}: expected HH:MM"))?;
            let h: u32 = h.parse().map_err(|_| format!("{time:?}: expected HH:MM"))?;
            let m: u32 = m.parse().map_err(|_| format!("{time:?}: expected HH:MM"))?;
            if h > 23 || m > 59 {
                return Err(format!("{time:?}: not a time of day"));
            }
            Ok(d as u32 * 1440 + h * 60 + m)
        };
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?}: expected \"Sat 22:00-Sun 06:00\""))?;
        let (start, end) = (point(a)?, point(b)?);
        if start == end {
            return Err(format!("{text:?}: the window is empty"));
        }
        Ok((start, end))
    }

    /// The window in force at `now` (Unix ms), as (start, end) Unix ms, if any.
    pub fn window_at(&self, now: i64) -> Option<(i64, i64)> {
        // 1970-01-01 was a Thursday: three days after a Monday.
        let minute = (now.div_euclid(60_000) + 3 * 1440).rem_euclid(WEEK_MIN);
        let (start, end) = (i64::from(self.start), i64::from(self.end));
        let into = (minute - start).rem_euclid(WEEK_MIN);
        let length = (end - start).rem_euclid(WEEK_MIN);
        if into >= length {
            return None;
        }
        let begin = (now.div_euclid(60_000) - into) * 60_000;
        Some((begin, begin + length * 60_000))
    }
}

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Listen address; `None` when off (the default).
    pub listen: Option<SocketAddr>,
}

/// `[web]`: the status page and its JSON API.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Listen address; `None` when off (the default).
    pub listen: Option<SocketAddr>,
    /// The HTTP basic-auth password; always `Some` when `listen` is not a
    /// loopback address (the configuration is refused otherwise).
    pub password: Option<Secret>,
    /// Deadline of one request (page, API, `/metrics`), from accept to the last byte.
    pub request_timeout: Duration,
}
