//! Configuration: a TOML file plus `EDGEMON__SECTION__KEY` environment
//! overrides, read with the `config` crate into the raw `file::ConfigFile`
//! (serde, unknown keys refused), then validated once into [`Config`],
//! reporting every problem at once with file, key path and line.
//!
//! Also owns the import of the original Config.xml format (`xml_import`).
//! It does not open files other than the configuration and secret files.

mod model;
pub mod secret;
pub mod units;

pub use model::*;
pub mod commands;
