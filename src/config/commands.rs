//! `edgemon config check`, `edgemon config import-xml` and `edgemon config
//! keys`: thin wrappers that print, and return the exit code (0 fine, 2
//! invalid configuration).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::{Config, Transport, secret::redact_url};

/// `edgemon config check [FILE]`: a one-line summary, or every error and exit 2.
pub fn check(file: Option<&Path>) -> anyhow::Result<ExitCode> {
    let path = match file {
        Some(path) => path.to_path_buf(),
        None => super::default_path().context(
            "no configuration file: give one, or create config/edgemon.toml or /etc/edgemon/edgemon.toml",
        )?,
    };
    match super::load(&path) {
        Ok(config) => {
            println!("{}", summary(&config));
            for warning in windows_warnings(&config, crate::agent_bin::WINDOWS_AGENT.is_some()) {
                println!("{warning}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for error in errors.errors() {
                println!("{error}");
            }
            eprintln!(
                "edgemon: {}: {} error(s)",
                path.display(),
                errors.errors().len()
            );
            Ok(ExitCode::from(2))
        }
    }
}

/// The one-line summary printed by `config check`.
pub fn summary(config: &Config) -> String {
    let ssh = config
        .hosts
        .iter()
        .filter(|host| matches!(host.transport, Transport::Ssh(_)))
        .count();
    let local = config.hosts.len() - ssh;
    let mail = match &config.mail.smtp {
        Some(smtp) => {
            let tls = match smtp.tls {
                super::SmtpTls::None => "plain",
                super::SmtpTls::StartTls => "starttls",
                super::SmtpTls::Implicit => "implicit tls",
            };
            format!("smtp {}:{} {tls}", smtp.host, smtp.port)
        }
        None => format!("files in {}", config.mail.file_dir.display()),
    };
    let web = match (config.web.listen, &config.web.password) {
        (Some(listen), Some(_)) => format!(", page -> http://{listen}/ (basic auth)"),
        (Some(listen), None) => format!(", page -> http://{listen}/"),
        (None, _) => String::new(),
    };
    format!(
        "config OK: {} hosts ({ssh} ssh, {local} local), sync -> {}, mail -> {mail}{web}",
        config.hosts.len(),
        config
            .sync
            .urls
            .iter()
            .map(|url| redact_url(url.expose()))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// The `config check` warnings about hosts with `os = "windows"` when this build has no
/// Windows agent (`has_windows_agent` false): one line naming them, saying how to get it. A
/// host left at `os = "auto"` is found to be Windows only when connecting, so it is not named.
pub fn windows_warnings(config: &Config, has_windows_agent: bool) -> Vec<String> {
    let windows: Vec<&str> = config
        .hosts
        .iter()
        .filter(|host| host.os == super::HostOs::Windows)
        .map(|host| host.name.as_str())
        .collect();
    if has_windows_agent || windows.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "warning: {} with os = \"windows\" ({}) will fail with agent-failed: {}",
        if windows.len() == 1 { "host" } else { "hosts" },
        windows.join(", "),
        crate::agent_bin::WindowsAgentMissing
    )]
}

/// `edgemon config import-xml FILE`: prints the TOML equivalent, or the error and exit 2.
pub fn import_xml(file: &Path) -> anyhow::Result<ExitCode> {
    let source = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    match super::xml_import::import(&source) {
        Ok(toml) => {
            print!("{toml}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("{}:{err}", file.display());
            Ok(ExitCode::from(2))
        }
    }
}

/// `edgemon config keys`: every key with its default, allowed values,
/// environment variable and meaning, as a Markdown table.
pub fn keys() -> ExitCode {
    print!("{}", super::keys::markdown_table());
    ExitCode::SUCCESS
}
