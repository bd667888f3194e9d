//! edgemon: a single-box monitoring appliance.
//!
//! Data flows config → collect (scheduler, SSH or local transport, agent
//! deployment) → envelope → report → buffer (SQLite) → sync (MySQL) and
//! alert (rules, outbox, SMTP). See ARCHITECTURE.md for the module map and
//! the invariants each module keeps.

pub mod agent_bin;
pub mod alert;
pub mod cli;
pub mod clock;
pub mod config;
pub mod identity;
pub mod logging;
pub mod schema;

pub use edgemon_proto::report;
pub mod app;
pub mod buffer;
pub mod collect;
pub mod daemon;
pub mod metrics;
pub mod shutdown;
pub mod status;
pub mod sync;
pub mod text;
pub mod web;
