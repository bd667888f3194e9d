//! Metric families: the sections of a report beyond the original sample (filesystems,
//! interfaces, block devices, system limits, failed units, watched processes). This module
//! owns the one model every layer reads: a registry of [`FamilySpec`]s, each naming its
//! members' key and its fields with their kind and unit, and the generic values ([`Section`],
//! [`Member`], [`Value`]) that the report carries, the buffer stores, sync sends and the
//! rules, status, API and page read.
//!
//! Adding a family is one file here (its spec and a typed view, [`Typed`]) plus one line in
//! [`FAMILIES`]; the agent measures it in a module of its own; the buffer, sync, API and
//! metrics layers work from the spec alone; the central schema gets its child table in a
//! migration; rules that page on it are a module of the alert layer.
//!
//! It does no IO and knows nothing of XML: [`super::parse`] and [`super::Report::to_xml`]
//! read and write sections from the specs.
//!
//! # Semantics
//!
//! - A section absent from a report means "not measured" (an older agent, a family the host
//!   does not have, an option that turned it off). A section with no members means "measured,
//!   none" (no failed unit, no watched process configured).
//! - `cut` counts members the agent did not report because of the per-family cap
//!   ([`options::AgentOptions::max_members`]); `refused` counts members the reader dropped as
//!   invalid (a value of the wrong kind, a key too long, a duplicate key). Neither is ever
//!   silent: both travel with the section to the buffer, status and page.
//! - Values are optional per field: a field that could not be measured for one member (the
//!   sizes of a hanging mount, the speed of a virtual interface) is `None`.

pub mod devices;
pub mod filesystems;
pub mod interfaces;
pub mod options;
pub mod processes;
pub mod system;
pub mod units;

use std::fmt;

/// Longest member key or text value, bytes (the central key column's width).
pub const MAX_TEXT: usize = 255;
/// Most members one section may carry when read; more are counted in [`Section::cut`].
pub const MAX_MEMBERS: usize = 1024;

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An unsigned integer: a size, a counter, a count.
    U64,
    /// A finite decimal number: a percentage, a ratio.
    F64,
    /// A flag.
    Bool,
    /// Short text, at most [`MAX_TEXT`] bytes.
    Text,
}

/// One field of a family's members.
#[derive(Debug, PartialEq, Eq)]
pub struct Field {
    /// Attribute name in the report, column name in the buffer and central tables.
    pub name: &'static str,
    /// What it holds.
    pub kind: Kind,
    /// Unit (`bytes`, `percent`, `count`, `ms`, `Mbit/s`), or `""` for text and flags.
    pub unit: &'static str,
    /// One line for docs, `edgemon config keys`, the API.
    pub doc: &'static str,
    /// A cumulative counter (rates are derived from two samples; a drop means a reset).
    pub counter: bool,
}

/// A family: its names, its members' key and its fields.
#[derive(Debug, PartialEq, Eq)]
pub struct FamilySpec {
    /// Stable number, never reused: the buffer's compact encoding names the family by it.
    pub id: u8,
    /// Section element, API path and central table stem (`filesystems`).
    pub name: &'static str,
    /// Member element (`fs`).
    pub member: &'static str,
    /// The key attribute that names a member (`mount`); `""` for a singleton family.
    pub key: &'static str,
    /// Fields in their fixed order (the order of [`Member::values`]).
    pub fields: &'static [Field],
    /// One line: what the family measures.
    pub doc: &'static str,
}

impl FamilySpec {
    /// A singleton family has exactly one member, whose key is `""`.
    pub fn is_singleton(&self) -> bool {
        self.key.is_empty()
    }

    /// Index of the field named `name`.
    pub fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}

/// Every family this build knows, in report order.
pub const FAMILIES: &[&FamilySpec] = &[
    &system::SPEC,
    &filesystems::SPEC,
    &interfaces::SPEC,
    &devices::SPEC,
    &units::SPEC,
    &processes::SPEC,
];

/// The family whose section element is `name`.
pub fn by_name(name: &str) -> Option<&'static FamilySpec> {
    FAMILIES.iter().copied().find(|f| f.name == name)
}

/// The family with the stable number `id`.
pub fn by_id(id: u8) -> Option<&'static FamilySpec> {
    FAMILIES.iter().copied().find(|f| f.id == id)
}

/// One value of a field.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// For [`Kind::U64`].
    U64(u64),
    /// For [`Kind::F64`]; always finite.
    F64(f64),
    /// For [`Kind::Bool`].
    Bool(bool),
    /// For [`Kind::Text`]; at most [`MAX_TEXT`] bytes.
    Text(String),
}

impl Value {
    /// The kind this value is of.
    pub fn kind(&self) -> Kind {
        match self {
            Value::U64(_) => Kind::U64,
            Value::F64(_) => Kind::F64,
            Value::Bool(_) => Kind::Bool,
            Value::Text(_) => Kind::Text,
        }
    }

    /// Parses the report's text form of a value of `kind`; `None` when it is not one.
    pub fn parse(kind: Kind, text: &str) -> Option<Value> {
        match kind {
            Kind::U64 => text.trim().parse().ok().map(Value::U64),
            Kind::F64 => text
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Value::F64),
            Kind::Bool => match text.trim() {
                "1" | "true" => Some(Value::Bool(true)),
                "0" | "false" => Some(Value::Bool(false)),
                _ => None,
            },
            Kind::Text => (text.len() <= MAX_TEXT).then(|| Value::Text(text.to_owned())),
        }
    }

    /// The value as a number, for rules and gauges (`Bool` as 0 or 1; text has none).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::U64(v) => Some(*v as f64),
            Value::F64(v) => Some(*v),
            Value::Bool(v) => Some(f64::from(u8::from(*v))),
            Value::Text(_) => None,
        }
    }
}

impl fmt::Display for Value {
    /// The report's text form: decimal integers, shortest round-trip decimals, `1`/`0`, text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Bool(v) => f.write_str(if *v { "1" } else { "0" }),
            Value::Text(v) => f.write_str(v),
        }
    }
}

/// One member of a section: a mount, an interface, a device, a unit, a watched process.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The member's name (mount point, interface, ...); `""` in a singleton family.
    pub key: String,
    /// One slot per field of the spec, in the spec's order.
    pub values: Vec<Option<Value>>,
}

impl Member {
    /// A member of `spec` with every value absent.
    pub fn new(spec: &FamilySpec, key: impl Into<String>) -> Member {
        Member {
            key: key.into(),
            values: vec![None; spec.fields.len()],
        }
    }

    /// Sets field `index` (callers pass the spec's constant indexes).
    pub fn set(&mut self, index: usize, value: Option<Value>) {
        if let Some(slot) = self.values.get_mut(index) {
            *slot = value;
        }
    }

    /// Field `index` as an unsigned integer.
    pub fn u64(&self, index: usize) -> Option<u64> {
        match self.values.get(index) {
            Some(Some(Value::U64(v))) => Some(*v),
            _ => None,
        }
    }

    /// Field `index` as a decimal number.
    pub fn f64(&self, index: usize) -> Option<f64> {
        match self.values.get(index) {
            Some(Some(Value::F64(v))) => Some(*v),
            _ => None,
        }
    }

    /// Field `index` as a flag.
    pub fn bool(&self, index: usize) -> Option<bool> {
        match self.values.get(index) {
            Some(Some(Value::Bool(v))) => Some(*v),
            _ => None,
        }
    }

    /// Field `index` as text.
    pub fn text(&self, index: usize) -> Option<&str> {
        match self.values.get(index) {
            Some(Some(Value::Text(v))) => Some(v),
            _ => None,
        }
    }

    /// Why this member does not fit `spec` (wrong number of values, a value of another
    /// kind, a key or text too long, a key where none belongs); `None` when it fits.
    pub fn check(&self, spec: &FamilySpec) -> Option<String> {
        if self.values.len() != spec.fields.len() {
            return Some(format!(
                "{} values for the {} fields of {}",
                self.values.len(),
                spec.fields.len(),
                spec.name
            ));
        }
        if spec.is_singleton() != self.key.is_empty() {
            return Some(format!(
                "{}: key `{}` is not allowed here",
                spec.name, self.key
            ));
        }
        if self.key.len() > MAX_TEXT {
            return Some(format!(
                "{}: key of {} bytes is longer than {MAX_TEXT}",
                spec.name,
                self.key.len()
            ));
        }
        for (field, value) in spec.fields.iter().zip(&self.values) {
            match value {
                Some(v) if v.kind() != field.kind => {
                    return Some(format!(
                        "{}/{}: not a {:?}",
                        spec.name, field.name, field.kind
                    ));
                }
                Some(Value::F64(v)) if !v.is_finite() => {
                    return Some(format!("{}/{}: not finite", spec.name, field.name));
                }
                Some(Value::Text(t)) if t.len() > MAX_TEXT => {
                    return Some(format!("{}/{}: text too long", spec.name, field.name));
                }
                _ => {}
            }
        }
        None
    }
}

/// A family's part of one report.
#[derive(Debug, Clone)]
pub struct Section {
    /// Which family.
    pub family: &'static FamilySpec,
    /// Its members, each key once, in the agent's order.
    pub members: Vec<Member>,
    /// Members the agent left out because of the per-family cap.
    pub cut: u32,
    /// Members the reader refused as invalid.
    pub refused: u32,
}

impl PartialEq for Section {
    fn eq(&self, other: &Section) -> bool {
        self.family.id == other.family.id
            && self.members == other.members
            && self.cut == other.cut
            && self.refused == other.refused
    }
}

impl Section {
    /// An empty section of `family` ("measured, none").
    pub fn new(family: &'static FamilySpec) -> Section {
        Section {
            family,
            members: Vec::new(),
            cut: 0,
            refused: 0,
        }
    }

    /// The member named `key`.
    pub fn member(&self, key: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.key == key)
    }

    /// The members as the family's typed view.
    pub fn typed<T: Typed>(&self) -> Vec<T> {
        if self.family.id != T::SPEC.id {
            return Vec::new();
        }
        self.members.iter().map(T::from_member).collect()
    }

    /// A section of `T`'s family from typed members.
    pub fn from_typed<T: Typed>(members: &[T]) -> Section {
        Section {
            family: T::SPEC,
            members: members.iter().map(Typed::to_member).collect(),
            cut: 0,
            refused: 0,
        }
    }

    /// Keeps at most `max` members (the first ones) and counts the rest in `cut`.
    pub fn cap(&mut self, max: usize) {
        if self.members.len() > max {
            let extra = self.members.len() - max;
            self.members.truncate(max);
            self.cut = self
                .cut
                .saturating_add(u32::try_from(extra).unwrap_or(u32::MAX));
        }
    }
}

/// A family's typed view of a member: what the agent fills in and rules read, converted
/// to and from the generic [`Member`] by field index.
pub trait Typed: Sized {
    /// The family this type is a member of.
    const SPEC: &'static FamilySpec;
    /// The generic member.
    fn to_member(&self) -> Member;
    /// The typed member (absent or mistyped values become `None`).
    fn from_member(member: &Member) -> Self;
}

/// A cumulative `U64` counter field (helper for the family specs).
pub(crate) const fn counter(name: &'static str, unit: &'static str, doc: &'static str) -> Field {
    Field {
        name,
        kind: Kind::U64,
        unit,
        doc,
        counter: true,
    }
}

/// Wraps an optional value of a field (helper for [`Typed::to_member`]).
pub(crate) fn u(v: Option<u64>) -> Option<Value> {
    v.map(Value::U64)
}

/// Wraps an optional decimal, dropping non-finite ones.
pub(crate) fn d(v: Option<f64>) -> Option<Value> {
    v.filter(|v| v.is_finite()).map(Value::F64)
}

/// Wraps an optional text, cut to [`MAX_TEXT`] bytes on a character boundary.
pub(crate) fn t(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|s| Value::Text(clip(s).to_owned()))
}

/// `s` cut to at most [`MAX_TEXT`] bytes on a character boundary.
pub fn clip(s: &str) -> &str {
    if s.len() <= MAX_TEXT {
        return s;
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_are_unique_and_fields_well_formed() {
        for (i, a) in FAMILIES.iter().enumerate() {
            for b in &FAMILIES[i + 1..] {
                assert_ne!(a.id, b.id, "{} and {}", a.name, b.name);
                assert_ne!(a.name, b.name);
            }
            for (j, f) in a.fields.iter().enumerate() {
                assert!(
                    f.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{}/{}",
                    a.name,
                    f.name
                );
                assert_ne!(f.name, a.key, "{}: a field named like the key", a.name);
                assert!(!matches!(f.name, "cut" | "refused" | "key"), "{}", f.name);
                assert!(a.fields[j + 1..].iter().all(|g| g.name != f.name));
            }
        }
    }

    #[test]
    fn values_parse_by_kind() {
        assert_eq!(Value::parse(Kind::U64, "42"), Some(Value::U64(42)));
        assert_eq!(Value::parse(Kind::U64, "-1"), None);
        assert_eq!(Value::parse(Kind::F64, "NaN"), None);
        assert_eq!(Value::parse(Kind::F64, "inf"), None);
        assert_eq!(Value::parse(Kind::Bool, "true"), Some(Value::Bool(true)));
        assert_eq!(Value::parse(Kind::Bool, "yes"), None);
        assert_eq!(Value::parse(Kind::Text, &"x".repeat(256)), None);
    }

    #[test]
    fn cap_counts_what_it_cuts() {
        let mut s = Section::new(&interfaces::SPEC);
        for i in 0..10 {
            s.members
                .push(Member::new(&interfaces::SPEC, format!("eth{i}")));
        }
        s.cap(4);
        assert_eq!((s.members.len(), s.cut), (4, 6));
    }

    #[test]
    fn clip_keeps_char_boundaries() {
        let s = "é".repeat(200);
        assert!(clip(&s).len() <= MAX_TEXT);
        assert!(clip(&s).chars().all(|c| c == 'é'));
    }
}
