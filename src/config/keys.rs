//! Every configuration key, defined once: its path, what it holds (with the
//! bounds a value must respect), its default, and one line of documentation.
//!
//! From [`KEYS`] derive: the defaults layer (`file::layer`), the schema that
//! refuses unknown keys and wrong types with their line (`source_map`), the
//! `EDGEMON__SECTION__KEY` environment names and the typed parsing of their
//! values (`file::environment`), the bounds check of every value present, whether
//! it came from the file, the environment or a default ([`check_value`],
//! called by `resolve`), and the cross-key rules in [`RELATIONS`]. Tests
//! check that every default lies within its own bounds, that the serde
//! structs in `file.rs` have exactly these keys, that every bounded key
//! refuses a value just outside its bounds, and that
//! `config/example-site.toml` documents every key.
//!
//! Paths: `section.key`, `defaults.alerts.cpu`; keys of each `[[hosts]]`
//! entry are written `hosts[].key` (they have no default and no environment
//! name: `[defaults]` is their default). Keys of the optional `[smtp]`
//! section get no layered default (a default would make the section
//! appear); `resolve` reads theirs with [`default_text`].
//!
//! # Adding a key
//!
//! 1. One entry in [`KEYS`], e.g.
//!    `duration("collect.keepalive", Some("15s"), SEC, MIN, "SSH keepalive interval.")`.
//!    That alone gives it a default, a schema entry, an environment name
//!    (`EDGEMON__COLLECT__KEEPALIVE`), its bounds (checked in the file and the
//!    environment alike, reported with file, line and key), and a row in
//!    `edgemon config keys` and README's key table (paste the command's output
//!    there; a test prints the table when README differs). A rule between
//!    two durations is one entry in [`RELATIONS`].
//! 2. The field in the raw section struct in `file.rs` (`String` for
//!    durations, sizes, limits and choices; `i64`, `bool`, `f64`,
//!    `Vec<String>`; `Option<_>` when the entry has no default). The
//!    `serde_structs_match_the_key_table` test fails until both agree.
//! 3. Where the program reads it: the field in `model.rs` and one line in
//!    `resolve.rs`, e.g. `keepalive: self.duration("collect.keepalive", &c.keepalive)`,
//!    which parses with the same bounds. A key with a grammar of its own
//!    (say a size, a percentage or `"auto"`) is a `text` entry here and is
//!    parsed and bounded by its own function in `resolve.rs`.
//! 4. A line in `config/example-site.toml` (a test checks it is there).
//!
//! This module knows no files and no environment: it describes and checks values.

use std::time::Duration;

use super::units;

/// What a key holds, with the bounds its value must respect.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A duration such as `"60s"`, from `min` to `max` inclusive.
    Duration {
        /// Smallest value.
        min: Duration,
        /// Largest value.
        max: Duration,
    },
    /// A duration that is either zero (the feature is off) or from `min` to `max` inclusive.
    DurationOrOff {
        /// Smallest value other than zero.
        min: Duration,
        /// Largest value.
        max: Duration,
    },
    /// A size such as `"1GiB"`, in bytes, from `min` to `max` inclusive.
    Size {
        /// Smallest value in bytes.
        min: u64,
        /// Largest value in bytes.
        max: u64,
    },
    /// A TOML integer from `min` to `max` inclusive.
    Int {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
    /// A TOML number (integer or float) from `min` to `max` inclusive.
    Number {
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
    },
    /// `true` or `false`.
    Bool,
    /// Free text (names, paths, addresses, URLs); `resolve` judges it.
    Text,
    /// One of the listed words.
    Choice(&'static [&'static str]),
    /// An alert limit: a percentage such as `"90%"`, or `"off"`.
    Limit,
    /// A list of strings (in the environment: comma-separated).
    TextList,
}

/// A default value, as the `config` crate's defaults layer takes it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Default {
    /// A string (also durations, sizes, limits and choices).
    Text(&'static str),
    /// An integer.
    Int(i64),
    /// A boolean.
    Flag(bool),
    /// A float.
    Number(f64),
}

/// One configuration key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Key {
    /// `section.key`, `defaults.alerts.cpu` or `hosts[].key`.
    pub(crate) path: &'static str,
    /// What it holds and its bounds.
    pub(crate) kind: Kind,
    /// The value when neither the file nor the environment sets it.
    pub(crate) default: Option<Default>,
    /// What it does, in one line.
    pub(crate) doc: &'static str,
}

/// The shortest network timeout: long enough for a loopback round trip.
const TIMEOUT_MIN: Duration = Duration::from_millis(100);
const SEC: Duration = Duration::from_secs(1);
const MIN: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const TIB: u64 = 1 << 40;

/// The shortest central retention (`central.retention`, `edgemon central prune --older-than`)
/// other than off: anything younger is live data.
pub(crate) const PRUNE_MIN_AGE: Duration = HOUR;

const fn times(d: Duration, n: u64) -> Duration {
    Duration::from_secs(d.as_secs() * n)
}

const fn text_default(default: Option<&'static str>) -> Option<Default> {
    match default {
        Some(text) => Some(Default::Text(text)),
        None => None,
    }
}

const fn duration(
    path: &'static str,
    default: Option<&'static str>,
    min: Duration,
    max: Duration,
    doc: &'static str,
) -> Key {
    Key {
        path,
        kind: Kind::Duration { min, max },
        default: text_default(default),
        doc,
    }
}

const fn duration_or_off(
    path: &'static str,
    default: &'static str,
    min: Duration,
    max: Duration,
    doc: &'static str,
) -> Key {
    Key {
        path,
        kind: Kind::DurationOrOff { min, max },
        default: Some(Default::Text(default)),
        doc,
    }
}

const fn size(
    path: &'static str,
    default: Option<&'static str>,
    min: u64,
    max: u64,
    doc: &'static str,
) -> Key {
    Key {
        path,
        kind: Kind::Size { min, max },
        default: text_default(default),
        doc,
    }
}

const fn int(
    path: &'static str,
    default: Option<i64>,
    min: i64,
    max: i64,
    doc: &'static str,
) -> Key {
    Key {
        path,
        kind: Kind::Int { min, max },
        default: match default {
            Some(value) => Some(Default::Int(value)),
            None => None,
        },
        doc,
    }
}

const fn port(path: &'static str, default: Option<i64>, doc: &'static str) -> Key {
    int(path, default, 1, 65_535, doc)
}

const fn number(path: &'static str, default: f64, min: f64, max: f64, doc: &'static str) -> Key {
    Key {
        path,
        kind: Kind::Number { min, max },
        default: Some(Default::Number(default)),
        doc,
    }
}

const fn flag(path: &'static str, default: Option<bool>, doc: &'static str) -> Key {
    Key {
        path,
        kind: Kind::Bool,
        default: match default {
            Some(value) => Some(Default::Flag(value)),
            None => None,
        },
        doc,
    }
}

const fn text(path: &'static str, default: Option<&'static str>, doc: &'static str) -> Key {
    Key {
        path,
        kind: Kind::Text,
        default: text_default(default),
        doc,
    }
}

const fn choice(
    path: &'static str,
    default: Option<&'static str>,
    words: &'static [&'static str],
    doc: &'static str,
) -> Key {
    Key {
        path,
        kind: Kind::Choice(words),
        default: text_default(default),
        doc,
    }
}

const fn limit(path: &'static str, default: Option<&'static str>, doc: &'static str) -> Key {
    Key {
        path,
        kind: Kind::Limit,
        default: text_default(default),
        doc,
    }
}

const fn list(path: &'static str, doc: &'static str) -> Key {
    Key {
        path,
        kind: Kind::TextList,
        default: None,
        doc,
    }
}

const POLICIES: &[&str] = &["strict", "accept-new"];

/// Every key, in the order of `config/example-site.toml`.
#[rustfmt::skip]
pub(crate) const KEYS: &[Key] = &[
    text("appliance.id", None, "Identifier stored with every central row; letters, digits, . _ -"),
    text("appliance.data_dir", Some("/var/lib/edgemon"), "Buffer, mail files, host-key pins and the lock file."),
    duration("collect.interval", Some("60s"), SEC, DAY, "Time between the starts of two rounds."),
    int("collect.concurrency", Some(16), 1, 1024, "Hosts collected at once."),
    duration("collect.connect_timeout", Some("10s"), TIMEOUT_MIN, times(MIN, 10), "TCP connect timeout."),
    duration("collect.auth_timeout", Some("20s"), TIMEOUT_MIN, times(MIN, 10), "SSH handshake and authentication timeout."),
    duration("collect.command_timeout", Some("60s"), TIMEOUT_MIN, HOUR, "Deadline for the agent's upload, run and reply."),
    text("collect.known_hosts", None, "OpenSSH known_hosts file to seed pinned host keys from."),
    choice("collect.host_key_policy", Some("accept-new"), POLICIES, "Unknown host keys: refused (strict) or pinned on first use."),
    text("collect.agent_dir", Some("~/.cache/edgemon"), "Directory on a Linux host for the agent: absolute, or `~/...` in the login user's home; must be private to that user (Windows hosts: always %LOCALAPPDATA%\\edgemon)."),
    flag("collect.persistent_sessions", Some(true), "Keep SSH sessions open between rounds."),
    flag("collect.resident_agent", Some(true), "Keep the agent running between rounds."),
    duration("collect.agent_idle_timeout", Some("10m"), SEC, DAY, "A resident agent exits after this long without a request."),
    size("collect.max_reply_size", Some("1MiB"), 4 * KIB, 64 * MIB, "Larger agent replies are refused."),
    duration("collect.max_clock_skew", Some("5m"), SEC, DAY, "Agent clocks further off than this are flagged."),
    int("collect.families.max_members", Some(64), 1, 1024, "Most mounts, interfaces, devices, failed units and watched processes per sample; the rest are counted as cut."),
    duration("collect.families.statfs_timeout", Some("2s"), TIMEOUT_MIN, MIN, "Deadline of the statvfs of all mounts of a sample; a mount that does not answer is reported hanging."),
    list("collect.families.fs_exclude_mounts", "Mount points not measured (globs; default /dev, /proc, /sys and below, /run/credentials/*, container storage; [] = none)."),
    list("collect.families.fs_exclude_types", "Filesystem types not measured (default: pseudo and container filesystems as node_exporter, tmpfs kept; [] = none)."),
    list("collect.families.if_exclude", "Interfaces not measured (globs; default lo, veth*, docker*, br-*, cali*, flannel*, cni*, virbr*, vnet*; [] = none)."),
    list("collect.families.dev_exclude", "Block devices not measured (globs; default loop*, ram*, zram*, sr*, fd*; [] = none)."),
    port("defaults.port", Some(22), "SSH port."),
    text("defaults.user", None, "SSH user."),
    text("defaults.identity_file", None, "Private key file (a missing file is only a warning)."),
    text("defaults.identity_passphrase_env", None, "Environment variable holding the key's passphrase."),
    text("defaults.password_env", None, "Environment variable holding the SSH password."),
    text("defaults.password_file", None, "File holding the SSH password."),
    flag("defaults.use_agent", None, "Authenticate with the keys of $SSH_AUTH_SOCK."),
    choice("defaults.host_key_policy", None, POLICIES, "Host-key policy (falls back to collect.host_key_policy)."),
    text("defaults.mail", None, "Address mailed about each host's alerts."),
    limit("defaults.alerts.cpu", Some("90%"), "CPU usage limit, or \"off\"."),
    limit("defaults.alerts.memory", Some("90%"), "Memory usage limit, or \"off\"."),
    limit("defaults.alerts.swap", Some("80%"), "Swap usage limit, or \"off\"."),
    flag("defaults.alerts.reboot", Some(true), "Alert when a host's uptime goes down."),
    int("defaults.alerts.unreachable_after", Some(3), 0, 10_000, "Failed rounds before \"unreachable\"; 0 = off."),
    text("hosts[].name", None, "Unique name (trimmed, at most 255 bytes, no control characters)."),
    text("hosts[].address", None, "Host name or IP address (ssh)."),
    port("hosts[].port", None, "SSH port."),
    text("hosts[].user", None, "SSH user."),
    choice("hosts[].transport", None, &["ssh", "local"], "\"ssh\" (the default) or \"local\" (this box, no SSH)."),
    choice("hosts[].os", None, &["auto", "linux", "windows"], "\"auto\" (the default: Windows when the SSH server's banner says OpenSSH_for_Windows), \"linux\" or \"windows\"; a local \"windows\" host runs the Windows agent under Wine (for tests)."),
    text("hosts[].identity_file", None, "Private key file."),
    text("hosts[].identity_passphrase_env", None, "Environment variable holding the key's passphrase."),
    text("hosts[].password_env", None, "Environment variable holding the SSH password."),
    text("hosts[].password_file", None, "File holding the SSH password."),
    text("hosts[].password", None, "Inline SSH password (as imported from Config.xml; discouraged)."),
    flag("hosts[].use_agent", None, "Authenticate with the keys of $SSH_AUTH_SOCK."),
    choice("hosts[].host_key_policy", None, POLICIES, "Host-key policy."),
    text("hosts[].mail", None, "Address mailed about this host's alerts."),
    list("defaults.via", "Bastions (by name) every host passes through unless it sets its own via."),
    list("hosts[].via", "Bastions to pass through, outermost first, like ProxyJump a,b (a name or a list; [] = direct)."),
    text("bastions[].name", None, "Unique name of a jump host (letters, digits, . _ -), named by via, errors and alerts."),
    text("bastions[].address", None, "Host name or IP address of the bastion, as the appliance (or the previous hop) reaches it."),
    port("bastions[].port", None, "SSH port (default defaults.port)."),
    text("bastions[].user", None, "SSH user (default defaults.user)."),
    text("bastions[].identity_file", None, "Private key file for the bastion."),
    text("bastions[].identity_passphrase_env", None, "Environment variable holding that key's passphrase."),
    text("bastions[].password_env", None, "Environment variable holding the bastion's password."),
    text("bastions[].password_file", None, "File holding the bastion's password."),
    flag("bastions[].use_agent", None, "Authenticate to the bastion with the keys of $SSH_AUTH_SOCK."),
    choice("bastions[].host_key_policy", None, POLICIES, "Host-key policy of the bastion (default defaults.host_key_policy)."),
    list("bastions[].via", "Bastions to pass through to reach this one (a chain)."),
    int("bastions[].handshakes", None, 1, 64, "Inner SSH handshakes in flight at once through it (default 8, below sshd's MaxStartups of 10)."),
    limit("hosts[].alerts.cpu", None, "CPU usage limit, or \"off\"."),
    limit("hosts[].alerts.memory", None, "Memory usage limit, or \"off\"."),
    limit("hosts[].alerts.swap", None, "Swap usage limit, or \"off\"."),
    flag("hosts[].alerts.reboot", None, "Alert when the host's uptime goes down."),
    int("hosts[].alerts.unreachable_after", None, 0, 10_000, "Failed rounds before \"unreachable\"; 0 = off."),
    list("hosts[].watch", "Processes that must run: \"sshd\" (by name), \"cmdline:GLOB\" (by command line), optionally \"NAME=\" first."),
    text("buffer.path", None, "SQLite file (default: buffer.sqlite in appliance.data_dir)."),
    size("buffer.max_size", Some("1GiB"), MIB, 4 * TIB, "Size of the buffer beyond which data is shed (and recorded)."),
    duration("buffer.max_unsynced_age", Some("30d"), MIN, times(DAY, 3650), "Unsynced samples older than this are shed (and recorded)."),
    duration("buffer.keep_synced", Some("7d"), Duration::ZERO, times(DAY, 3650), "How long synced samples stay in the buffer."),
    text("buffer.min_free", Some("auto"), "Free space kept on the buffer's filesystem: a size, a percentage below 50%, or auto (the smaller of 5% and 64MiB)."),
    text("sync.url", None, "mysql://user:password@host:port/db (or urls, url_env, url_file)."),
    list("sync.urls", "Several mysql:// URLs, the nodes of one cluster, tried in order (instead of url)."),
    text("sync.url_env", None, "Environment variable holding the URL (several: separated by spaces or newlines)."),
    text("sync.url_file", None, "File holding the URL (several: one per line)."),
    duration("sync.interval", Some("30s"), SEC, DAY, "Time between two sync passes."),
    int("sync.batch_size", Some(500), 1, 50_000, "Samples per MySQL transaction."),
    duration("sync.max_backoff", Some("30m"), SEC, DAY, "Cap of the retry backoff after errors."),
    duration("sync.timeout", Some("30s"), SEC, times(MIN, 10), "MySQL connect and read/write timeout; a dead server of urls fails over within it."),
    text("sync.schedule", Some("always"), "When sync may send: \"always\", or windows such as \"Mon-Fri 20:00-06:00, Sat-Sun *\" (a window past midnight belongs to the day it starts)."),
    choice("sync.timezone", Some("local"), &["local", "UTC"], "Zone of sync.schedule: \"local\" (the appliance's, with daylight saving time) or \"UTC\"."),
    text("sync.rate_limit", Some("off"), "Cap of the sync rate: \"off\", rows per second (\"2000 rows/s\") or bytes of samples per second (\"256KiB/s\")."),
    text("smtp.host", None, "SMTP server (without [smtp], mail goes to files)."),
    port("smtp.port", None, "SMTP port (default by tls: 25, 587, 465)."),
    choice("smtp.tls", Some("starttls"), &["none", "starttls", "implicit"], "TLS towards the server."),
    text("smtp.username", None, "Login (needs password_env or password_file)."),
    text("smtp.password_env", None, "Environment variable holding the SMTP password."),
    text("smtp.password_file", None, "File holding the SMTP password."),
    duration("smtp.timeout", Some("30s"), SEC, times(MIN, 10), "SMTP connect and command timeout."),
    text("mail.from", Some("edgemon@localhost"), "Sender address."),
    list("mail.recipients", "Recipients of every alert, besides each host's own address."),
    int("mail.rate_limit", Some(10), 1, 10_000, "Mails per recipient per window; beyond, one summary."),
    duration("mail.rate_window", Some("1h"), MIN, times(DAY, 7), "Window of mail.rate_limit."),
    int("alert.for", Some(1), 1, 1000, "Consecutive breaching samples before an alert fires."),
    number("alert.clear_margin", 5.0, 0.0, 50.0, "An alert clears below its limit minus this many points."),
    duration("alert.repeat", Some("1h"), Duration::ZERO, times(DAY, 30), "Reminder interval while firing; 0s = no reminders."),
    duration("alert.flap_window", Some("1h"), MIN, times(DAY, 7), "Window in which alert flips are counted."),
    int("alert.flap_threshold", Some(6), 2, 1000, "Flips within flap_window that mark an alert flapping."),
    number("alert.site_unreachable_share", 0.5, 0.0, 1.0, "More than this share of hosts unreachable at once: one site-unreachable alert instead of one per host."),
    int("alert.site_min_hosts", Some(4), 1, 100_000, "Fewest hosts in a round for site awareness to apply."),
    list("silence[].hosts", "Hosts a recurring silence covers; every host when absent."),
    list("silence[].rules", "Rules it covers (cpu, memory, swap, reboot, unreachable, site-unreachable, bastion-unreachable, time-to-first-loss); every rule when absent."),
    text("silence[].weekly", None, "Weekly window in UTC, e.g. \"Sat 22:00-Sun 06:00\"."),
    text("silence[].comment", None, "Why (shown in status and on the page)."),
    duration("alert.loss_horizon", Some("24h"), Duration::ZERO, times(DAY, 3650), "Mail the operators when time-to-first-loss falls below this; 0s = off."),
    // --- Family alert rules (issue 22): defaults, per-host overrides, per-mount/interface entries.
    limit("defaults.alerts.fs_used", Some("80%"), "Filesystem used (of used + available) warning level, or \"off\"."),
    limit("defaults.alerts.fs_used_critical", Some("90%"), "Filesystem used critical level, or \"off\"."),
    limit("defaults.alerts.fs_inodes", Some("80%"), "Inodes used warning level, or \"off\"."),
    limit("defaults.alerts.fs_inodes_critical", Some("90%"), "Inodes used critical level, or \"off\"."),
    flag("defaults.alerts.fs_readonly", Some(true), "Alert when a writable filesystem turns read-only."),
    flag("defaults.alerts.fs_hanging", Some(true), "Alert when a mount's statvfs hangs."),
    flag("defaults.alerts.fs_filling", Some(true), "Alert when a filesystem is predicted to fill up (alert.fill_*)."),
    list("defaults.alerts.fs_ignore", "Mount globs no filesystem rule looks at."),
    flag("defaults.alerts.if_down", Some(true), "Alert when an interface's link goes down (it was up)."),
    limit("defaults.alerts.if_errors", Some("1%"), "Interface errors / packets limit per sample interval, or \"off\"."),
    list("defaults.alerts.if_ignore", "Interface globs no interface rule looks at."),
    flag("defaults.alerts.unit_failed", Some(true), "Alert on each failed systemd unit (Windows: each service stopped with an error)."),
    list("defaults.alerts.unit_ignore", "Unit globs that never alert."),
    flag("defaults.alerts.process_missing", Some(true), "Alert when a watched process has no running instance."),
    list("defaults.alerts.process_ignore", "Watch globs that never alert."),
    flag("defaults.alerts.oom_kills", Some(true), "Alert when the OOM killer killed since the last sample."),
    limit("defaults.alerts.mem_available", Some("10%"), "Alert when memory available falls below this share of the total, or \"off\"."),
    limit("defaults.alerts.fds", Some("90%"), "Open files limit as a share of file-max, or \"off\"."),
    limit("defaults.alerts.procs", Some("90%"), "Processes limit as a share of pid_max, or \"off\"."),
    flag("defaults.alerts.clock_skew", Some(true), "Alert when the agent's clock is off by more than collect.max_clock_skew."),
    text("defaults.alerts.mounts[].mount", None, "Mount glob of a per-mount entry (the host's entries first, then these; per setting the first match wins)."),
    limit("defaults.alerts.mounts[].used", None, "Used warning level for matching mounts."),
    limit("defaults.alerts.mounts[].used_critical", None, "Used critical level for matching mounts."),
    limit("defaults.alerts.mounts[].inodes", None, "Inodes warning level for matching mounts."),
    limit("defaults.alerts.mounts[].inodes_critical", None, "Inodes critical level for matching mounts."),
    flag("defaults.alerts.mounts[].readonly", None, "Read-only rule for matching mounts."),
    flag("defaults.alerts.mounts[].hanging", None, "Hanging rule for matching mounts."),
    flag("defaults.alerts.mounts[].filling", None, "Filling-up rule for matching mounts."),
    text("defaults.alerts.interfaces[].name", None, "Interface glob of a per-interface entry."),
    flag("defaults.alerts.interfaces[].down", None, "Link-down rule for matching interfaces."),
    limit("defaults.alerts.interfaces[].errors", None, "Error ratio limit for matching interfaces."),
    limit("hosts[].alerts.fs_used", None, "Filesystem used warning level."),
    limit("hosts[].alerts.fs_used_critical", None, "Filesystem used critical level."),
    limit("hosts[].alerts.fs_inodes", None, "Inodes used warning level."),
    limit("hosts[].alerts.fs_inodes_critical", None, "Inodes used critical level."),
    flag("hosts[].alerts.fs_readonly", None, "Turned read-only rule."),
    flag("hosts[].alerts.fs_hanging", None, "Mount hanging rule."),
    flag("hosts[].alerts.fs_filling", None, "Filling-up rule."),
    list("hosts[].alerts.fs_ignore", "Mount globs to ignore (replaces the default list)."),
    flag("hosts[].alerts.if_down", None, "Link-down rule."),
    limit("hosts[].alerts.if_errors", None, "Interface error ratio limit."),
    list("hosts[].alerts.if_ignore", "Interface globs to ignore (replaces the default list)."),
    flag("hosts[].alerts.unit_failed", None, "Failed-unit rule."),
    list("hosts[].alerts.unit_ignore", "Unit globs to ignore (replaces the default list)."),
    flag("hosts[].alerts.process_missing", None, "Watched-process rule."),
    list("hosts[].alerts.process_ignore", "Watch globs to ignore (replaces the default list)."),
    flag("hosts[].alerts.oom_kills", None, "OOM-kill rule."),
    limit("hosts[].alerts.mem_available", None, "Memory available floor."),
    limit("hosts[].alerts.fds", None, "Open files limit (share of file-max)."),
    limit("hosts[].alerts.procs", None, "Processes limit (share of pid_max)."),
    flag("hosts[].alerts.clock_skew", None, "Clock offset rule."),
    text("hosts[].alerts.mounts[].mount", None, "Mount glob of a per-mount entry of this host."),
    limit("hosts[].alerts.mounts[].used", None, "Used warning level for matching mounts."),
    limit("hosts[].alerts.mounts[].used_critical", None, "Used critical level for matching mounts."),
    limit("hosts[].alerts.mounts[].inodes", None, "Inodes warning level for matching mounts."),
    limit("hosts[].alerts.mounts[].inodes_critical", None, "Inodes critical level for matching mounts."),
    flag("hosts[].alerts.mounts[].readonly", None, "Read-only rule for matching mounts."),
    flag("hosts[].alerts.mounts[].hanging", None, "Hanging rule for matching mounts."),
    flag("hosts[].alerts.mounts[].filling", None, "Filling-up rule for matching mounts."),
    text("hosts[].alerts.interfaces[].name", None, "Interface glob of a per-interface entry of this host."),
    flag("hosts[].alerts.interfaces[].down", None, "Link-down rule for matching interfaces."),
    limit("hosts[].alerts.interfaces[].errors", None, "Error ratio limit for matching interfaces."),
    duration("alert.fill_window", Some("12h"), SEC, times(DAY, 30), "Filling-up: the least-squares window over available space."),
    duration("alert.fill_warning", Some("24h"), SEC, times(DAY, 365), "Filling-up: predicted full within this is a warning."),
    duration("alert.fill_critical", Some("4h"), SEC, times(DAY, 365), "Filling-up: predicted full within this is critical."),
    number("alert.fill_below", 40.0, 0.0, 100.0, "Filling-up: only while available space is below this %."),
    duration("alert.fill_hold", Some("1h"), Duration::ZERO, times(DAY, 7), "Filling-up: the prediction must hold this long before it fires."),
    // --- end of family alert rules.
    text("metrics.listen", None, "Prometheus endpoint address, e.g. 127.0.0.1:9100; off when absent."),
    text("web.listen", None, "Status page and JSON API address, e.g. 127.0.0.1:9180; off when absent."),
    text("web.password_file", None, "File holding the page's HTTP basic-auth password; required off loopback."),
    duration("web.request_timeout", Some("10s"), SEC, times(MIN, 5), "Deadline of one request to the page or /metrics; an abandoned request's buffer read is interrupted."),
    duration_or_off("central.retention", "0s", PRUNE_MIN_AGE, times(DAY, 36_500), "The daemon prunes central rows of this appliance older than this once a day (`edgemon central prune`); 0s = off."),
];

/// Sections whose keys get no layered default, because a default would
/// make the optional section appear.
const OPTIONAL_SECTIONS: &[&str] = &["smtp."];

/// A rule between two duration keys: `key` must be at least `factor` times
/// `other`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Relation {
    /// The key that is checked (and named in the error).
    pub(crate) key: &'static str,
    /// The key it is compared with.
    pub(crate) other: &'static str,
    /// How many times `other` `key` must at least be.
    pub(crate) factor: u32,
    /// Why, for the message.
    pub(crate) why: &'static str,
}

/// Cross-key rules, checked after every key passed its own bounds.
pub(crate) const RELATIONS: &[Relation] = &[Relation {
    key: "buffer.max_unsynced_age",
    other: "sync.interval",
    factor: 2,
    why: "unsynced samples would be shed before sync had a chance to send them",
}];

/// The key at `path`; `hosts[3].port` finds `hosts[].port`.
pub(crate) fn find(path: &str) -> Option<&'static Key> {
    let normal = normalize(path);
    KEYS.iter().find(|key| key.path == normal)
}

/// `hosts[3].alerts.cpu` -> `hosts[].alerts.cpu`.
pub(crate) fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// The default as text (for keys whose default `resolve` applies itself).
pub(crate) fn default_text(path: &str) -> &'static str {
    match find(path).and_then(|key| key.default) {
        Some(Default::Text(text)) => text,
        _ => "",
    }
}

/// Keys and defaults for the `config` crate's defaults layer.
pub(crate) fn layered_defaults() -> impl Iterator<Item = (&'static str, Default)> {
    KEYS.iter()
        .filter(|key| {
            !key.path.contains('[')
                && !OPTIONAL_SECTIONS
                    .iter()
                    .any(|section| key.path.starts_with(section))
        })
        .filter_map(|key| key.default.map(|default| (key.path, default)))
}

/// The environment variable that overrides `path` (`sync.batch_size` ->
/// `EDGEMON__SYNC__BATCH_SIZE`); `None` for keys inside `[[hosts]]`.
pub(crate) fn env_name(path: &str) -> Option<String> {
    (!path.contains('[')).then(|| format!("EDGEMON__{}", path.replace('.', "__").to_uppercase()))
}

/// The key an `EDGEMON__...` variable names, if any.
pub(crate) fn from_env_name(variable: &str) -> Option<&'static Key> {
    KEYS.iter()
        .find(|key| env_name(key.path).as_deref() == Some(variable))
}

/// The key names directly under `prefix` (`""`, `collect`, `hosts[]`,
/// `defaults.alerts`), each once, in table order.
pub(crate) fn children(prefix: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for key in KEYS {
        let rest = if prefix.is_empty() {
            Some(key.path)
        } else {
            key.path
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('.'))
        };
        if let Some(rest) = rest {
            let name = rest.split(['.', '[']).next().unwrap_or(rest);
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

/// What a name under a table is, by the key table.
#[derive(Debug)]
pub(crate) enum Node {
    /// A key with a value.
    Leaf(&'static Key),
    /// A table of keys (`[collect]`, `[defaults.alerts]`).
    Table,
    /// An array of tables (`[[hosts]]`).
    Tables,
}

/// What `name` under the (normalised) table `prefix` is; `None` if unknown.
pub(crate) fn node(prefix: &str, name: &str) -> Option<Node> {
    let path = if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    };
    if let Some(key) = KEYS.iter().find(|key| key.path == path) {
        return Some(Node::Leaf(key));
    }
    let table = format!("{path}.");
    let tables = format!("{path}[].");
    if KEYS.iter().any(|key| key.path.starts_with(&tables)) {
        Some(Node::Tables)
    } else if KEYS.iter().any(|key| key.path.starts_with(&table)) {
        Some(Node::Table)
    } else {
        None
    }
}

/// A value as read from the merged configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Raw<'a> {
    /// A string.
    Text(&'a str),
    /// An integer.
    Int(i64),
    /// A float.
    Number(f64),
    /// A boolean.
    Flag,
    /// Anything else (lists are checked by type in `source_map`).
    Other,
}

/// A value that passed its key's checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Checked {
    /// A duration.
    Duration(Duration),
    /// A size in bytes.
    Size(u64),
    /// An integer.
    Int(i64),
    /// A number.
    Number(f64),
    /// Anything without bounds.
    Plain,
}

/// Checks `value` against `key`'s kind and bounds; the message is fit to
/// follow `KEY: ` in a configuration error.
pub(crate) fn check_value(key: &Key, value: Raw<'_>) -> Result<Checked, String> {
    match (key.kind, value) {
        (Kind::Duration { min, max }, Raw::Text(text)) => {
            let parsed = units::parse_duration(text)?;
            within(parsed, min, max, &format!("{text:?}"), format_duration)?;
            Ok(Checked::Duration(parsed))
        }
        (Kind::DurationOrOff { min, max }, Raw::Text(text)) => {
            let parsed = units::parse_duration(text)?;
            if !parsed.is_zero() {
                within(parsed, min, max, &format!("{text:?}"), format_duration)
                    .map_err(|message| format!("{message}, or 0s for off"))?;
            }
            Ok(Checked::Duration(parsed))
        }
        (Kind::Size { min, max }, Raw::Text(text)) => {
            let parsed = units::parse_size(text)?;
            within(parsed, min, max, &format!("{text:?}"), format_size)?;
            Ok(Checked::Size(parsed))
        }
        (Kind::Int { min, max }, Raw::Int(value)) => {
            within(value, min, max, &value.to_string(), |v| v.to_string())?;
            Ok(Checked::Int(value))
        }
        (Kind::Number { min, max }, Raw::Number(value)) => {
            if !value.is_finite() {
                return Err(format!("{value} is not a number"));
            }
            within(value, min, max, &value.to_string(), |v| v.to_string())?;
            Ok(Checked::Number(value))
        }
        (Kind::Number { .. }, Raw::Int(value)) => check_value(key, Raw::Number(value as f64)),
        (Kind::Choice(words), Raw::Text(text)) => {
            if words.contains(&text) {
                Ok(Checked::Plain)
            } else {
                let quoted: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
                Err(format!("{text:?} is not one of {}", quoted.join(", ")))
            }
        }
        (Kind::Limit, Raw::Text(text)) => units::parse_limit(text).map(|_| Checked::Plain),
        (Kind::Text, Raw::Text(_)) | (Kind::Bool, Raw::Flag) | (Kind::TextList, _) => {
            Ok(Checked::Plain)
        }
        (kind, _) => Err(format!("expected {}", expected(&kind))),
    }
}

/// The TOML type a kind is written as, for messages.
pub(crate) fn expected(kind: &Kind) -> &'static str {
    match kind {
        Kind::Int { .. } => "an integer",
        Kind::Number { .. } => "a number",
        Kind::Bool => "true or false",
        Kind::TextList => "a list of strings",
        Kind::Duration { .. } | Kind::DurationOrOff { .. } => "a duration string like \"60s\"",
        Kind::Size { .. } => "a size string like \"1MiB\"",
        Kind::Limit => "a limit string like \"90%\" or \"off\"",
        Kind::Text | Kind::Choice(_) => "a string",
    }
}

fn within<T: PartialOrd + Copy>(
    value: T,
    min: T,
    max: T,
    shown: &str,
    show: impl Fn(T) -> String,
) -> Result<(), String> {
    if value < min {
        Err(format!(
            "{shown} is below the minimum of {} (allowed: {} to {})",
            show(min),
            show(min),
            show(max)
        ))
    } else if value > max {
        Err(format!(
            "{shown} is above the maximum of {} (allowed: {} to {})",
            show(max),
            show(min),
            show(max)
        ))
    } else {
        Ok(())
    }
}

/// A duration in the largest unit that divides it (`1d`, `90s`, `100ms`),
/// as the configuration writes it.
pub(crate) fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    for (unit, scale) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if millis >= scale && millis.is_multiple_of(scale) {
            return format!("{}{unit}", millis / scale);
        }
    }
    if millis == 0 {
        "0s".to_string()
    } else {
        format!("{millis}ms")
    }
}

/// A size in the largest binary unit that divides it (`1MiB`, `4KiB`, `10B`).
pub(crate) fn format_size(bytes: u64) -> String {
    for (unit, scale) in [("TiB", TIB), ("GiB", 1 << 30), ("MiB", MIB), ("KiB", KIB)] {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{}{unit}", bytes / scale);
        }
    }
    format!("{bytes}B")
}

/// The allowed range of a key, for documentation (`1s to 1day`).
pub(crate) fn range(key: &Key) -> String {
    match key.kind {
        Kind::Duration { min, max } => {
            format!("{} to {}", format_duration(min), format_duration(max))
        }
        Kind::DurationOrOff { min, max } => {
            format!(
                "0s (off), {} to {}",
                format_duration(min),
                format_duration(max)
            )
        }
        Kind::Size { min, max } => format!("{} to {}", format_size(min), format_size(max)),
        Kind::Int { min, max } => format!("{min} to {max}"),
        Kind::Number { min, max } => format!("{min} to {max}"),
        Kind::Choice(words) => words.join(", "),
        Kind::Limit => "0% to 100%, off".to_string(),
        Kind::Bool => "true, false".to_string(),
        Kind::Text | Kind::TextList => String::new(),
    }
}

/// README's table of keys: path, default, allowed values, environment
/// variable and meaning (a test keeps README in step with it).
pub(crate) fn markdown_table() -> String {
    let mut out = String::from(
        "| key | default | allowed | environment | meaning |\n|---|---|---|---|---|\n",
    );
    for key in KEYS {
        let default = match key.default {
            Some(Default::Text(text)) => format!("`{text}`"),
            Some(Default::Int(value)) => format!("`{value}`"),
            Some(Default::Flag(value)) => format!("`{value}`"),
            Some(Default::Number(value)) => format!("`{value}`"),
            None => String::new(),
        };
        let env = env_name(key.path)
            .map(|name| format!("`{name}`"))
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{}` | {default} | {} | {env} | {} |\n",
            key.path,
            range(key),
            key.doc.replace('|', "\\|")
        ));
    }
    out
}
