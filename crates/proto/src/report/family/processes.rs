//! Family `processes`: one member per watched process of the host's configuration, keyed by
//! the watch's name, with how many running processes match it (0: missing).
//!
//! What a watch matches is in [`super::options::Watch`]; the agent counts every process
//! matching, by its name (`/proc/PID/comm`) or its command line (`/proc/PID/cmdline`).

use super::{FamilySpec, Field, Kind, Member, Typed, u};

/// The spec.
pub const SPEC: FamilySpec = FamilySpec {
    id: 6,
    name: "processes",
    member: "proc",
    key: "name",
    fields: &[Field {
        name: "count",
        kind: Kind::U64,
        unit: "count",
        doc: "running processes that match the watch",
        counter: false,
    }],
    doc: "watched processes and how many are running",
};

/// Index of `count`.
pub const COUNT: usize = 0;

/// One watched process.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Watched {
    /// The watch's name (the key).
    pub name: String,
    /// Matching processes running.
    pub count: Option<u64>,
}

impl Typed for Watched {
    const SPEC: &'static FamilySpec = &SPEC;

    fn to_member(&self) -> Member {
        Member {
            key: super::clip(&self.name).to_owned(),
            values: vec![u(self.count)],
        }
    }

    fn from_member(m: &Member) -> Watched {
        Watched {
            name: m.key.clone(),
            count: m.u64(COUNT),
        }
    }
}
