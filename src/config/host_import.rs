//! `edgemon hosts import`: the hosts sites already keep, as `[[hosts]]` and
//! `[[bastions]]` TOML to merge into a configuration (like `config
//! import-xml`). Two sources: an OpenSSH client config (`ssh_import.rs`) and
//! an Ansible inventory, INI or YAML (`ansible_import.rs`). Both produce an
//! [`Import`]: logins (address, port, user, identity file), each host's
//! jump chain, and every construct that could not be mapped, with where it
//! was; [`Import::render`] prints the TOML with that list as comments at its
//! top (and the command prints it on stderr too), so nothing is dropped
//! silently. What a host does not set comes from the `[defaults]` of the
//! configuration it is merged into. This module only converts text: the
//! result is checked by `config check` like any file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::hosts::{is_bastion_name, normalize_host_name};

/// What `--from` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// An OpenSSH client config (`~/.ssh/config`).
    SshConfig,
    /// An Ansible inventory, INI or YAML.
    Ansible,
}

/// `edgemon hosts import --from KIND FILE`: the TOML on stdout, the not-mapped list on stderr;
/// exit 2 when the file cannot be read as that kind.
pub fn command(from: Source, file: &Path) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (import, kind) = match from {
        Source::SshConfig => (super::ssh_import::import(&text), "ssh_config"),
        Source::Ansible => match super::ansible_import::import(&text) {
            Ok(import) => (import, "Ansible inventory"),
            Err(why) => {
                eprintln!("{}: {why}", file.display());
                return Ok(ExitCode::from(2));
            }
        },
    };
    print!("{}", import.render(&format!("{} ({kind})", file.display())));
    for line in &import.unmapped {
        eprintln!("{}: not mapped: {line}", file.display());
    }
    eprintln!(
        "{}: {} hosts, {} bastions imported; {} constructs not mapped",
        file.display(),
        import.hosts.len(),
        import.bastions.len(),
        import.unmapped.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Where and how to log in, as a source file said it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Login {
    /// Host name or address (as written; an IPv6 address without brackets).
    pub address: String,
    /// Port, when the source set one.
    pub port: Option<u16>,
    /// User, when the source set one.
    pub user: Option<String>,
    /// Private key file, when the source set one.
    pub identity_file: Option<String>,
    /// `strict` or `accept-new`, when the source said.
    pub host_key_policy: Option<&'static str>,
}

/// One imported host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Its name (the alias or inventory name).
    pub name: String,
    /// How to log in; `None` for the local transport.
    pub login: Option<Login>,
    /// Bastion names to pass through, outermost first.
    pub via: Vec<String>,
}

/// What an import found.
#[derive(Debug, Default)]
pub struct Import {
    /// The hosts, in source order.
    pub hosts: Vec<Host>,
    /// The bastions by name.
    pub bastions: BTreeMap<String, Login>,
    /// What could not be mapped: `where: what (why)`.
    pub unmapped: Vec<String>,
}

impl Import {
    /// Records a construct that has no edgemon equivalent.
    pub fn unmapped(&mut self, line: impl Into<String>) {
        let line = line.into();
        if !self.unmapped.contains(&line) {
            self.unmapped.push(line);
        }
    }

    /// The bastion for jump `login` (`alias` when the jump named a known host): an existing
    /// one with the same login, else a new one named after it.
    pub fn bastion(&mut self, alias: &str, login: Login) -> String {
        if let Some((name, _)) = self.bastions.iter().find(|(_, l)| **l == login) {
            return name.clone();
        }
        let base = bastion_name(alias);
        let mut name = base.clone();
        let mut n = 2;
        while self.bastions.contains_key(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        self.bastions.insert(name.clone(), login);
        name
    }

    /// The TOML to merge: `[[bastions]]` then `[[hosts]]`, with the unmapped constructs listed
    /// as comments first. `source` names the file and format for the header.
    pub fn render(&self, source: &str) -> String {
        let mut out = format!(
            "# Imported from {source} by `edgemon hosts import`.\n\
             # Merge into edgemon.toml: what a host or bastion does not set (user, credentials)\n\
             # comes from [defaults]. Check the result with `edgemon config check`.\n"
        );
        if self.unmapped.is_empty() {
            out.push_str("# Everything in the source was mapped.\n");
        } else {
            out.push_str("# NOT MAPPED (edit by hand where it matters):\n");
            for line in &self.unmapped {
                let _ = writeln!(out, "#   {line}");
            }
        }
        for (name, login) in &self.bastions {
            let _ = write!(out, "\n[[bastions]]\nname = {}\n", quoted(name));
            write_login(&mut out, login);
        }
        for host in &self.hosts {
            let _ = write!(out, "\n[[hosts]]\nname = {}\n", quoted(&host.name));
            match &host.login {
                Some(login) => write_login(&mut out, login),
                None => out.push_str("transport = \"local\"\n"),
            }
            if !host.via.is_empty() {
                let via: Vec<String> = host.via.iter().map(|v| quoted(v)).collect();
                let _ = writeln!(out, "via = [{}]", via.join(", "));
            }
        }
        out
    }

    /// Keeps the first host of each name (after normalising) and lists the others.
    pub fn dedup(&mut self) {
        let mut seen = std::collections::HashSet::new();
        let mut kept = Vec::with_capacity(self.hosts.len());
        let mut dropped = Vec::new();
        for mut host in std::mem::take(&mut self.hosts) {
            match normalize_host_name(&host.name) {
                Ok(name) if seen.insert(name.clone()) => {
                    host.name = name;
                    kept.push(host);
                }
                Ok(name) => dropped.push(format!("host {name}: listed twice; the first is kept")),
                Err(why) => dropped.push(format!("host {:?}: {why}", host.name)),
            }
        }
        self.hosts = kept;
        for line in dropped {
            self.unmapped(line);
        }
    }
}

fn write_login(out: &mut String, login: &Login) {
    let _ = writeln!(out, "address = {}", quoted(&login.address));
    if let Some(port) = login.port {
        let _ = writeln!(out, "port = {port}");
    }
    if let Some(user) = &login.user {
        let _ = writeln!(out, "user = {}", quoted(user));
    }
    if let Some(key) = &login.identity_file {
        let _ = writeln!(out, "identity_file = {}", quoted(key));
    }
    if let Some(policy) = login.host_key_policy {
        let _ = writeln!(out, "host_key_policy = {}", quoted(policy));
    }
}

fn quoted(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// A valid bastion name made of `text` (other characters become `-`).
fn bastion_name(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    if !is_bastion_name(&name) {
        name = "jump".to_string();
    }
    name
}

/// One hop of a ProxyJump list: `[user@]host[:port]` or `ssh://[user@]host[:port]`.
pub fn parse_jump(text: &str) -> Result<Login, String> {
    let spec = text.trim();
    let spec = spec.strip_prefix("ssh://").unwrap_or(spec);
    let (user, rest) = match spec.rsplit_once('@') {
        Some((user, rest)) if !user.is_empty() => (Some(user.to_string()), rest),
        _ => (None, spec),
    };
    let (address, port) =
        super::hosts::parse_address(rest).map_err(|why| format!("jump host {text:?}: {why}"))?;
    Ok(Login {
        address,
        port,
        user,
        identity_file: None,
        host_key_policy: None,
    })
}

/// The jump hosts named in ssh arguments (`-J a,b`, `-o ProxyJump=a,b`, or a ProxyCommand
/// `ssh -W %h:%p [user@]jump`), comma-separated as ProxyJump writes them, and the arguments
/// that are something else (for the not-mapped list).
pub fn jumps_in_ssh_args(args: &str) -> (Option<String>, Vec<String>) {
    let words = shell_words(args);
    let mut i = 0;
    let mut found = None;
    let mut other = Vec::new();
    while i < words.len() {
        let word = &words[i];
        let next = words.get(i + 1).cloned();
        if word == "-J" {
            found = next;
            i += 2;
            continue;
        }
        if let Some(j) = word.strip_prefix("-J") {
            found = Some(j.to_string());
            i += 1;
            continue;
        }
        let option = if word == "-o" {
            i += 1;
            next
        } else {
            word.strip_prefix("-o").map(str::to_string)
        };
        match option {
            Some(option) => {
                let (key, value) = option
                    .split_once('=')
                    .or_else(|| option.split_once(' '))
                    .unwrap_or((option.as_str(), ""));
                match key.trim().to_ascii_lowercase().as_str() {
                    "proxyjump" => found = Some(value.trim().to_string()),
                    "proxycommand" => match jump_of_proxy_command(value) {
                        Ok(spec) => found = Some(spec),
                        Err(why) => other.push(why),
                    },
                    _ => other.push(format!("-o {option}")),
                }
            }
            None => other.push(word.clone()),
        }
        i += 1;
    }
    (found, other)
}

/// `ssh -W %h:%p [-q] [-p PORT] [-l USER] [user@]jump` as a ProxyJump hop.
pub fn jump_of_proxy_command(command: &str) -> Result<String, String> {
    let words = shell_words(command);
    let not =
        || format!("ProxyCommand {command:?} (only `ssh -W %h:%p [user@]host` maps to a jump)");
    if words.first().map(String::as_str) != Some("ssh") {
        return Err(not());
    }
    let (mut port, mut user, mut host, mut forwards) = (None, None, None, false);
    let mut i = 1;
    while i < words.len() {
        match words[i].as_str() {
            "-W" => {
                forwards = words.get(i + 1).map(String::as_str) == Some("%h:%p");
                i += 1;
            }
            "-q" | "-T" | "-N" | "-A" | "-C" => {}
            "-p" => {
                port = words.get(i + 1).cloned();
                i += 1;
            }
            "-l" => {
                user = words.get(i + 1).cloned();
                i += 1;
            }
            w if w.starts_with('-') => return Err(not()),
            w => host = Some(w.to_string()),
        }
        i += 1;
    }
    let (Some(host), true) = (host, forwards) else {
        return Err(not());
    };
    let mut spec = match user {
        Some(u) if !host.contains('@') => format!("{u}@{host}"),
        _ => host,
    };
    if let Some(port) = port {
        spec = format!("{spec}:{port}");
    }
    Ok(spec)
}

/// Splits on white space outside single or double quotes (quotes removed).
pub fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut any = false;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            (None, c) => word.push(c),
        }
    }
    if any || !word.is_empty() {
        words.push(word);
    }
    words
}

/// `~/x` as the importing user's `$HOME/x` (edgemon does not expand `~` in local paths).
pub fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{}/{rest}", home.trim_end_matches('/')),
        _ => path.to_string(),
    }
}
