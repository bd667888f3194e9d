//! Parsing and validating a stats report. The input comes from a remote
//! host, so everything is bounded (size, depth, element count, extras) and
//! anything that could expand (DOCTYPE, custom entities) is refused outright.
//! Every error carries the byte position where the problem was found.

use super::family::{self, FamilySpec, MAX_MEMBERS, MAX_TEXT, Member, Section, Value};
use super::{REPORT_VERSION, Report};
use quick_xml::Reader;
use quick_xml::escape::EscapeError;
use quick_xml::events::{BytesStart, Event};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Largest document accepted, bytes (1 MiB).
pub const MAX_INPUT: usize = 1 << 20;
/// Deepest element nesting accepted (`stats` is depth 1).
pub const MAX_DEPTH: usize = 8;
/// Most elements accepted in one document.
pub const MAX_ELEMENTS: usize = 10_000;
/// Most unknown elements kept in [`Report::extras`]; later ones are dropped.
pub const MAX_EXTRAS: usize = 64;

/// A report that could not be accepted, and the byte offset where that was found.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// Byte offset into the input.
    pub position: u64,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid stats report at byte {}: {}",
            self.position, self.kind
        )
    }
}

impl std::error::Error for ParseError {}

/// What was wrong with a report.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The input exceeds [`MAX_INPUT`].
    #[error("document of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not well-formed XML.
    #[error("malformed XML: {0}")]
    Xml(String),
    /// A DOCTYPE declaration: refused, since DTDs enable entity expansion attacks.
    #[error("DOCTYPE/DTD declarations are not allowed")]
    Doctype,
    /// An entity reference other than `&lt; &gt; &amp; &apos; &quot;`.
    #[error("entity reference `&{0};` is not allowed (only the 5 predefined XML entities are)")]
    Entity(String),
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("elements nested deeper than {0}")]
    TooDeep(usize),
    /// More than [`MAX_ELEMENTS`] elements.
    #[error("more than {0} elements")]
    TooManyElements(usize),
    /// The root is not `<stats>`, or there is none, or there are two.
    #[error("expected one root element <stats>: {0}")]
    Root(String),
    /// The `version` attribute names a major version this reader does not know.
    #[error(
        "report version `{0}` is not supported (this reader knows major version {REPORT_VERSION})"
    )]
    UnsupportedVersion(String),
    /// A required element or attribute is absent.
    #[error("missing required `{0}`")]
    Missing(String),
    /// An element that may appear once appears again.
    #[error("duplicate `{0}`")]
    Duplicate(String),
    /// A value that is not a number of the expected kind.
    #[error("`{element}`: `{text}` is not a valid {expected}")]
    NotANumber {
        /// Element path.
        element: String,
        /// Its text.
        text: String,
        /// What was expected ("unsigned integer", ...).
        expected: &'static str,
    },
    /// A number outside its allowed range.
    #[error("`{element}`: {reason}")]
    OutOfRange {
        /// Element path.
        element: String,
        /// Which bound it breaks.
        reason: String,
    },
}

/// Parses and validates a report (format in the [module docs](super)).
pub fn parse(xml: &[u8]) -> Result<Report, ParseError> {
    if xml.len() > MAX_INPUT {
        return Err(err(
            0,
            ParseErrorKind::TooLarge {
                len: xml.len(),
                max: MAX_INPUT,
            },
        ));
    }
    let mut reader = Reader::from_reader(xml);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.trim_text(true);
    config.check_end_names = true;

    let mut doc = Doc::default();
    let mut stack: Vec<Open> = Vec::new();
    let mut elements = 0usize;
    loop {
        let pos = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| err(reader.error_position(), xml_error(e)))?;
        match event {
            Event::DocType(_) => return Err(err(pos, ParseErrorKind::Doctype)),
            Event::Start(start) => {
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(err(pos, ParseErrorKind::TooManyElements(MAX_ELEMENTS)));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(err(pos, ParseErrorKind::TooDeep(MAX_DEPTH)));
                }
                let mut open = Open::new(&start, &stack, pos)?;
                match stack.last_mut() {
                    Some(parent) => parent.has_children = true,
                    None => doc.root(&start, pos)?,
                }
                open.place = doc.place(&start, &stack, &open.path, pos)?;
                stack.push(open);
            }
            Event::End(_) => {
                // check_end_names guarantees a matching Start was pushed.
                if let Some(open) = stack.pop() {
                    doc.close(open)?;
                }
            }
            Event::Text(text) => {
                let text = text.unescape().map_err(|e| err(pos, xml_error(e)))?;
                match stack.last_mut() {
                    Some(open) => open.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => {
                        return Err(err(
                            pos,
                            ParseErrorKind::Root("text outside the root".into()),
                        ));
                    }
                }
            }
            Event::CData(data) => match stack.last_mut() {
                Some(open) => open.text.push_str(&String::from_utf8_lossy(&data)),
                None => {
                    return Err(err(
                        pos,
                        ParseErrorKind::Root("CDATA outside the root".into()),
                    ));
                }
            },
            Event::Eof => break,
            // Declarations, comments and processing instructions carry nothing.
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::Empty(_) => {}
        }
    }
    doc.finish(reader.buffer_position())
}

fn err(position: u64, kind: ParseErrorKind) -> ParseError {
    ParseError { position, kind }
}

fn xml_error(e: quick_xml::Error) -> ParseErrorKind {
    match e {
        quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
            ParseErrorKind::Entity(name)
        }
        other => ParseErrorKind::Xml(other.to_string()),
    }
}

/// Where an element stands with respect to the family sections.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    /// Outside every section.
    Plain,
    /// A section element (the family's index in `Doc::sections`).
    Section(usize),
    /// Inside a section (a member or something this reader does not know): not an extra.
    InSection(usize),
}

/// An element whose end tag has not been seen yet.
struct Open {
    /// Path below the root joined with `/`; `""` for the root itself.
    path: String,
    text: String,
    has_children: bool,
    position: u64,
    core_id: Option<String>,
    place: Place,
}

impl Open {
    fn new(start: &BytesStart<'_>, stack: &[Open], position: u64) -> Result<Open, ParseError> {
        let name = std::str::from_utf8(start.name().as_ref())
            .map_err(|_| {
                err(
                    position,
                    ParseErrorKind::Xml("element name is not UTF-8".into()),
                )
            })?
            .to_owned();
        let path = match stack.last() {
            None => String::new(),
            Some(parent) if parent.path.is_empty() => name,
            Some(parent) => format!("{}/{}", parent.path, name),
        };
        let core_id = if path == "cpu/core" {
            Some(
                attribute(start, "id", position)?
                    .ok_or_else(|| err(position, ParseErrorKind::Missing("cpu/core@id".into())))?,
            )
        } else {
            None
        };
        Ok(Open {
            path,
            text: String::new(),
            has_children: false,
            position,
            core_id,
            place: Place::Plain,
        })
    }
}

fn attribute(start: &BytesStart<'_>, name: &str, pos: u64) -> Result<Option<String>, ParseError> {
    match start.try_get_attribute(name) {
        Ok(None) => Ok(None),
        Ok(Some(attr)) => attr
            .unescape_value()
            .map(|v| Some(v.into_owned()))
            .map_err(|e| err(pos, xml_error(e))),
        Err(e) => Err(err(pos, ParseErrorKind::Xml(e.to_string()))),
    }
}

/// Field values as they are found; checked for presence and range at the end.
#[derive(Default)]
struct Doc {
    root_seen: bool,
    root_closed: bool,
    version: u32,
    leaves: BTreeMap<&'static str, (String, u64)>,
    cores: BTreeMap<u32, (f64, u64)>,
    extras: Vec<(String, String)>,
    sections: Vec<Section>,
}

/// Leaf elements the format defines; `cpu/core` is handled apart.
const KNOWN_LEAVES: [&str; 14] = [
    "collected_at",
    "cpu/total",
    "memory/used",
    "memory/total",
    "swap/used",
    "swap/total",
    "uptime",
    "boot_time",
    "load/one",
    "load/five",
    "load/fifteen",
    "hostname",
    "os",
    "kernel",
];
const KNOWN_CONTAINERS: [&str; 5] = ["", "cpu", "memory", "swap", "load"];

impl Doc {
    fn root(&mut self, start: &BytesStart<'_>, pos: u64) -> Result<(), ParseError> {
        if self.root_seen {
            return Err(err(
                pos,
                ParseErrorKind::Root("a second root element".into()),
            ));
        }
        self.root_seen = true;
        if start.name().as_ref() != b"stats" {
            let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
            return Err(err(pos, ParseErrorKind::Root(format!("found <{name}>"))));
        }
        let version = attribute(start, "version", pos)?
            .ok_or_else(|| err(pos, ParseErrorKind::Missing("stats@version".into())))?;
        let major = version.split('.').next().unwrap_or_default();
        match major.parse::<u32>() {
            Ok(REPORT_VERSION) => self.version = REPORT_VERSION,
            _ => return Err(err(pos, ParseErrorKind::UnsupportedVersion(version))),
        }
        Ok(())
    }

    /// Places a new element among the sections: opens a section, reads a member.
    fn place(
        &mut self,
        start: &BytesStart<'_>,
        stack: &[Open],
        path: &str,
        pos: u64,
    ) -> Result<Place, ParseError> {
        let parent = stack.last().map_or(Place::Plain, |p| p.place);
        match parent {
            Place::Section(index) => {
                let section = &mut self.sections[index];
                if start.name().as_ref() == section.family.member.as_bytes() {
                    read_member(section, start, pos)?;
                }
                Ok(Place::InSection(index))
            }
            Place::InSection(index) => Ok(Place::InSection(index)),
            Place::Plain if stack.len() == 1 => {
                let Some(spec) = family::by_name(path) else {
                    return Ok(Place::Plain);
                };
                if self.sections.iter().any(|s| s.family.id == spec.id) {
                    return Err(err(pos, ParseErrorKind::Duplicate(path.to_owned())));
                }
                let mut section = Section::new(spec);
                if let Some(cut) = attribute(start, "cut", pos)? {
                    section.cut = number::<u32>(&format!("{path}@cut"), &cut, pos)?;
                }
                self.sections.push(section);
                Ok(Place::Section(self.sections.len() - 1))
            }
            Place::Plain => Ok(Place::Plain),
        }
    }

    fn close(&mut self, open: Open) -> Result<(), ParseError> {
        let pos = open.position;
        if open.place != Place::Plain {
            // Sections and what is inside them were read when they opened.
        } else if open.path.is_empty() {
            self.root_closed = true;
        } else if let Some(id) = open.core_id {
            let id = number::<u32>("cpu/core@id", &id, pos)?;
            let pct = percent("cpu/core", &open.text, pos)?;
            if self.cores.insert(id, (pct, pos)).is_some() {
                return Err(err(
                    pos,
                    ParseErrorKind::Duplicate(format!("cpu/core id={id}")),
                ));
            }
        } else if let Some(&known) = KNOWN_LEAVES.iter().find(|&&k| k == open.path) {
            if self
                .leaves
                .insert(known, (open.text.trim().to_owned(), pos))
                .is_some()
            {
                return Err(err(pos, ParseErrorKind::Duplicate(open.path)));
            }
        } else if !KNOWN_CONTAINERS.contains(&open.path.as_str())
            && !open.has_children
            && self.extras.len() < MAX_EXTRAS
        {
            self.extras.push((open.path, open.text.trim().to_owned()));
        }
        Ok(())
    }

    fn finish(mut self, end: u64) -> Result<Report, ParseError> {
        if !self.root_seen || !self.root_closed {
            return Err(err(
                end,
                ParseErrorKind::Root("no complete <stats> element".into()),
            ));
        }
        let collected_at_ms = self.required::<i64>("collected_at", end)?;
        if collected_at_ms < 0 {
            return Err(self.range("collected_at", "must not be negative"));
        }
        let cpu_percent = {
            let (text, pos) = self.get("cpu/total", end)?;
            percent("cpu/total", &text, pos)?
        };
        let mut cores = Vec::with_capacity(self.cores.len());
        for (expected, (&id, &(pct, pos))) in (0u32..).zip(self.cores.iter()) {
            if id != expected {
                return Err(err(
                    pos,
                    ParseErrorKind::Missing(format!("cpu/core id={expected}")),
                ));
            }
            cores.push(pct);
        }
        let mem_used = self.required::<u64>("memory/used", end)?;
        let mem_total = self.required::<u64>("memory/total", end)?;
        if mem_used > mem_total {
            return Err(self.range("memory/used", "exceeds memory/total"));
        }
        let swap_used = self.required::<u64>("swap/used", end)?;
        let swap_total = self.required::<u64>("swap/total", end)?;
        if swap_used > swap_total {
            return Err(self.range("swap/used", "exceeds swap/total"));
        }
        let uptime_s = self.required::<u64>("uptime", end)?;
        let boot_time_s = self.optional::<u64>("boot_time")?;
        let load = self.load(end)?;
        let mut sections = std::mem::take(&mut self.sections);
        sections.sort_by_key(|s| family::FAMILIES.iter().position(|f| f.id == s.family.id));
        Ok(Report {
            version: self.version,
            collected_at_ms,
            cpu_percent,
            cores,
            mem_used,
            mem_total,
            swap_used,
            swap_total,
            uptime_s,
            boot_time_s,
            load,
            hostname: self.text("hostname"),
            os: self.text("os"),
            kernel: self.text("kernel"),
            extras: std::mem::take(&mut self.extras),
            sections,
        })
    }

    fn load(&self, end: u64) -> Result<Option<[f64; 3]>, ParseError> {
        let names = ["load/one", "load/five", "load/fifteen"];
        if names.iter().all(|n| !self.leaves.contains_key(n)) {
            return Ok(None);
        }
        let mut out = [0.0; 3];
        for (slot, name) in out.iter_mut().zip(names) {
            let (text, pos) = self.get(name, end)?;
            *slot = number::<f64>(name, &text, pos)?;
            if !slot.is_finite() || *slot < 0.0 {
                return Err(err(pos, range_kind(name, "must be a finite number >= 0")));
            }
        }
        Ok(Some(out))
    }

    fn get(&self, name: &str, end: u64) -> Result<(String, u64), ParseError> {
        self.leaves
            .get(name)
            .cloned()
            .ok_or_else(|| err(end, ParseErrorKind::Missing(name.to_owned())))
    }

    fn required<T: FromStr + Number>(&self, name: &str, end: u64) -> Result<T, ParseError> {
        let (text, pos) = self.get(name, end)?;
        number(name, &text, pos)
    }

    fn optional<T: FromStr + Number>(&self, name: &str) -> Result<Option<T>, ParseError> {
        match self.leaves.get(name) {
            None => Ok(None),
            Some((text, pos)) => number(name, text, *pos).map(Some),
        }
    }

    fn text(&self, name: &str) -> Option<String> {
        self.leaves.get(name).map(|(text, _)| text.clone())
    }

    fn range(&self, name: &str, reason: &str) -> ParseError {
        let pos = self.leaves.get(name).map_or(0, |(_, pos)| *pos);
        err(pos, range_kind(name, reason))
    }
}

/// Reads one member element into `section`: the key and the fields the spec names. A
/// member that does not fit (a value of the wrong kind, no key or one too long, a key seen
/// before, a second member of a singleton) is counted in `refused`; one past
/// [`MAX_MEMBERS`] in `cut`. Attributes the spec does not name are ignored.
fn read_member(section: &mut Section, start: &BytesStart<'_>, pos: u64) -> Result<(), ParseError> {
    let spec: &FamilySpec = section.family;
    if section.members.len() >= MAX_MEMBERS {
        section.cut = section.cut.saturating_add(1);
        return Ok(());
    }
    let mut member = Member::new(spec, String::new());
    let mut key: Option<String> = None;
    let mut fits = true;
    for attr in start.attributes() {
        let attr = attr.map_err(|e| err(pos, ParseErrorKind::Xml(e.to_string())))?;
        let name = attr.key.as_ref();
        let value = attr.unescape_value().map_err(|e| err(pos, xml_error(e)))?;
        if !spec.is_singleton() && name == spec.key.as_bytes() {
            key = Some(value.into_owned());
        } else if let Some(index) = spec.fields.iter().position(|f| f.name.as_bytes() == name) {
            match Value::parse(spec.fields[index].kind, &value) {
                Some(v) => member.values[index] = Some(v),
                None => fits = false,
            }
        }
    }
    member.key = match key {
        _ if spec.is_singleton() => String::new(),
        Some(key) if !key.is_empty() && key.len() <= MAX_TEXT => key,
        _ => {
            fits = false;
            String::new()
        }
    };
    let taken = if spec.is_singleton() {
        !section.members.is_empty()
    } else {
        section.members.iter().any(|m| m.key == member.key)
    };
    if fits && !taken {
        section.members.push(member);
    } else {
        section.refused = section.refused.saturating_add(1);
    }
    Ok(())
}

fn range_kind(name: &str, reason: &str) -> ParseErrorKind {
    ParseErrorKind::OutOfRange {
        element: name.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Names the kind of number for error messages.
trait Number {
    const KIND: &'static str;
}
impl Number for u64 {
    const KIND: &'static str = "unsigned integer";
}
impl Number for u32 {
    const KIND: &'static str = "unsigned integer";
}
impl Number for i64 {
    const KIND: &'static str = "integer";
}
impl Number for f64 {
    const KIND: &'static str = "decimal number";
}

fn number<T: FromStr + Number>(name: &str, text: &str, pos: u64) -> Result<T, ParseError> {
    let text = text.trim();
    text.parse::<T>().map_err(|_| {
        err(
            pos,
            ParseErrorKind::NotANumber {
                element: name.to_owned(),
                text: text.chars().take(64).collect(),
                expected: T::KIND,
            },
        )
    })
}

fn percent(name: &str, text: &str, pos: u64) -> Result<f64, ParseError> {
    let value = number::<f64>(name, text, pos)?;
    if value.is_finite() && (0.0..=100.0).contains(&value) {
        Ok(value)
    } else {
        Err(err(
            pos,
            range_kind(name, &format!("{value} is not a percentage in 0..=100")),
        ))
    }
}
