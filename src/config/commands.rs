//! `edgemon config check` and `edgemon config import-xml`.

use std::path::Path;
use std::process::ExitCode;

/// `edgemon config check [FILE]`.
pub fn check(_file: Option<&Path>) -> anyhow::Result<ExitCode> {
    anyhow::bail!("config check is not available yet")
}

/// `edgemon config import-xml FILE`.
pub fn import_xml(_file: &Path) -> anyhow::Result<ExitCode> {
    anyhow::bail!("config import-xml is not available yet")
}
