//! Configuration: a TOML file plus `EDGEMON__SECTION__KEY` environment
//! overrides, read with the `config` crate into the raw `file::ConfigFile`
//! (serde, unknown keys refused), then validated once into [`Config`],
//! reporting every problem at once with file, key path and line.
//!
//! Every key is defined once, in `keys.rs`: its default, type, bounds,
//! environment name and documentation (see there for how to add one).
//!
//! Relative paths in the file are relative to the current working directory
//! (see `resolve.rs`). Also owns the import of the original Config.xml format
//! (`xml_import`). It does not open files other than the configuration and
//! the secret and key files it names.

pub mod ansible_import;
mod error;
mod families;
mod family_alerts;
pub mod file;
pub mod host_import;
mod hosts;
mod keys;
mod model;
mod resolve;
pub mod secret;
mod source_map;
pub mod ssh_import;
pub mod units;
pub mod xml_import;

pub mod commands;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

pub use error::{ConfigError, ConfigErrors};
pub use hosts::parse_address;
pub(crate) use keys::PRUNE_MIN_AGE;
pub use model::*;

/// Loads `path` with the process environment's overrides and validates it.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let cwd = std::env::current_dir().map_err(|err| {
        ConfigErrors::single(
            path.display().to_string(),
            format!("no working directory: {err}"),
        )
    })?;
    let resolved = load_with(path, &env, &cwd)?;
    for warning in &resolved.warnings {
        tracing::warn!("{warning}");
    }
    if resolved.inline_secrets {
        warn_if_readable(path);
    }
    Ok(resolved.config)
}

/// [`load`] with an explicit environment and working directory (tests).
pub(crate) fn load_with(
    path: &Path,
    env: &HashMap<String, String>,
    cwd: &Path,
) -> Result<resolve::Resolved, ConfigErrors> {
    let label = path.display().to_string();
    let source = std::fs::read_to_string(cwd.join(path))
        .map_err(|err| ConfigErrors::single(label.clone(), format!("cannot read: {err}")))?;
    let checked = source_map::check(&label, &source);
    let (overrides, env_errors) = file::environment(env);
    let mut errors = checked.errors;
    errors.extend(env_errors);
    let whole_file = |message: String| ConfigError {
        file: label.clone(),
        key_path: String::new(),
        line: None,
        message,
    };
    let merged = match file::layer(&checked.table, &overrides) {
        Ok(merged) => merged,
        Err(err) => {
            errors.push(whole_file(err.to_string()));
            return Err(ConfigErrors(errors));
        }
    };
    let raw: file::ConfigFile = match toml::Value::Table(merged.clone()).try_into() {
        Ok(raw) => raw,
        Err(err) => {
            errors.push(whole_file(err.to_string()));
            return Err(ConfigErrors(errors));
        }
    };
    match resolve::resolve(raw, &merged, path, &checked.map, env, cwd) {
        Ok(resolved) if errors.is_empty() => Ok(resolved),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(more) => {
            // A value is checked once by its key and again where it is
            // read (an inherited default once per host): report it once.
            for error in more {
                if !errors.contains(&error) {
                    errors.push(error);
                }
            }
            Err(ConfigErrors(errors))
        }
    }
}

/// `config/edgemon.toml` if it exists (relative to the working directory),
/// else `/etc/edgemon/edgemon.toml` if it exists.
pub fn default_path() -> Option<PathBuf> {
    ["config/edgemon.toml", "/etc/edgemon/edgemon.toml"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

/// Loads `path`, or the [`default_path`]; every CLI command starts here.
pub fn load_default_or(path: Option<&Path>) -> anyhow::Result<Config> {
    let path = match path {
        Some(path) => path.to_path_buf(),
        None => default_path().context(
            "no configuration file: pass --config FILE, or create config/edgemon.toml or /etc/edgemon/edgemon.toml",
        )?,
    };
    load(&path).map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))
}

/// Warns when a file that holds a password is readable by group or others.
fn warn_if_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "the configuration holds a password and is readable by group or others; chmod 600 it"
            );
        }
    }
}
