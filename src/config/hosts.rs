//! Resolution of the `[[hosts]]` entries: merging each with `[defaults]`,
//! choosing exactly one SSH authentication method, and checking names,
//! addresses, ports, mail addresses and limits. Host names are normalised
//! here ([`normalize_host_name`]), for the file and for `config import-xml`.
//!
//! Merge rule: a host's own key wins over `[defaults]`. Authentication is
//! merged as a whole: if a host sets any of identity_file, use_agent,
//! password, password_env or password_file, the defaults' methods are
//! ignored for it; then exactly one method must remain.

use std::collections::HashMap;

use super::file::{AlertsSection, ConfigFile, DefaultsSection, HostSection};
use super::model::*;
use super::resolve::Resolver;
use std::net::Ipv6Addr;

impl Resolver<'_> {
    /// Every host, in file order; duplicate names are errors.
    pub(crate) fn hosts(
        &mut self,
        raw: &ConfigFile,
        policy: HostKeyPolicy,
        families: &AgentOptions,
    ) -> Vec<HostConfig> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut hosts = Vec::with_capacity(raw.hosts.len());
        let bastions = self.bastions(raw, policy);
        for (index, host) in raw.hosts.iter().enumerate() {
            let at = format!("hosts[{index}]");
            let name_key = format!("{at}.name");
            let name = match host.name.as_deref().map(normalize_host_name) {
                Some(Ok(name)) => name,
                Some(Err(message)) => {
                    self.error(&name_key, message);
                    continue;
                }
                None => {
                    self.error(&name_key, "missing: every host needs a unique name");
                    continue;
                }
            };
            if host.name.as_deref() != Some(name.as_str()) {
                self.warn(
                    &name_key,
                    format!("leading or trailing white space removed: the name is {name:?}"),
                );
            }
            if let Some(first) = seen.insert(name.clone(), index) {
                let first_key = format!("hosts[{first}].name");
                let line = match self.line_of(&first_key) {
                    Some(line) => format!(", line {line}"),
                    None => String::new(),
                };
                self.error(
                    &name_key,
                    format!(
                        "duplicate host name {name:?} (also {first_key}{line}); names are compared after trimming, as the central database does"
                    ),
                );
            }
            let transport = match host.transport.as_deref().unwrap_or("ssh") {
                "ssh" => {
                    Transport::Ssh(self.ssh_target(host, &raw.defaults, policy, &at, &bastions))
                }
                "local" => Transport::Local,
                other => {
                    self.error(
                        &format!("{at}.transport"),
                        format!("{other:?} is not \"ssh\" or \"local\""),
                    );
                    Transport::Local
                }
            };
            let os = match host.os.as_deref().unwrap_or("auto") {
                "auto" => HostOs::Auto,
                "linux" => HostOs::Linux,
                "windows" => HostOs::Windows,
                other => {
                    self.error(
                        &format!("{at}.os"),
                        format!("{other:?} is not \"auto\", \"linux\" or \"windows\""),
                    );
                    HostOs::Auto
                }
            };
            let mail = host
                .mail
                .as_deref()
                .or(raw.defaults.mail.as_deref())
                .map(|mail| {
                    let key = if host.mail.is_some() {
                        format!("{at}.mail")
                    } else {
                        "defaults.mail".to_string()
                    };
                    self.mail_address(&key, mail)
                });
            let alerts = self.limits(&host.alerts, &raw.defaults.alerts, &at);
            let agent = AgentOptions {
                watch: self.watches(&at, host.watch.as_deref().unwrap_or_default()),
                ..families.clone()
            };
            hosts.push(HostConfig {
                name,
                transport,
                os,
                mail,
                alerts,
                agent,
            });
        }
        hosts
    }

    fn ssh_target(
        &mut self,
        host: &HostSection,
        defaults: &DefaultsSection,
        policy: HostKeyPolicy,
        at: &str,
        bastions: &Bastions,
    ) -> SshTarget {
        let login = Login {
            address: host.address.as_deref(),
            port: host.port,
            user: host.user.as_deref(),
            host_key_policy: host.host_key_policy.as_deref(),
            creds: Creds {
                identity_file: host.identity_file.as_deref(),
                identity_passphrase_env: host.identity_passphrase_env.as_deref(),
                password_env: host.password_env.as_deref(),
                password_file: host.password_file.as_deref(),
                password: host.password.as_deref(),
                use_agent: host.use_agent,
            },
        };
        let mut target = self.login(&login, defaults, policy, at, "an ssh host");
        let (via, via_key) = match (&host.via, &defaults.via) {
            (Some(via), _) => (via.clone(), format!("{at}.via")),
            (None, Some(via)) => (via.clone(), "defaults.via".to_string()),
            (None, None) => (Vec::new(), String::new()),
        };
        target.via = self.chain(&via, &via_key, bastions);
        target
    }

    /// Address, port, user, host-key policy and credentials of a host or a bastion.
    fn login(
        &mut self,
        login: &Login<'_>,
        defaults: &DefaultsSection,
        policy: HostKeyPolicy,
        at: &str,
        what: &str,
    ) -> SshTarget {
        let (address, embedded_port) = match login.address {
            Some(text) => match parse_address(text) {
                Ok(parsed) => parsed,
                Err(message) => {
                    self.error(&format!("{at}.address"), message);
                    (String::new(), None)
                }
            },
            None => {
                self.error(
                    &format!("{at}.address"),
                    format!("missing: {what} needs an address"),
                );
                (String::new(), None)
            }
        };
        let port = match (login.port, embedded_port) {
            (Some(port), Some(embedded)) => {
                let port = self.port(&format!("{at}.port"), port);
                if port != embedded {
                    self.error(
                        &format!("{at}.port"),
                        format!(
                            "{port} contradicts the port {embedded} in {at}.address; set one of them"
                        ),
                    );
                }
                port
            }
            (None, Some(embedded)) => embedded,
            (Some(port), None) => self.port(&format!("{at}.port"), port),
            (None, None) => self.port("defaults.port", defaults.port),
        };
        let user = match login.user.or(defaults.user.as_deref()) {
            Some(user) if !user.is_empty() => user.to_string(),
            _ => {
                self.error(
                    &format!("{at}.user"),
                    format!("missing: {what} needs a user (here or in [defaults])"),
                );
                String::new()
            }
        };
        let host_key_policy = match (login.host_key_policy, &defaults.host_key_policy) {
            (Some(text), _) => self.policy(&format!("{at}.host_key_policy"), text),
            (None, Some(text)) => self.policy("defaults.host_key_policy", text),
            (None, None) => policy,
        };
        let auth = self.auth(&login.creds, defaults, at);
        SshTarget {
            address,
            port,
            user,
            auth,
            host_key_policy,
            via: Vec::new(),
        }
    }

    /// The `[[bastions]]` entries by name, each with its own `via` (expanded by [`chain`]).
    pub(crate) fn bastions(&mut self, raw: &ConfigFile, policy: HostKeyPolicy) -> Bastions {
        let mut out = Bastions::default();
        for (index, b) in raw.bastions.iter().enumerate() {
            let at = format!("bastions[{index}]");
            let name = match b.name.as_deref() {
                Some(name) if is_bastion_name(name) => name.to_string(),
                Some(name) => {
                    self.error(
                        &format!("{at}.name"),
                        format!(
                            "{name:?} is not a bastion name: 1 to 64 letters, digits, '.', '_' or '-'"
                        ),
                    );
                    continue;
                }
                None => {
                    self.error(
                        &format!("{at}.name"),
                        "missing: every bastion needs a unique name",
                    );
                    continue;
                }
            };
            if out.entries.contains_key(&name) {
                self.error(
                    &format!("{at}.name"),
                    format!("duplicate bastion name {name:?}"),
                );
                continue;
            }
            let login = Login {
                address: b.address.as_deref(),
                port: b.port,
                user: b.user.as_deref(),
                host_key_policy: b.host_key_policy.as_deref(),
                creds: Creds {
                    identity_file: b.identity_file.as_deref(),
                    identity_passphrase_env: b.identity_passphrase_env.as_deref(),
                    password_env: b.password_env.as_deref(),
                    password_file: b.password_file.as_deref(),
                    password: None,
                    use_agent: b.use_agent,
                },
            };
            let login = self.login(&login, &raw.defaults, policy, &at, "a bastion");
            let handshakes = match b.handshakes {
                Some(n) => self.count(&format!("{at}.handshakes"), n) as usize,
                None => DEFAULT_HANDSHAKES,
            };
            out.entries.insert(
                name.clone(),
                BastionEntry {
                    bastion: Bastion {
                        name,
                        login: Box::new(login),
                        handshakes,
                    },
                    via: b.via.clone().unwrap_or_default(),
                    at,
                },
            );
        }
        out
    }

    /// Expands `via` (names, outermost first) into the hops to pass through: each bastion's own
    /// `via` comes before it. Unknown names and cycles are errors of `key`.
    fn chain(&mut self, via: &[String], key: &str, bastions: &Bastions) -> Vec<Bastion> {
        let mut hops = Vec::new();
        for name in via {
            let mut stack = Vec::new();
            if let Err(message) = expand(name, bastions, &mut stack, &mut hops) {
                self.error(key, message);
                return Vec::new();
            }
        }
        if hops.len() > MAX_HOPS {
            self.error(
                key,
                format!(
                    "{} hops; at most {MAX_HOPS} bastions in a chain",
                    hops.len()
                ),
            );
            return Vec::new();
        }
        hops
    }
    fn auth(&mut self, host: &Creds<'_>, defaults: &DefaultsSection, at: &str) -> Auth {
        let own = host.is_some();
        // (key prefix for messages, identity file, passphrase env, agent, password env, password file)
        let (prefix, identity, passphrase_env, agent, password_env, password_file) = if own {
            (
                at.to_string(),
                host.identity_file,
                host.identity_passphrase_env
                    .or(defaults.identity_passphrase_env.as_deref()),
                host.use_agent == Some(true),
                host.password_env,
                host.password_file,
            )
        } else {
            (
                "defaults".to_string(),
                defaults.identity_file.as_deref(),
                defaults.identity_passphrase_env.as_deref(),
                defaults.use_agent == Some(true),
                defaults.password_env.as_deref(),
                defaults.password_file.as_deref(),
            )
        };
        let inline = if own { host.password } else { None };
        let methods = [
            identity.is_some(),
            agent,
            inline.is_some() || password_env.is_some() || password_file.is_some(),
        ];
        let passwords = [
            inline.is_some(),
            password_env.is_some(),
            password_file.is_some(),
        ];
        if methods.iter().filter(|m| **m).count() != 1
            || passwords.iter().filter(|p| **p).count() > 1
        {
            self.error(
                &format!("{at}.auth"),
                "needs exactly one authentication method: identity_file, use_agent = true, or one of password_env, password_file, password",
            );
            return Auth::Agent;
        }
        if let Some(path) = identity {
            let full = self.path(path);
            if !full.is_file() {
                // A warning, not an error: configs are often written (and
                // checked) on another machine than the one holding the keys.
                self.warn(
                    &format!("{prefix}.identity_file"),
                    format!(
                        "{} does not exist here; collection from this host will fail until it does",
                        full.display()
                    ),
                );
            }
            let passphrase = passphrase_env
                .map(|name| self.env_secret(&format!("{prefix}.identity_passphrase_env"), name));
            return Auth::IdentityFile {
                path: full,
                passphrase,
            };
        }
        if agent {
            return Auth::Agent;
        }
        if let Some(password) = inline {
            self.inline_secrets = true;
            self.warn(
                &format!("{at}.password"),
                "inline password; move it to password_file or password_env",
            );
            return Auth::Password(super::secret::Secret::new(password));
        }
        if let Some(name) = password_env {
            return Auth::Password(self.env_secret(&format!("{prefix}.password_env"), name));
        }
        match password_file {
            Some(path) => {
                Auth::Password(self.file_secret(&format!("{prefix}.password_file"), path))
            }
            None => Auth::Agent,
        }
    }

    fn limits(&mut self, own: &AlertsSection, defaults: &AlertsSection, at: &str) -> AlertLimits {
        let limit =
            |resolver: &mut Self, name: &str, mine: &Option<String>, default: &Option<String>| {
                match (mine, default) {
                    (Some(text), _) => resolver.limit(&format!("{at}.alerts.{name}"), text),
                    (None, Some(text)) => resolver.limit(&format!("defaults.alerts.{name}"), text),
                    (None, None) => None,
                }
            };
        let cpu = limit(self, "cpu", &own.cpu, &defaults.cpu);
        let memory = limit(self, "memory", &own.memory, &defaults.memory);
        let swap = limit(self, "swap", &own.swap, &defaults.swap);
        let unreachable_after = match (own.unreachable_after, defaults.unreachable_after) {
            (Some(0), _) | (None, Some(0) | None) => None,
            (Some(rounds), _) => {
                Some(self.count(&format!("{at}.alerts.unreachable_after"), rounds))
            }
            (None, Some(rounds)) => Some(self.count("defaults.alerts.unreachable_after", rounds)),
        };
        AlertLimits {
            cpu,
            memory,
            swap,
            reboot: own.reboot.or(defaults.reboot).unwrap_or(true),
            unreachable_after,
            families: self.family_limits(own, defaults, at),
        }
    }
}

/// Longest host name, in bytes (the central `hosts.name` is `VARCHAR(255)`).
pub(crate) const MAX_HOST_NAME: usize = 255;

/// A host name as it is stored locally and centrally: trimmed of white
/// space, 1 to [`MAX_HOST_NAME`] bytes, no control characters.
///
/// Trimming is what makes the name unique centrally too: MySQL's
/// `utf8mb4_bin` collation is PAD SPACE, so `"box"` and `"box "` are one
/// name there while SQLite keeps them apart. Past trailing spaces that
/// collation compares code points, so nothing else needs folding.
pub(crate) fn normalize_host_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(format!("{raw:?} is empty: every host needs a unique name"));
    }
    if name.len() > MAX_HOST_NAME {
        return Err(format!(
            "host name of {} bytes is too long (at most {MAX_HOST_NAME})",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{name:?} contains the control character U+{:04X}; host names are printable text",
            u32::from(c)
        ));
    }
    Ok(name.to_string())
}

/// Inner handshakes in flight through one bastion unless `handshakes` says otherwise: below
/// sshd's default `MaxStartups` of 10, so a round never trips its throttling.
pub const DEFAULT_HANDSHAKES: usize = 8;

/// Most bastions in one chain.
const MAX_HOPS: usize = 8;

/// What a host or a bastion says about where and how to log in.
struct Login<'a> {
    address: Option<&'a str>,
    port: Option<i64>,
    user: Option<&'a str>,
    host_key_policy: Option<&'a str>,
    creds: Creds<'a>,
}

/// The authentication keys of a host or a bastion.
struct Creds<'a> {
    identity_file: Option<&'a str>,
    identity_passphrase_env: Option<&'a str>,
    password_env: Option<&'a str>,
    password_file: Option<&'a str>,
    password: Option<&'a str>,
    use_agent: Option<bool>,
}

impl Creds<'_> {
    fn is_some(&self) -> bool {
        self.identity_file.is_some()
            || self.use_agent.is_some()
            || self.password.is_some()
            || self.password_env.is_some()
            || self.password_file.is_some()
    }
}

/// The resolved `[[bastions]]`, by name.
#[derive(Default)]
pub(crate) struct Bastions {
    entries: HashMap<String, BastionEntry>,
}

struct BastionEntry {
    bastion: Bastion,
    via: Vec<String>,
    at: String,
}

fn expand(
    name: &str,
    bastions: &Bastions,
    stack: &mut Vec<String>,
    hops: &mut Vec<Bastion>,
) -> Result<(), String> {
    let Some(entry) = bastions.entries.get(name) else {
        let mut known: Vec<&String> = bastions.entries.keys().collect();
        known.sort();
        return Err(format!(
            "no bastion named {name:?} in [[bastions]] (known: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    };
    if stack.iter().any(|s| s == name) {
        return Err(format!(
            "bastion {name:?} is reached through itself ({} -> {name}; see {}.via)",
            stack.join(" -> "),
            entry.at
        ));
    }
    stack.push(name.to_string());
    for inner in &entry.via {
        expand(inner, bastions, stack, hops)?;
    }
    stack.pop();
    hops.push(entry.bastion.clone());
    Ok(())
}

/// Whether `name` can name a bastion: 1 to 64 letters, digits, `.`, `_` or `-` (it appears
/// in error messages as `via bastion NAME:`).
pub(crate) fn is_bastion_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Splits an address as written: `host`, `192.0.2.1`, `::1`, `[::1]`, `host:2222` or
/// `[::1]:2222`, into the address to connect to (no brackets) and the port it names, if any.
pub fn parse_address(text: &str) -> Result<(String, Option<u16>), String> {
    let bad = |why: &str| format!("{text:?} is not a host name or IP address: {why}");
    if text.is_empty() || text.len() > MAX_HOST_NAME {
        return Err(bad("1 to 255 bytes"));
    }
    if text.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains white space or a control character"));
    }
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(bad(&format!("{p:?} is not a port (1 to 65535)"))),
        }
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(|| bad("'[' without ']'"))?;
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(bad(&format!(
                "{inner:?} in brackets is not an IPv6 address"
            )));
        }
        return match after {
            "" => Ok((inner.to_string(), None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((inner.to_string(), Some(port(p)?))),
                None => Err(bad("expected :PORT after ']'")),
            },
        };
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        return Ok((text.to_string(), None));
    }
    match text.split_once(':') {
        None => Ok((text.to_string(), None)),
        Some((host, p)) if !host.is_empty() && !p.contains(':') => {
            Ok((host.to_string(), Some(port(p)?)))
        }
        Some(_) => Err(bad("an IPv6 address with a port is written [address]:port")),
    }
}
