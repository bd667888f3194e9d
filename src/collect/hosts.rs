//! `edgemon hosts trust NAME` and `edgemon hosts export`: the operator's
//! side of host-key pinning. Trusting connects to the host, shows the key it
//! presents now and pins it in place of the old one; exporting prints the
//! pins as an OpenSSH known_hosts file. The pins live in
//! `<data_dir>/host-keys` (see `ssh::hostkeys`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

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

/// `edgemon hosts trust NAME`: pins the key host `name` presents now, replacing its old pin.
pub fn trust(config: &Config, name: &str, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let host = config
        .hosts
        .iter()
        .find(|h| h.name == name)
        .with_context(|| format!("no host named {name:?} in {}", config.source.display()))?;
    let Transport::Ssh(target) = &host.transport else {
        anyhow::bail!("host {name} uses the local transport and has no SSH host key");
    };
    let timeout = config.collect.connect_timeout + config.collect.auth_timeout;
    let blob = ssh::fetch_host_key(target, timeout)
        .map_err(|e| anyhow::anyhow!("host {name}: {}", e.message))?;
    let known_name = hostkeys::known_hosts_name(&target.address, target.port);
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
        hostkeys::fingerprint(&blob),
        store.path().display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `edgemon hosts export`: the pins as known_hosts lines on `out`.
pub fn export(config: &Config, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let text = store(config).export()?;
    out.write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
