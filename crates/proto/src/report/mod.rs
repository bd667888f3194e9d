//! The stats report an agent sends: one sample of a host, as a small,
//! versioned XML document written and parsed with quick-xml. This module owns
//! the document format and its validation; it does not encrypt, frame or
//! store anything.
//!
//! # Format, version 1
//!
//! ```xml
//! <?xml version="1.0" encoding="UTF-8"?>
//! <stats version="1">
//!   <collected_at>1732500000123</collected_at>  <!-- agent clock, Unix ms, >= 0 -->
//!   <cpu>
//!     <total>12.5</total>                       <!-- percent, 0..=100 -->
//!     <core id="0">10</core>                    <!-- percent per core; ids 0..n-1, each once -->
//!     <core id="1">15</core>
//!   </cpu>
//!   <memory><used>1024</used><total>4096</total></memory>  <!-- bytes, used <= total -->
//!   <swap><used>0</used><total>0</total></swap>            <!-- bytes, used <= total -->
//!   <uptime>3600</uptime>                       <!-- seconds since boot -->
//!   <boot_time>1732496400</boot_time>           <!-- optional, Unix seconds -->
//!   <load><one>0.5</one><five>0.25</five><fifteen>0.1</fifteen></load>  <!-- optional -->
//!   <hostname>web1</hostname>                   <!-- optional -->
//!   <os>Debian GNU/Linux 12</os>                <!-- optional -->
//!   <kernel>6.1.0-18-amd64</kernel>             <!-- optional -->
//! </stats>
//! ```
//!
//! # Version 1.1: metric families
//!
//! After the elements above, one section per [metric family](family) that the agent
//! measured, named by the family, with one empty element per member whose attributes are
//! the member's key and fields (see each family's module for members, units and meaning):
//!
//! ```xml
//!   <filesystems cut="0">
//!     <fs mount="/var" fstype="ext4" device="/dev/sda2" size="52521566208" used="40001200128"
//!         avail="9832153088" files="3276800" files_free="3001122" readonly="0" hanging="0"/>
//!     <fs mount="/mnt/share" fstype="nfs4" device="nas:/share" hanging="1"/>
//!   </filesystems>
//!   <interfaces cut="3"><if name="eth0" oper="up" speed="1000" rx_bytes="123" .../></interfaces>
//!   <system><sys cpu_user="3.5" mem_available="1073741824" .../></system>
//! ```
//!
//! A section that is absent was not measured; an empty one was measured and has no member.
//! `cut` counts members the agent left out (its per-family cap). An attribute that is absent
//! is a value not measured. The reader drops (and counts in [`family::Section::refused`]) a
//! member whose key or values are invalid, a duplicate key, and members past
//! [`family::MAX_MEMBERS`] (counted in `cut`); it ignores attributes and elements inside a
//! section that it does not know. A 1.0 reader keeps a 1.1 document readable: sections are
//! containers of empty leaves to it, which it keeps among its extras or ignores.
//!
//! The `version` attribute is `major[.minor]`; a reader accepts any minor of
//! the major it knows, so a newer agent may add elements. Elements a reader
//! does not know are kept in [`Report::extras`] (leaf elements only, named by
//! their path below `stats`, e.g. `cpu/temperature`), up to [`MAX_EXTRAS`].
//!
//! Numbers are written with Rust's shortest round-trip formatting; text is
//! XML-escaped. The parser refuses DOCTYPE declarations and any entity other
//! than the five predefined ones, and bounds input size, depth and element
//! count (see [`parse`]).

pub mod family;
mod parse;

pub use parse::{
    MAX_DEPTH, MAX_ELEMENTS, MAX_EXTRAS, MAX_INPUT, ParseError, ParseErrorKind, parse,
};

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use std::io;

/// Major version of the report format written by this agent.
pub const REPORT_VERSION: u32 = 1;
/// Minor version written: 1 adds the metric family sections.
pub const REPORT_MINOR: u32 = 1;

/// One sample of a host's statistics, as the agent measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Format version the agent wrote.
    pub version: u32,
    /// Agent's clock when the sample was taken, Unix milliseconds.
    pub collected_at_ms: i64,
    /// Total CPU usage, 0 to 100.
    pub cpu_percent: f64,
    /// Per-core CPU usage, 0 to 100 each.
    pub cores: Vec<f64>,
    /// Memory in use, bytes.
    pub mem_used: u64,
    /// Memory installed, bytes.
    pub mem_total: u64,
    /// Swap in use, bytes.
    pub swap_used: u64,
    /// Swap configured, bytes.
    pub swap_total: u64,
    /// Seconds since boot.
    pub uptime_s: u64,
    /// Boot time, Unix seconds.
    pub boot_time_s: Option<u64>,
    /// Load averages over 1, 5 and 15 minutes.
    pub load: Option<[f64; 3]>,
    /// The host's own name.
    pub hostname: Option<String>,
    /// Operating system name and version.
    pub os: Option<String>,
    /// Kernel version.
    pub kernel: Option<String>,
    /// Elements this collector does not know, kept as name and text.
    pub extras: Vec<(String, String)>,
    /// The metric family sections measured, each family at most once, in
    /// [`family::FAMILIES`] order.
    pub sections: Vec<family::Section>,
}

impl Report {
    /// The section of `family`, when the report carries one.
    pub fn section(&self, family: &family::FamilySpec) -> Option<&family::Section> {
        self.sections.iter().find(|s| s.family.id == family.id)
    }

    /// The members of `T`'s family as typed values (empty when not measured).
    pub fn typed<T: family::Typed>(&self) -> Vec<T> {
        self.section(T::SPEC).map(|s| s.typed()).unwrap_or_default()
    }

    /// The report as a version-1.1 XML document (format in the module docs).
    ///
    /// Extras whose name is a plain element name are written back as children
    /// of `stats`; extras that came from deeper paths are not re-emitted.
    pub fn to_xml(&self) -> Vec<u8> {
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        // Writing into a Vec cannot fail; an error would leave a partial
        // document, which the collector's parser would refuse.
        let _ = self.write(&mut w);
        w.into_inner()
    }

    fn write(&self, w: &mut Writer<Vec<u8>>) -> io::Result<()> {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        let version = format!("{}.{REPORT_MINOR}", self.version);
        w.create_element("stats")
            .with_attribute(("version", version.as_str()))
            .write_inner_content(|w| {
                leaf(w, "collected_at", &self.collected_at_ms.to_string())?;
                w.create_element("cpu").write_inner_content(|w| {
                    leaf(w, "total", &self.cpu_percent.to_string())?;
                    for (id, pct) in self.cores.iter().enumerate() {
                        let id = id.to_string();
                        w.create_element("core")
                            .with_attribute(("id", id.as_str()))
                            .write_text_content(BytesText::new(&pct.to_string()))?;
                    }
                    Ok(())
                })?;
                pair(w, "memory", self.mem_used, self.mem_total)?;
                pair(w, "swap", self.swap_used, self.swap_total)?;
                leaf(w, "uptime", &self.uptime_s.to_string())?;
                if let Some(boot) = self.boot_time_s {
                    leaf(w, "boot_time", &boot.to_string())?;
                }
                if let Some([one, five, fifteen]) = self.load {
                    w.create_element("load").write_inner_content(|w| {
                        leaf(w, "one", &one.to_string())?;
                        leaf(w, "five", &five.to_string())?;
                        leaf(w, "fifteen", &fifteen.to_string())
                    })?;
                }
                for (name, value) in [
                    ("hostname", &self.hostname),
                    ("os", &self.os),
                    ("kernel", &self.kernel),
                ] {
                    if let Some(value) = value {
                        leaf(w, name, value)?;
                    }
                }
                for (name, value) in &self.extras {
                    if is_plain_name(name) && family::by_name(name).is_none() {
                        leaf(w, name, value)?;
                    }
                }
                for section in &self.sections {
                    write_section(w, section)?;
                }
                Ok(())
            })?;
        Ok(())
    }
}

fn write_section(w: &mut Writer<Vec<u8>>, section: &family::Section) -> io::Result<()> {
    let spec = section.family;
    let cut = section.cut.to_string();
    let mut element = w.create_element(spec.name);
    if section.cut > 0 {
        element = element.with_attribute(("cut", cut.as_str()));
    }
    if section.members.is_empty() {
        element.write_empty()?;
        return Ok(());
    }
    element.write_inner_content(|w| {
        for member in &section.members {
            let texts: Vec<(&str, String)> = spec
                .fields
                .iter()
                .zip(&member.values)
                .filter_map(|(field, value)| Some((field.name, value.as_ref()?.to_string())))
                .collect();
            let mut element = w.create_element(spec.member);
            if !spec.is_singleton() {
                element = element.with_attribute((spec.key, member.key.as_str()));
            }
            element
                .with_attributes(texts.iter().map(|(k, v)| (*k, v.as_str())))
                .write_empty()?;
        }
        Ok(())
    })?;
    Ok(())
}

fn leaf(w: &mut Writer<Vec<u8>>, name: &str, text: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(text))
        .map(|_| ())
}

fn pair(w: &mut Writer<Vec<u8>>, name: &str, used: u64, total: u64) -> io::Result<()> {
    w.create_element(name)
        .write_inner_content(|w| {
            leaf(w, "used", &used.to_string())?;
            leaf(w, "total", &total.to_string())
        })
        .map(|_| ())
}

/// An ASCII element name that cannot clash with markup: a letter or `_`, then
/// letters, digits, `_`, `-` or `.`.
fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.to_ascii_lowercase().starts_with("xml")
}
