//! The edgemon wire, shared by the collector and the agent: the encrypted
//! envelope (`envelope`) and the stats XML report (`report`).
//!
//! Nothing here does IO or is async: bytes in, values out, so that both sides
//! and the fuzzers use exactly the same code.

pub mod envelope;
pub mod report;
