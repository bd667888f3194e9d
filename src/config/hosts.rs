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
                "ssh" => Transport::Ssh(self.ssh_target(host, &raw.defaults, policy, &at)),
                "local" => Transport::Local,
                other => {
                    self.error(
                        &format!("{at}.transport"),
                        format!("{other:?} is not \"ssh\" or \"local\""),
                    );
                    Transport::Local
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
    ) -> SshTarget {
        let address = match host.address.as_deref() {
            Some(address)
                if !address.is_empty()
                    && address.len() <= MAX_HOST_NAME
                    && !address.contains(|c: char| c.is_whitespace() || c.is_control()) =>
            {
                address.to_string()
            }
            Some(address) => {
                self.error(
                    &format!("{at}.address"),
                    format!("{address:?} is not a host name or IP address"),
                );
                String::new()
            }
            None => {
                self.error(
                    &format!("{at}.address"),
                    "missing: an ssh host needs an address",
                );
                String::new()
            }
        };
        let port_key = if host.port.is_some() {
            format!("{at}.port")
        } else {
            "defaults.port".to_string()
        };
        let port = self.port(&port_key, host.port.unwrap_or(defaults.port));
        let user = match host.user.as_deref().or(defaults.user.as_deref()) {
            Some(user) if !user.is_empty() => user.to_string(),
            _ => {
                self.error(
                    &format!("{at}.user"),
                    "missing: an ssh host needs a user (here or in [defaults])",
                );
                String::new()
            }
        };
        let host_key_policy = match (&host.host_key_policy, &defaults.host_key_policy) {
            (Some(text), _) => self.policy(&format!("{at}.host_key_policy"), text),
            (None, Some(text)) => self.policy("defaults.host_key_policy", text),
            (None, None) => policy,
        };
        let auth = self.auth(host, defaults, at);
        SshTarget {
            address,
            port,
            user,
            auth,
            host_key_policy,
        }
    }

    fn auth(&mut self, host: &HostSection, defaults: &DefaultsSection, at: &str) -> Auth {
        let own = host.identity_file.is_some()
            || host.use_agent.is_some()
            || host.password.is_some()
            || host.password_env.is_some()
            || host.password_file.is_some();
        // (key prefix for messages, identity file, passphrase env, agent, password env, password file)
        let (prefix, identity, passphrase_env, agent, password_env, password_file) = if own {
            (
                at.to_string(),
                host.identity_file.as_deref(),
                host.identity_passphrase_env
                    .as_deref()
                    .or(defaults.identity_passphrase_env.as_deref()),
                host.use_agent == Some(true),
                host.password_env.as_deref(),
                host.password_file.as_deref(),
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
        let inline = if own { host.password.as_deref() } else { None };
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
