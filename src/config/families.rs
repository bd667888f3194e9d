//! Resolution of the agent's options: `[collect.families]` (the per-family cap, the
//! `statvfs` deadline, the exclusion globs, defaults those of
//! [`AgentOptions::default`]) and each host's `watch` list.
//!
//! A watch is written `"sshd"` (a process whose name, `/proc/PID/comm`, matches the glob),
//! `"cmdline:*postgres -D*"` (a process whose command line, arguments joined by spaces,
//! matches), or either with a name first, `"pg main=cmdline:*postgres -D*"`, which is what
//! alerts and pages call it (without one, the name is the pattern as written). A name holds
//! no `=`; a pattern that holds one needs a name first (`"java=cmdline:*-Dx=y*"`). Names are
//! unique per host.

use super::file::FamiliesSection;
use super::model::AgentOptions;
use super::resolve::Resolver;
use edgemon_proto::report::family::MAX_TEXT;
use edgemon_proto::report::family::options::{Watch, WatchBy};

/// Longest process name the kernel keeps in `comm`.
const COMM_MAX: usize = 15;

impl Resolver<'_> {
    /// `[collect.families]` as the agent's options (no watch yet: those are per host).
    pub(crate) fn families(&mut self, raw: &FamiliesSection) -> AgentOptions {
        let d = AgentOptions::default();
        let timeout = self.duration("collect.families.statfs_timeout", &raw.statfs_timeout);
        AgentOptions {
            max_members: self.count("collect.families.max_members", raw.max_members),
            statfs_timeout_ms: u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
            fs_exclude_mounts: self.patterns(
                "collect.families.fs_exclude_mounts",
                &raw.fs_exclude_mounts,
                d.fs_exclude_mounts,
            ),
            fs_exclude_types: self.patterns(
                "collect.families.fs_exclude_types",
                &raw.fs_exclude_types,
                d.fs_exclude_types,
            ),
            if_exclude: self.patterns("collect.families.if_exclude", &raw.if_exclude, d.if_exclude),
            dev_exclude: self.patterns(
                "collect.families.dev_exclude",
                &raw.dev_exclude,
                d.dev_exclude,
            ),
            watch: Vec::new(),
        }
    }

    fn patterns(
        &mut self,
        key: &str,
        list: &Option<Vec<String>>,
        default: Vec<String>,
    ) -> Vec<String> {
        let Some(list) = list else {
            return default;
        };
        for item in list {
            if item.is_empty() || item.chars().any(char::is_control) {
                self.error(
                    key,
                    format!("{item:?} is not a pattern (empty or a control character)"),
                );
            }
        }
        list.clone()
    }

    /// The watches of host entry `at` (`hosts[3]`).
    pub(crate) fn watches(&mut self, at: &str, list: &[String]) -> Vec<Watch> {
        let key = format!("{at}.watch");
        let mut out: Vec<Watch> = Vec::new();
        for item in list {
            match parse_watch(item) {
                Ok(watch) => {
                    if out.iter().any(|w| w.name == watch.name) {
                        self.error(
                            &key,
                            format!(
                                "{:?} is watched twice; give each a name of its own (\"NAME=...\")",
                                watch.name
                            ),
                        );
                        continue;
                    }
                    if watch.by == WatchBy::Name
                        && !watch.pattern.contains('*')
                        && watch.pattern.len() > COMM_MAX
                    {
                        self.warn(
                            &key,
                            format!(
                                "{:?} never matches: process names are at most {COMM_MAX} bytes; use \"cmdline:*{}*\"",
                                watch.pattern, watch.pattern
                            ),
                        );
                    }
                    out.push(watch);
                }
                Err(why) => self.error(&key, format!("{item:?}: {why}")),
            }
        }
        out
    }
}

/// One watch as written (see the module docs).
pub(crate) fn parse_watch(text: &str) -> Result<Watch, String> {
    if text.chars().any(char::is_control) {
        return Err("a control character".into());
    }
    let plain = |s: &str| s.starts_with("cmdline:") || s.starts_with("name:");
    let (name, spec) = match text.split_once('=') {
        Some((name, spec)) if !plain(text) => (Some(name.trim()), spec.trim()),
        _ => (None, text.trim()),
    };
    let (by, pattern) = if let Some(p) = spec.strip_prefix("cmdline:") {
        (WatchBy::Cmdline, p)
    } else if let Some(p) = spec.strip_prefix("name:") {
        (WatchBy::Name, p)
    } else {
        (WatchBy::Name, spec)
    };
    if pattern.is_empty() {
        return Err("the pattern is empty".into());
    }
    let name = name.unwrap_or(text.trim());
    if name.is_empty() {
        return Err("the name before `=` is empty".into());
    }
    if name.len() > MAX_TEXT {
        return Err(format!("the name is longer than {MAX_TEXT} bytes"));
    }
    Ok(Watch {
        name: name.to_owned(),
        by,
        pattern: pattern.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str) -> (String, WatchBy, String) {
        let w = parse_watch(text).expect(text);
        (w.name, w.by, w.pattern)
    }

    #[test]
    fn watch_syntax() {
        let s = |v: &str| v.to_owned();
        assert_eq!(w("sshd"), (s("sshd"), WatchBy::Name, s("sshd")));
        assert_eq!(
            w("cmdline:*postgres -D*"),
            (
                s("cmdline:*postgres -D*"),
                WatchBy::Cmdline,
                s("*postgres -D*")
            )
        );
        assert_eq!(
            w("pg main=cmdline:*postgres -D*"),
            (s("pg main"), WatchBy::Cmdline, s("*postgres -D*"))
        );
        assert_eq!(w("web = nginx"), (s("web"), WatchBy::Name, s("nginx")));
        assert_eq!(
            w("cmdline:*java -Dx=y*"),
            (
                s("cmdline:*java -Dx=y*"),
                WatchBy::Cmdline,
                s("*java -Dx=y*")
            )
        );
        assert_eq!(w("j=name:java"), (s("j"), WatchBy::Name, s("java")));
        assert!(parse_watch("").is_err());
        assert!(parse_watch("x=").is_err());
        assert!(parse_watch("=sshd").is_err());
        assert!(parse_watch("cmdline:").is_err());
        assert!(parse_watch("a\tb").is_err());
    }
}
