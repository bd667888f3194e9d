//! `edgemon hosts trust NAME` and `edgemon hosts export`: the operator's
//! side of host-key pinning. Trusting connects to the host, shows the key it
//! presents now and pins it in place of the old one; with `--fingerprint` it
//! pins only a key with that fingerprint and otherwise pins nothing and names
//! the key it was shown. Exporting prints the pins as an OpenSSH known_hosts
//! file. The pins live in
//! `<data_dir>/host-keys` (see `ssh::hostkeys`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;

use super::ssh::{self, hostkeys};
use crate::config::{Config, Transport};

/// The pinned host-key store of an appliance whose data directory is `data_dir`.
pub fn host_keys_path(data_dir: &Path) -> PathBuf {
    data_dir.join("host-keys")
}

fn store(config: &Config) -> hostkeys::HostKeyStore {
    hostkeys::HostKeyStore::new(
        host_keys_path(&config.appliance.data_dir),
        config.collect.known_hosts.clone(),
    )
}

/// `edgemon hosts trust NAME [--fingerprint FP]`: pins the key host `name` presents now,
/// replacing its old pin; with `expected`, only when the presented key has that fingerprint.
pub fn trust(
    config: &Config,
    name: &str,
    expected: Option<&str>,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let expected = expected.map(normalize_fingerprint).transpose()?;
    let target = match config.hosts.iter().find(|h| h.name == name) {
        Some(host) => match &host.transport {
            Transport::Ssh(target) => target.clone(),
            Transport::Local => {
                anyhow::bail!("host {name} uses the local transport and has no SSH host key")
            }
        },
        None => bastion_target(config, name).with_context(|| {
            format!(
                "no host or bastion named {name:?} in {}",
                config.source.display()
            )
        })?,
    };
    let target = &target;
    let timeout = config.collect.connect_timeout + config.collect.auth_timeout;
    // Behind bastions the tunnel checks every bastion's own pin on the way.
    let shared = ssh::Shared::new(config.collect.clone(), store(config));
    let (blob, known_name) = ssh::fetch_host_key_via(name, target, &shared, timeout)
        .map_err(|e| anyhow::anyhow!("host {name}: {}", e.message))?;
    let presented = hostkeys::fingerprint(&blob);
    if let Some(expected) = expected
        && expected != presented
    {
        anyhow::bail!(
            "host {name} ({known_name}) presents {} {presented}, not {expected}; nothing was pinned",
            hostkeys::key_type(&blob).unwrap_or("unknown"),
        );
    }
    let store = store(config);
    let replaced = store
        .trust(&known_name, &blob)
        .with_context(|| format!("pinning the host key of {name}"))?;
    let was = if replaced.is_empty() {
        "no key was pinned before".to_string()
    } else {
        format!("replacing {}", replaced.join(", "))
    };
    writeln!(
        out,
        "{name} ({known_name}): pinned {} {} in {} ({was})",
        hostkeys::key_type(&blob).unwrap_or("unknown"),
        presented,
        store.path().display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Bastion `name` as a target of its own: its login, reached through the hops before it in
/// the first chain that names it.
fn bastion_target(config: &Config, name: &str) -> Option<crate::config::SshTarget> {
    config.hosts.iter().find_map(|h| {
        let Transport::Ssh(target) = &h.transport else {
            return None;
        };
        let at = target.via.iter().position(|b| b.name == name)?;
        let mut login = (*target.via[at].login).clone();
        login.via = target.via[..at].to_vec();
        Some(login)
    })
}

/// `SHA256:` and unpadded base64, as `ssh-keygen -lf` prints it (padding is tolerated).
fn normalize_fingerprint(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    let Some(digest) = text.strip_prefix("SHA256:") else {
        anyhow::bail!(
            "--fingerprint {text:?}: expected SHA256:<base64>, as `ssh-keygen -lf` prints it"
        );
    };
    let digest = digest.trim_end_matches('=');
    let decoded = base64::engine::general_purpose::STANDARD_NO_PAD.decode(digest);
    anyhow::ensure!(
        decoded.is_ok_and(|d| d.len() == 32),
        "--fingerprint {text:?}: not a SHA-256 fingerprint (43 base64 characters after SHA256:)"
    );
    Ok(format!("SHA256:{digest}"))
}

/// `edgemon hosts export`: the pins as known_hosts lines on `out`.
pub fn export(config: &Config, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let text = store(config).export()?;
    out.write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::normalize_fingerprint;

    #[test]
    fn fingerprints_are_accepted_as_ssh_keygen_prints_them_with_or_without_padding() {
        let fp = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
        assert_eq!(normalize_fingerprint(fp).unwrap(), fp);
        assert_eq!(normalize_fingerprint(&format!(" {fp}= ")).unwrap(), fp);
        assert!(normalize_fingerprint("MD5:aa:bb").is_err());
        assert!(normalize_fingerprint("SHA256:short").is_err());
    }
}
