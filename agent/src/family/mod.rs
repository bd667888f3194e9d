//! The metric families the agent measures on Linux, one module per family, each reading
//! `/proc`, `/sys` or `statvfs(2)` and returning its [`Section`] of the report. Parsers take
//! the text of the kernel's files and are pure (tested with fixture text); the thin readers
//! around them open the real files.
//!
//! [`Families`] is the state a resident agent keeps between samples: the previous `/proc/stat`
//! reading (CPU by mode over the same window as the total CPU) and the `statvfs` prober whose
//! workers may still be stuck on a hung mount ([`statfs`]). Every family applies the
//! options' exclusions first, then the per-family cap (`max_members`, the rest counted in
//! [`Section::cut`]), so a host with 500 veths costs no more than one with 64.
//!
//! Invariant: nothing here can delay a sample by more than the `statvfs` deadline, and a
//! mount that hangs delays at most the first sample that meets it (later ones report it
//! `hanging` at once); commands (`systemctl`) run with a deadline too.

pub mod devices;
pub mod filesystems;
pub mod interfaces;
pub mod processes;
pub mod statfs;
pub mod system;
pub mod units;

use edgemon_proto::report::family::Section;
use edgemon_proto::report::family::options::AgentOptions;

/// What the agent keeps between samples for the families.
pub struct Families {
    options: AgentOptions,
    prober: statfs::Prober,
}

impl Families {
    /// Families measured with `options`.
    pub fn new(options: AgentOptions) -> Families {
        Families {
            options,
            prober: statfs::Prober::new(),
        }
    }

    /// Measures every family but `system` (which [`crate::sample`] takes over the CPU window)
    /// and returns their sections in report order, `system` first when given.
    pub fn measure(&mut self, system: Option<Section>) -> Vec<Section> {
        let o = &self.options;
        let cap = usize::try_from(o.max_members).unwrap_or(usize::MAX);
        let mut sections: Vec<Section> = system.into_iter().collect();
        sections.push(filesystems::measure(o, &mut self.prober));
        sections.extend(interfaces::measure(o));
        sections.extend(devices::measure(o));
        sections.extend(units::measure());
        sections.push(processes::measure(&o.watch));
        for section in &mut sections {
            if !section.family.is_singleton() {
                section.cap(cap);
            }
        }
        sections
    }
}

/// The text of `path`, `None` when it cannot be read (a file the kernel does not have).
pub(crate) fn read(path: impl AsRef<std::path::Path>) -> Option<String> {
    let mut buf = Vec::new();
    read_into(path.as_ref(), &mut buf)?;
    String::from_utf8(buf).ok()
}

/// Reads all of `path` into `buf` (cleared first) with `open`, `read` until 0 and `close`:
/// kernel files have no size to ask for, so `std::fs::read`'s `fstat` and `lseek` are two
/// system calls of six wasted per file (the process scan reads hundreds a sample).
pub(crate) fn read_into(path: &std::path::Path, buf: &mut Vec<u8>) -> Option<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Some(()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

/// The first line of the kernel attribute `path` (a sysfs or sysctl file), trimmed.
pub(crate) fn read_line(path: impl AsRef<std::path::Path>) -> Option<String> {
    let mut buf = Vec::new();
    read_attr(path.as_ref(), &mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    Some(text.lines().next().unwrap_or("").trim().to_owned())
}

/// Reads the kernel attribute `path` (sysfs attributes are at most a page, `comm` 16 bytes)
/// into `buf` with one `read`: open, read, close, half the system calls of `std::fs::read`,
/// which matters where system calls are slow (sandboxed and virtual hosts).
pub(crate) fn read_attr(path: &std::path::Path, buf: &mut Vec<u8>) -> Option<()> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    buf.clear();
    buf.resize(4096, 0);
    let n = loop {
        match file.read(buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    };
    buf.truncate(n);
    Some(())
}
