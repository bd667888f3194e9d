//! The agent binary embedded in the collector at build time (see build.rs):
//! a statically linked `edgemon-agent`, so what is uploaded or run locally is
//! always the static build that matches this collector.

use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// The static `edgemon-agent` executable.
pub static AGENT: &[u8] = include_bytes!(env!("EDGEMON_AGENT_EMBED"));

/// Lowercase hex SHA-256 of [`AGENT`], computed once.
pub fn sha256_hex() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| hex::encode(Sha256::digest(AGENT)))
}
