//! Family `units`: the systemd units in the `failed` state, keyed by unit name.
//!
//! Only failed units are members, so a healthy host reports an empty section ("measured,
//! none"); a host without systemd reports no section at all. `sub` is the unit's sub-state
//! (`failed`, `auto-restart`, ...), `result` systemd's result (`exit-code`, `signal`,
//! `timeout`, `oom-kill`, ...) where known.

use super::{FamilySpec, Field, Kind, Member, Typed, t};

/// The spec.
pub const SPEC: FamilySpec = FamilySpec {
    id: 5,
    name: "units",
    member: "unit",
    key: "name",
    fields: &[
        Field {
            name: "sub",
            kind: Kind::Text,
            unit: "",
            doc: "sub-state",
            counter: false,
        },
        Field {
            name: "result",
            kind: Kind::Text,
            unit: "",
            doc: "why it failed (exit-code, signal, timeout, oom-kill, ...)",
            counter: false,
        },
    ],
    doc: "systemd units in the failed state",
};

/// Index of `sub`.
pub const SUB: usize = 0;
/// Index of `result`.
pub const RESULT: usize = 1;

/// One failed unit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FailedUnit {
    /// Unit name (the key), e.g. `postgresql.service`.
    pub name: String,
    /// Sub-state.
    pub sub: Option<String>,
    /// Result.
    pub result: Option<String>,
}

impl Typed for FailedUnit {
    const SPEC: &'static FamilySpec = &SPEC;

    fn to_member(&self) -> Member {
        Member {
            key: super::clip(&self.name).to_owned(),
            values: vec![t(&self.sub), t(&self.result)],
        }
    }

    fn from_member(m: &Member) -> FailedUnit {
        FailedUnit {
            name: m.key.clone(),
            sub: m.text(SUB).map(str::to_owned),
            result: m.text(RESULT).map(str::to_owned),
        }
    }
}
