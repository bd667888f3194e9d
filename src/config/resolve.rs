//! Validation of the raw [`ConfigFile`] into the resolved [`Config`], once,
//! collecting every problem instead of stopping at the first.
//!
//! Each check that fails records a [`ConfigError`] (with the key's line from
//! the [`SourceMap`], or the environment variable that set it) and returns a
//! placeholder so that checking goes on; the placeholders never escape,
//! because any error makes [`resolve`] return the whole list instead.
//!
//! Path rule: every relative path (data_dir, buffer path, known_hosts,
//! identity and secret files) is relative to the current working directory
//! of the edgemon process, and is made absolute here. Installed configs use
//! absolute paths; the repo's `config/edgemon.toml` is meant to be run from
//! the repo root, so its `data_dir = "var"` is `<repo>/var`.
//!
//! Host entries are resolved in `hosts.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::ConfigError;
use super::file::{self, ConfigFile};
use super::keys::{self, Checked, Raw};
use super::model::*;
use super::secret::{Secret, url_has_password};
use super::source_map::SourceMap;
use super::units;

/// Checks values, applies defaults and reports problems for one file.
pub(crate) struct Resolver<'a> {
    /// How the file is named in messages.
    pub(crate) file: String,
    map: &'a SourceMap,
    /// The process environment (a snapshot).
    pub(crate) env: &'a HashMap<String, String>,
    cwd: PathBuf,
    /// Every problem found so far.
    pub(crate) errors: Vec<ConfigError>,
    /// Things worth a warning, not worth refusing the file.
    pub(crate) warnings: Vec<String>,
    /// The file itself holds a password (inline host password or sync URL).
    pub(crate) inline_secrets: bool,
}

/// A resolved configuration and its warnings.
pub(crate) struct Resolved {
    pub(crate) config: Config,
    pub(crate) warnings: Vec<String>,
    pub(crate) inline_secrets: bool,
}

/// Validates `raw` (read from `source`, layered into `merged`) into a [`Config`].
pub(crate) fn resolve(
    raw: ConfigFile,
    merged: &toml::Table,
    source: &Path,
    map: &SourceMap,
    env: &HashMap<String, String>,
    cwd: &Path,
) -> Result<Resolved, Vec<ConfigError>> {
    let mut r = Resolver {
        file: source.display().to_string(),
        map,
        env,
        cwd: cwd.to_path_buf(),
        errors: Vec::new(),
        warnings: Vec::new(),
        inline_secrets: false,
    };
    r.check_every_value(merged);
    let appliance = r.appliance(&raw);
    let collect = r.collect(&raw);
    let families = r.families(&raw.collect.families);
    let hosts = r.hosts(&raw, collect.host_key_policy, &families);
    let buffer = BufferConfig {
        path: match &raw.buffer.path {
            Some(path) => r.path(path),
            None => appliance.data_dir.join("buffer.sqlite"),
        },
        max_size: r.size("buffer.max_size", &raw.buffer.max_size),
        max_unsynced_age: r.duration("buffer.max_unsynced_age", &raw.buffer.max_unsynced_age),
        keep_synced: r.duration("buffer.keep_synced", &raw.buffer.keep_synced),
        min_free: r.min_free("buffer.min_free", &raw.buffer.min_free),
    };
    let sync = r.sync(&raw);
    r.schedule_against_retention(&sync, &buffer);
    let mail = r.mail(&raw, &appliance.data_dir);
    let alert = AlertPolicy {
        fire_after: r.count("alert.for", raw.alert.fire_after),
        clear_margin: r.number("alert.clear_margin", raw.alert.clear_margin),
        repeat: r.duration("alert.repeat", &raw.alert.repeat),
        flap_window: r.duration("alert.flap_window", &raw.alert.flap_window),
        flap_threshold: r.count("alert.flap_threshold", raw.alert.flap_threshold),
        site_unreachable_share: r.number(
            "alert.site_unreachable_share",
            raw.alert.site_unreachable_share,
        ),
        site_min_hosts: r.count("alert.site_min_hosts", raw.alert.site_min_hosts),
        loss_horizon: r.duration("alert.loss_horizon", &raw.alert.loss_horizon),
        families: r.family_policy(&raw.alert, collect.interval, collect.max_clock_skew),
    };
    let metrics = MetricsConfig {
        listen: r.listen("metrics.listen", raw.metrics.listen.as_deref()),
    };
    let web = r.web(&raw.web);
    let central = r.central(&raw.central);
    let silences = r.silences(&raw, &hosts);
    if !r.errors.is_empty() {
        return Err(r.errors);
    }
    Ok(Resolved {
        config: Config {
            source: r.cwd.join(source),
            appliance,
            collect,
            hosts,
            buffer,
            sync,
            mail,
            alert,
            silences,
            metrics,
            web,
            central,
        },
        warnings: r.warnings,
        inline_secrets: r.inline_secrets,
    })
}

impl Resolver<'_> {
    /// `[[silence]]` entries: known hosts and rules, a valid weekly window.
    fn silences(&mut self, raw: &ConfigFile, hosts: &[HostConfig]) -> Vec<WeeklySilence> {
        const RULES: [&str; 8] = [
            "cpu",
            "memory",
            "swap",
            "reboot",
            "unreachable",
            "site-unreachable",
            "bastion-unreachable",
            "time-to-first-loss",
        ];
        let mut out = Vec::new();
        for (n, s) in raw.silence.iter().enumerate() {
            let names = s.hosts.clone().unwrap_or_default();
            for (k, name) in names.iter().enumerate() {
                if !hosts.iter().any(|h| &h.name == name) {
                    self.error(
                        &format!("silence[{n}].hosts[{k}]"),
                        format!("no host {name:?} in [[hosts]]"),
                    );
                }
            }
            let rules = s.rules.clone().unwrap_or_default();
            for (k, rule) in rules.iter().enumerate() {
                if !RULES.contains(&rule.as_str()) {
                    self.error(
                        &format!("silence[{n}].rules[{k}]"),
                        format!("unknown rule {rule:?}; rules are {}", RULES.join(", ")),
                    );
                }
            }
            let Some(weekly) = &s.weekly else {
                self.error(
                    &format!("silence[{n}].weekly"),
                    "missing: a weekly window such as \"Sat 22:00-Sun 06:00\" (UTC)",
                );
                continue;
            };
            match WeeklySilence::parse_window(weekly) {
                Ok((start, end)) => out.push(WeeklySilence {
                    hosts: names,
                    rules,
                    start,
                    end,
                    weekly: weekly.clone(),
                    comment: s.comment.clone().unwrap_or_default(),
                }),
                Err(why) => self.error(&format!("silence[{n}].weekly"), why),
            }
        }
        out
    }

    /// Records a problem at `key_path`: in the environment variable that set
    /// it if there is one, else in the file at the key's line.
    pub(crate) fn error(&mut self, key_path: &str, message: impl Into<String>) {
        let variable = keys::env_name(key_path).filter(|name| self.env.contains_key(name));
        let (file, line) = match variable {
            Some(name) => (format!("${name}"), None),
            None => (self.file.clone(), self.map.line_of(key_path)),
        };
        self.errors.push(ConfigError {
            file,
            key_path: key_path.to_string(),
            line,
            message: message.into(),
        });
    }

    /// The line of `key_path` in the file, if known.
    pub(crate) fn line_of(&self, key_path: &str) -> Option<usize> {
        self.map.line_of(key_path)
    }

    /// A warning about `key_path`, with its line.
    pub(crate) fn warn(&mut self, key_path: &str, message: impl AsRef<str>) {
        let at = match self.map.line_of(key_path) {
            Some(line) => format!("{}:{line}", self.file),
            None => self.file.clone(),
        };
        let warning = format!("{at}: {key_path}: {}", message.as_ref());
        // Inherited settings are checked once per host; say it once.
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }

    /// A path, made absolute against the working directory.
    pub(crate) fn path(&self, text: &str) -> PathBuf {
        self.cwd.join(text)
    }

    /// Checks every value of the merged configuration against its key's
    /// kind and bounds (`keys::KEYS`), whether or not anything reads it, then
    /// the cross-key rules (`keys::RELATIONS`).
    fn check_every_value(&mut self, merged: &toml::Table) {
        let mut durations: HashMap<&str, Duration> = HashMap::new();
        for key in keys::KEYS {
            for (path, value) in instances(merged, key.path) {
                match keys::check_value(key, raw(value)) {
                    Ok(Checked::Duration(duration)) => {
                        durations.insert(key.path, duration);
                    }
                    Ok(_) => {}
                    Err(message) => self.error(&path, message),
                }
            }
        }
        for rule in keys::RELATIONS {
            if let (Some(value), Some(other)) = (durations.get(rule.key), durations.get(rule.other))
            {
                let least = other.saturating_mul(rule.factor);
                if *value < least {
                    self.error(
                        rule.key,
                        format!(
                            "{} must be at least {} x {} ({} x {} = {}): {}",
                            keys::format_duration(*value),
                            rule.factor,
                            rule.other,
                            rule.factor,
                            keys::format_duration(*other),
                            keys::format_duration(least),
                            rule.why
                        ),
                    );
                }
            }
        }
    }

    /// `buffer.min_free`: `"auto"`, a percentage of the filesystem below 50%, or a size.
    fn min_free(&mut self, key_path: &str, text: &str) -> MinFree {
        let trimmed = text.trim();
        if trimmed.eq_ignore_ascii_case("auto") {
            return MinFree::Auto;
        }
        if let Some(number) = trimmed.strip_suffix('%') {
            return match number.trim().parse::<f64>() {
                Ok(p) if (0.0..50.0).contains(&p) => MinFree::Percent(p),
                _ => {
                    self.error(
                        key_path,
                        format!("{text:?} must be a percentage from 0% to below 50%, a size like \"64MiB\", or \"auto\""),
                    );
                    MinFree::Auto
                }
            };
        }
        match units::parse_size(trimmed) {
            Ok(bytes) => MinFree::Bytes(bytes),
            Err(message) => {
                self.error(
                    key_path,
                    format!("{message}, a percentage like \"5%\", or \"auto\""),
                );
                MinFree::Auto
            }
        }
    }

    /// Checks `value` against the key at `key_path`; records the problem
    /// (once: `check_every_value` saw the same value) and returns `None`.
    fn checked(&mut self, key_path: &str, value: Raw<'_>) -> Option<Checked> {
        let Some(key) = keys::find(key_path) else {
            // A key read here but missing from the table: loud, never a silent zero.
            self.error(
                key_path,
                "internal error: this key is missing from src/config/keys.rs",
            );
            return None;
        };
        match keys::check_value(key, value) {
            Ok(checked) => Some(checked),
            Err(message) => {
                self.error(key_path, message);
                None
            }
        }
    }

    /// A duration within the bounds of `key_path`.
    pub(crate) fn duration(&mut self, key_path: &str, text: &str) -> Duration {
        match self.checked(key_path, Raw::Text(text)) {
            Some(Checked::Duration(duration)) => duration,
            _ => Duration::ZERO,
        }
    }

    /// A size in bytes within the bounds of `key_path`.
    pub(crate) fn size(&mut self, key_path: &str, text: &str) -> u64 {
        match self.checked(key_path, Raw::Text(text)) {
            Some(Checked::Size(bytes)) => bytes,
            _ => 0,
        }
    }

    /// A count within the bounds of `key_path`.
    pub(crate) fn count(&mut self, key_path: &str, value: i64) -> u32 {
        match self.checked(key_path, Raw::Int(value)) {
            Some(Checked::Int(count)) => u32::try_from(count).unwrap_or(0),
            _ => 0,
        }
    }

    /// A number within the bounds of `key_path` (for the other files of this module).
    pub(crate) fn number_checked(&mut self, key_path: &str, value: f64) -> f64 {
        self.number(key_path, value)
    }

    /// A number within the bounds of `key_path`.
    fn number(&mut self, key_path: &str, value: f64) -> f64 {
        match self.checked(key_path, Raw::Number(value)) {
            Some(Checked::Number(number)) => number,
            _ => 0.0,
        }
    }

    /// A TCP port, 1 to 65535.
    pub(crate) fn port(&mut self, key_path: &str, value: i64) -> u16 {
        match self.checked(key_path, Raw::Int(value)) {
            Some(Checked::Int(port)) => u16::try_from(port).unwrap_or(0),
            _ => 0,
        }
    }

    pub(crate) fn limit(&mut self, key_path: &str, text: &str) -> Option<units::Percent> {
        units::parse_limit(text).unwrap_or_else(|message| {
            self.error(key_path, message);
            None
        })
    }

    pub(crate) fn policy(&mut self, key_path: &str, text: &str) -> HostKeyPolicy {
        self.checked(key_path, Raw::Text(text));
        match text {
            "accept-new" => HostKeyPolicy::AcceptNew,
            _ => HostKeyPolicy::Strict,
        }
    }

    /// A mail address, checked as an RFC 5322 addr-spec (`local@domain`).
    pub(crate) fn mail_address(&mut self, key_path: &str, text: &str) -> String {
        if !is_mail_address(text) {
            self.error(
                key_path,
                format!("{text:?} is not a mail address like name@example.org"),
            );
        }
        text.to_string()
    }

    /// The value of the environment variable named by `key_path`.
    pub(crate) fn env_secret(&mut self, key_path: &str, name: &str) -> Secret {
        match self.env.get(name) {
            Some(value) => Secret::new(value.clone()),
            None => {
                self.error(key_path, format!("environment variable {name} is not set"));
                Secret::new("")
            }
        }
    }

    /// The content of a secret file, without its trailing newline.
    pub(crate) fn file_secret(&mut self, key_path: &str, text: &str) -> Secret {
        let path = self.path(text);
        match std::fs::read_to_string(&path) {
            Ok(content) => Secret::new(content.trim_end_matches(['\r', '\n'])),
            Err(err) => {
                self.error(key_path, format!("cannot read {}: {err}", path.display()));
                Secret::new("")
            }
        }
    }

    fn appliance(&mut self, raw: &ConfigFile) -> ApplianceConfig {
        let id = match raw.appliance.id.as_deref() {
            None => None,
            Some("") => {
                self.error(
                    "appliance.id",
                    "empty: remove the key to use an id derived from /etc/machine-id, or set a unique one",
                );
                None
            }
            Some(id)
                if id.len() > 64
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) =>
            {
                self.error(
                    "appliance.id",
                    format!("{id:?} must be 1-64 letters, digits, '.', '_' or '-'"),
                );
                None
            }
            Some(id) => Some(id.to_string()),
        };
        ApplianceConfig {
            id,
            data_dir: self.path(&raw.appliance.data_dir),
        }
    }

    fn collect(&mut self, raw: &ConfigFile) -> CollectConfig {
        let c = &raw.collect;
        if !c.agent_dir.starts_with('/') && !c.agent_dir.starts_with("~/") {
            self.error(
                "collect.agent_dir",
                format!(
                    "{:?} must be an absolute path on the remote host, or start with ~/ \
                     (the login user's home there)",
                    c.agent_dir
                ),
            );
        }
        CollectConfig {
            interval: self.duration("collect.interval", &c.interval),
            concurrency: self.count("collect.concurrency", c.concurrency) as usize,
            connect_timeout: self.duration("collect.connect_timeout", &c.connect_timeout),
            auth_timeout: self.duration("collect.auth_timeout", &c.auth_timeout),
            command_timeout: self.duration("collect.command_timeout", &c.command_timeout),
            known_hosts: c.known_hosts.as_deref().map(|path| self.path(path)),
            host_key_policy: self.policy("collect.host_key_policy", &c.host_key_policy),
            agent_dir: c.agent_dir.clone(),
            persistent_sessions: c.persistent_sessions,
            resident_agent: c.resident_agent,
            agent_idle_timeout: self.duration("collect.agent_idle_timeout", &c.agent_idle_timeout),
            max_reply_bytes: self.size("collect.max_reply_size", &c.max_reply_size),
            max_clock_skew: self.duration("collect.max_clock_skew", &c.max_clock_skew),
        }
    }

    fn sync(&mut self, raw: &ConfigFile) -> SyncConfig {
        let s = &raw.sync;
        let set: Vec<&str> = [
            ("sync.url", s.url.is_some()),
            ("sync.urls", s.urls.is_some()),
            ("sync.url_env", s.url_env.is_some()),
            ("sync.url_file", s.url_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, present)| present.then_some(key))
        .collect();
        // (URL, the key to name when it is wrong.)
        let urls: Vec<(Secret, String)> = match (&s.url, &s.urls, &s.url_env, &s.url_file) {
            _ if set.len() > 1 => {
                let names: Vec<&str> = set.iter().map(|k| &k[5..]).collect();
                self.error(
                    set[1],
                    format!(
                        "set only one of url, urls, url_env and url_file (found {})",
                        names.join(" and ")
                    ),
                );
                Vec::new()
            }
            (Some(url), None, None, None) => {
                if url_has_password(url) {
                    self.inline_secrets = true;
                }
                vec![(Secret::new(url.clone()), "sync.url".to_string())]
            }
            (None, Some(list), None, None) => {
                if list.is_empty() {
                    self.error("sync.urls", "is empty: list at least one mysql:// URL");
                }
                if list.iter().any(|url| url_has_password(url)) {
                    self.inline_secrets = true;
                }
                list.iter()
                    .enumerate()
                    .map(|(i, url)| (Secret::new(url.clone()), format!("sync.urls[{i}]")))
                    .collect()
            }
            (None, None, Some(name), None) => {
                let errors = self.errors.len();
                let text = self.env_secret("sync.url_env", name);
                let urls = split_urls(&text, "sync.url_env");
                if urls.is_empty() && self.errors.len() == errors {
                    self.error(
                        "sync.url_env",
                        "holds no URL (mysql://user:password@host:port/db)",
                    );
                }
                urls
            }
            (None, None, None, Some(path)) => {
                let errors = self.errors.len();
                let text = self.file_secret("sync.url_file", path);
                let urls = split_urls(&text, "sync.url_file");
                if urls.is_empty() && self.errors.len() == errors {
                    self.error(
                        "sync.url_file",
                        "holds no URL (mysql://user:password@host:port/db)",
                    );
                }
                urls
            }
            _ => {
                self.error(
                    "sync.url",
                    "missing: set url, urls, url_env or url_file (mysql://user:password@host:port/db)",
                );
                Vec::new()
            }
        };
        self.check_urls(&urls);
        let urls = urls.into_iter().map(|(url, _)| url).collect();
        SyncConfig {
            urls,
            interval: self.duration("sync.interval", &s.interval),
            batch_size: self.count("sync.batch_size", s.batch_size) as usize,
            max_backoff: self.duration("sync.max_backoff", &s.max_backoff),
            timeout: self.duration("sync.timeout", &s.timeout),
            schedule: self.schedule("sync.schedule", &s.schedule),
            timezone: self.zone("sync.timezone", &s.timezone),
            rate_limit: self.rate_limit("sync.rate_limit", &s.rate_limit),
        }
    }

    /// `sync.schedule`: "always" or weekly windows (see `sync::schedule`).
    fn schedule(&mut self, key_path: &str, text: &str) -> crate::sync::schedule::Schedule {
        crate::sync::schedule::Schedule::parse(text).unwrap_or_else(|err| {
            self.error(key_path, err);
            crate::sync::schedule::Schedule::always()
        })
    }

    /// `sync.timezone`: `local` or `UTC` (the choice is checked with every value's bounds).
    fn zone(&mut self, _key_path: &str, text: &str) -> crate::sync::schedule::Zone {
        if text == "UTC" {
            crate::sync::schedule::Zone::Utc
        } else {
            crate::sync::schedule::Zone::Local
        }
    }

    /// `sync.rate_limit`: `off`, rows/s or bytes/s.
    fn rate_limit(&mut self, key_path: &str, text: &str) -> crate::sync::pace::RateLimit {
        crate::sync::pace::RateLimit::parse(text).unwrap_or_else(|err| {
            self.error(key_path, err);
            crate::sync::pace::RateLimit::Off
        })
    }

    /// Refuses a schedule that stays closed longer than `buffer.max_unsynced_age`: retention
    /// would shed unsynced samples before the next window opens, every week.
    fn schedule_against_retention(&mut self, sync: &SyncConfig, buffer: &BufferConfig) {
        let now = crate::clock::now_ms();
        if let Some(gap) = sync.schedule.longest_gap(now, &sync.timezone)
            && gap >= buffer.max_unsynced_age
        {
            self.error(
                "sync.schedule",
                format!(
                    "stays closed for up to {} while buffer.max_unsynced_age is {}: samples would be shed \
                     (recorded as drops) before the window opens; widen the windows or raise max_unsynced_age",
                    humantime::format_duration(gap),
                    humantime::format_duration(buffer.max_unsynced_age)
                ),
            );
        }
    }

    /// Each URL is a mysql:// URL naming a database; a list names one database (the nodes of
    /// one cluster) and each server once. Messages never echo a password: a URL that does not
    /// parse is named by its key (and its place in `url_env` or `url_file`), one that parses
    /// as `mysql://user@host:port/db`.
    fn check_urls(&mut self, urls: &[(Secret, String)]) {
        let mut seen: Vec<(String, String)> = Vec::new();
        for (i, (url, key)) in urls.iter().enumerate() {
            let text = url.expose();
            let label = if key.ends_with(']') || urls.len() == 1 {
                String::new()
            } else {
                format!("URL {} of {}: ", i + 1, urls.len())
            };
            if !text.starts_with("mysql://") {
                self.error(
                    key,
                    format!("{label}must start with mysql:// (mysql://user:password@host:port/db)"),
                );
                continue;
            }
            if text["mysql://".len()..].contains("mysql://") {
                self.error(
                    key,
                    format!("{label}holds several URLs: separate them with spaces or newlines"),
                );
                continue;
            }
            let opts = match mysql::Opts::from_url(text) {
                Ok(opts) => opts,
                Err(err) => {
                    let why = err.to_string().replace(text, "the URL");
                    self.error(key, format!("{label}not a valid mysql:// URL: {why}"));
                    continue;
                }
            };
            let server = format!("{}:{}", opts.get_ip_or_hostname(), opts.get_tcp_port());
            let database = opts.get_db_name().unwrap_or("").to_string();
            let shown = format!(
                "mysql://{}@{server}/{database}",
                opts.get_user().unwrap_or("")
            );
            if seen.iter().any(|(s, _)| *s == server) {
                self.error(
                    key,
                    format!("{label}{shown}: server {server} is listed twice"),
                );
            } else if let Some((_, first)) = seen.first()
                && *first != database
            {
                self.error(
                    key,
                    format!(
                        "{label}{shown} names database '{database}' but the first URL names '{first}': \
                         the URLs must be nodes of one cluster holding one database"
                    ),
                );
            }
            seen.push((server, database));
        }
    }

    fn mail(&mut self, raw: &ConfigFile, data_dir: &Path) -> MailConfig {
        let from = self.mail_address("mail.from", &raw.mail.from);
        let recipients = raw
            .mail
            .recipients
            .iter()
            .enumerate()
            .map(|(index, to)| self.mail_address(&format!("mail.recipients[{index}]"), to))
            .collect();
        let smtp = raw.smtp.as_ref().map(|smtp| self.smtp(smtp));
        MailConfig {
            from,
            recipients,
            smtp,
            file_dir: data_dir.join("mail"),
            rate_limit: self.count("mail.rate_limit", raw.mail.rate_limit),
            rate_window: self.duration("mail.rate_window", &raw.mail.rate_window),
        }
    }

    fn smtp(&mut self, raw: &file::SmtpSection) -> SmtpConfig {
        let tls_text = raw.tls.as_deref().unwrap_or(keys::default_text("smtp.tls"));
        self.checked("smtp.tls", Raw::Text(tls_text));
        let tls = match tls_text {
            "none" => SmtpTls::None,
            "implicit" => SmtpTls::Implicit,
            _ => SmtpTls::StartTls,
        };
        let default_port = match tls {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
        };
        let host = raw.host.clone().unwrap_or_else(|| {
            self.error(
                "smtp.host",
                "missing: [smtp] needs a host (remove [smtp] to write mail to files)",
            );
            String::new()
        });
        let password = match (&raw.password_env, &raw.password_file) {
            (Some(name), None) => Some(self.env_secret("smtp.password_env", name)),
            (None, Some(path)) => Some(self.file_secret("smtp.password_file", path)),
            (None, None) => None,
            (Some(_), Some(_)) => {
                self.error(
                    "smtp.password_env",
                    "set only one of password_env and password_file",
                );
                None
            }
        };
        if raw.username.is_some() != password.is_some() {
            self.error(
                "smtp.username",
                "username and a password (password_env or password_file) go together",
            );
        }
        SmtpConfig {
            host,
            port: self.port("smtp.port", raw.port.unwrap_or(default_port)),
            tls,
            username: raw.username.clone(),
            password,
            timeout: self.duration(
                "smtp.timeout",
                raw.timeout
                    .as_deref()
                    .unwrap_or(keys::default_text("smtp.timeout")),
            ),
        }
    }

    fn listen(&mut self, key_path: &str, text: Option<&str>) -> Option<SocketAddr> {
        let text = text.filter(|text| !text.is_empty() && *text != "off")?;
        match text.parse() {
            Ok(address) => Some(address),
            Err(_) => {
                self.error(
                    key_path,
                    format!("{text:?} is not an address like 127.0.0.1:9100"),
                );
                None
            }
        }
    }

    /// `[central]`: the key table bounds the retention (0s, or at least `edgemon central
    /// prune`'s minimum, since anything younger is live data).
    fn central(&mut self, raw: &file::CentralSection) -> CentralConfig {
        let retention = self.duration("central.retention", &raw.retention);
        CentralConfig {
            retention: (!retention.is_zero()).then_some(retention),
        }
    }

    /// `[web]`: a listen address off loopback needs a password, since the
    /// page shows the site's hosts and their errors.
    fn web(&mut self, raw: &file::WebSection) -> WebConfig {
        let listen = self.listen("web.listen", raw.listen.as_deref());
        let errors_before = self.errors.len();
        let password = raw
            .password_file
            .as_deref()
            .map(|path| self.file_secret("web.password_file", path));
        let unreadable = self.errors.len() > errors_before;
        if !unreadable
            && password
                .as_ref()
                .is_some_and(|secret| secret.expose().is_empty())
        {
            self.error("web.password_file", "the password file is empty");
        }
        if let Some(address) = listen
            && !address.ip().is_loopback()
            && password.is_none()
        {
            self.error(
                "web.listen",
                format!(
                    "{address} is not a loopback address: set web.password_file \
                     (HTTP basic auth) or listen on 127.0.0.1"
                ),
            );
        }
        let request_timeout = self.duration("web.request_timeout", &raw.request_timeout);
        WebConfig {
            listen,
            password,
            request_timeout,
        }
    }
}

/// A basic RFC 5322 addr-spec check: `local@domain`, no spaces or specials,
/// dot-separated non-empty labels.
pub(crate) fn is_mail_address(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let dot_atoms = |part: &str, allowed: &dyn Fn(char) -> bool| {
        !part.is_empty()
            && part
                .split('.')
                .all(|atom| !atom.is_empty() && atom.chars().all(allowed))
    };
    dot_atoms(local, &atext)
        && dot_atoms(domain, &|c: char| c.is_ascii_alphanumeric() || c == '-')
        && domain.len() <= 253
}

/// The values of the key at `path` in `merged`, each with its concrete path:
/// one for `collect.interval`, one per entry for `hosts[].port`.
fn instances<'a>(merged: &'a toml::Table, path: &str) -> Vec<(String, &'a toml::Value)> {
    match path.split_once("[].") {
        Some((array, rest)) => {
            let Some(entries) = lookup(merged, array).and_then(toml::Value::as_array) else {
                return Vec::new();
            };
            entries
                .iter()
                .enumerate()
                .filter_map(|(index, entry)| {
                    let table = entry.as_table()?;
                    let value = lookup(table, rest)?;
                    Some((format!("{array}[{index}].{rest}"), value))
                })
                .collect()
        }
        None => lookup(merged, path)
            .map(|value| vec![(path.to_string(), value)])
            .unwrap_or_default(),
    }
}

/// The value at the dotted `path` in `table`.
fn lookup<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let (first, rest) = match path.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    let value = table.get(first)?;
    match rest {
        Some(rest) => lookup(value.as_table()?, rest),
        None => Some(value),
    }
}

fn raw(value: &toml::Value) -> Raw<'_> {
    match value {
        toml::Value::String(text) => Raw::Text(text),
        toml::Value::Integer(number) => Raw::Int(*number),
        toml::Value::Float(number) => Raw::Number(*number),
        toml::Value::Boolean(_) => Raw::Flag,
        _ => Raw::Other,
    }
}

/// The URLs of `url_env` or `url_file`: separated by whitespace (one per line in a file);
/// blank lines and lines starting with `#` are skipped. Each is named by `key`.
fn split_urls(text: &Secret, key: &str) -> Vec<(Secret, String)> {
    text.expose()
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .map(|url| (Secret::new(url), key.to_string()))
        .collect()
}
