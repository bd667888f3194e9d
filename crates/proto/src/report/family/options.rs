//! What the collector asks the agent to measure: exclusions, the per-family cap, the
//! `statvfs` deadline and the watched processes. The collector resolves them from its
//! configuration and passes them when it starts the agent, as one argument
//! `--options TOKEN`; an agent started without it uses [`AgentOptions::default`].
//!
//! The token is the hex encoding of UTF-8 lines `key=value` (list keys repeat, one item a
//! line), so it needs no quoting in any shell (POSIX `sh`, `cmd.exe`, PowerShell) and never
//! carries a character a shell or SSH could reinterpret. Unknown keys are ignored, so a newer
//! collector's options reach an older agent; a malformed token is an error the agent reports.
//!
//! Patterns are globs: `*` matches any run of characters (`/` included), `?` one character;
//! everything else matches itself.

use std::fmt;

/// Default cap of members per family and sample.
pub const DEFAULT_MAX_MEMBERS: u32 = 64;
/// Default deadline of one `statvfs`, milliseconds.
pub const DEFAULT_STATFS_TIMEOUT_MS: u32 = 2000;

/// Mount points left out by default: node_exporter's, as globs.
pub const DEFAULT_FS_EXCLUDE_MOUNTS: &[&str] = &[
    "/dev",
    "/dev/*",
    "/proc",
    "/proc/*",
    "/sys",
    "/sys/*",
    "/run/credentials/*",
    "/var/lib/docker/*",
    "/var/lib/containers/storage/*",
];

/// Filesystem types left out by default: node_exporter's pseudo and container filesystems
/// (tmpfs is kept).
pub const DEFAULT_FS_EXCLUDE_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "erofs",
    "sysfs",
    "tracefs",
];

/// Interfaces left out by default: loopback and container veths and bridges.
pub const DEFAULT_IF_EXCLUDE: &[&str] = &[
    "lo", "veth*", "docker*", "br-*", "cali*", "flannel*", "cni*", "virbr*", "vnet*",
];

/// Block devices left out by default: partitions' parents are kept, loop, ram and zram
/// devices and device-mapper/RAID members' duplicates are not.
pub const DEFAULT_DEV_EXCLUDE: &[&str] = &["loop*", "ram*", "zram*", "sr*", "fd*"];

/// How a watched process is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchBy {
    /// The process name (`/proc/PID/comm`, at most 15 bytes on Linux) matches the glob.
    Name,
    /// The command line, arguments joined by spaces, matches the glob.
    Cmdline,
}

/// A process that must be running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// The name it is reported and alerted under (the member key).
    pub name: String,
    /// What the pattern is matched against.
    pub by: WatchBy,
    /// A glob.
    pub pattern: String,
}

/// The agent's options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOptions {
    /// Most members per family and sample; the rest are counted in the section's `cut`.
    pub max_members: u32,
    /// Deadline of one `statvfs`, milliseconds; a mount that takes longer is `hanging`.
    pub statfs_timeout_ms: u32,
    /// Mount points not measured (globs).
    pub fs_exclude_mounts: Vec<String>,
    /// Filesystem types not measured.
    pub fs_exclude_types: Vec<String>,
    /// Interfaces not measured (globs).
    pub if_exclude: Vec<String>,
    /// Block devices not measured (globs).
    pub dev_exclude: Vec<String>,
    /// Processes that must be running.
    pub watch: Vec<Watch>,
}

impl Default for AgentOptions {
    fn default() -> AgentOptions {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        AgentOptions {
            max_members: DEFAULT_MAX_MEMBERS,
            statfs_timeout_ms: DEFAULT_STATFS_TIMEOUT_MS,
            fs_exclude_mounts: owned(DEFAULT_FS_EXCLUDE_MOUNTS),
            fs_exclude_types: owned(DEFAULT_FS_EXCLUDE_TYPES),
            if_exclude: owned(DEFAULT_IF_EXCLUDE),
            dev_exclude: owned(DEFAULT_DEV_EXCLUDE),
            watch: Vec::new(),
        }
    }
}

/// Why a token could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionsError(pub String);

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "agent options: {}", self.0)
    }
}

impl std::error::Error for OptionsError {}

/// Longest token accepted, characters.
pub const MAX_TOKEN: usize = 64 * 1024;

impl AgentOptions {
    /// The options as one shell-safe argument (hex of `key=value` lines).
    ///
    /// Values holding a line break cannot be encoded and are left out; the collector's
    /// configuration check refuses them before this is ever called.
    pub fn to_token(&self) -> String {
        let mut text = String::new();
        let mut line = |key: &str, value: &str| {
            if !value.contains(['\n', '\r']) {
                text.push_str(key);
                text.push('=');
                text.push_str(value);
                text.push('\n');
            }
        };
        line("max_members", &self.max_members.to_string());
        line("statfs_timeout_ms", &self.statfs_timeout_ms.to_string());
        // An empty list is written as one empty item so that "exclude nothing" differs
        // from "not said" (the default list).
        for (key, list) in [
            ("fs_exclude_mount", &self.fs_exclude_mounts),
            ("fs_exclude_type", &self.fs_exclude_types),
            ("if_exclude", &self.if_exclude),
            ("dev_exclude", &self.dev_exclude),
        ] {
            if list.is_empty() {
                line(key, "");
            }
            for item in list {
                line(key, item);
            }
        }
        for w in &self.watch {
            let by = match w.by {
                WatchBy::Name => "name",
                WatchBy::Cmdline => "cmdline",
            };
            if !w.name.contains('\t') {
                line("watch", &format!("{}\t{by}\t{}", w.name, w.pattern));
            }
        }
        hex_encode(text.as_bytes())
    }

    /// Reads a token written by [`AgentOptions::to_token`]. Lists that the token names
    /// replace the defaults; lists it does not name keep them.
    pub fn from_token(token: &str) -> Result<AgentOptions, OptionsError> {
        if token.len() > MAX_TOKEN {
            return Err(OptionsError(format!(
                "token of {} characters is longer than {MAX_TOKEN}",
                token.len()
            )));
        }
        let bytes = hex_decode(token).ok_or_else(|| OptionsError("not hex".into()))?;
        let text = String::from_utf8(bytes).map_err(|_| OptionsError("not UTF-8".into()))?;
        let mut out = AgentOptions::default();
        let mut seen: Vec<&str> = Vec::new();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                return Err(OptionsError(format!("line `{line}` has no `=`")));
            };
            let list = match key {
                "max_members" => {
                    out.max_members = number(key, value)?;
                    continue;
                }
                "statfs_timeout_ms" => {
                    out.statfs_timeout_ms = number(key, value)?;
                    continue;
                }
                "fs_exclude_mount" => &mut out.fs_exclude_mounts,
                "fs_exclude_type" => &mut out.fs_exclude_types,
                "if_exclude" => &mut out.if_exclude,
                "dev_exclude" => &mut out.dev_exclude,
                "watch" => {
                    let mut parts = value.splitn(3, '\t');
                    let (Some(name), Some(by), Some(pattern)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(OptionsError(format!(
                            "watch `{value}` is not name/by/pattern"
                        )));
                    };
                    let by = match by {
                        "name" => WatchBy::Name,
                        "cmdline" => WatchBy::Cmdline,
                        other => {
                            return Err(OptionsError(format!("watch by `{other}` is unknown")));
                        }
                    };
                    out.watch.push(Watch {
                        name: name.to_owned(),
                        by,
                        pattern: pattern.to_owned(),
                    });
                    continue;
                }
                // A newer collector's option: ignored.
                _ => continue,
            };
            if !seen.contains(&key) {
                seen.push(key);
                list.clear();
            }
            if !value.is_empty() {
                list.push(value.to_owned());
            }
        }
        Ok(out)
    }
}

fn number(key: &str, value: &str) -> Result<u32, OptionsError> {
    value
        .parse()
        .map_err(|_| OptionsError(format!("{key} `{value}` is not a number")))
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let value = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    digits
        .chunks(2)
        .map(|pair| Some(value(pair[0])? << 4 | value(pair[1])?))
        .collect()
}

/// Whether `text` matches the glob `pattern` (`*` any run, `?` one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether `text` matches any of `patterns`.
pub fn any_match(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("/proc/*", "/proc/sys/fs/binfmt_misc"));
        assert!(!glob_match("/proc/*", "/proc"));
        assert!(glob_match("veth*", "veth1a2b"));
        assert!(glob_match("lo", "lo"));
        assert!(!glob_match("lo", "lo0"));
        assert!(glob_match("sd?", "sda"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b", "xxaxxbxx"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn token_round_trips_and_is_shell_safe() {
        let mut o = AgentOptions {
            max_members: 8,
            ..AgentOptions::default()
        };
        o.if_exclude.clear();
        o.watch.push(Watch {
            name: "postgres main".into(),
            by: WatchBy::Cmdline,
            pattern: "*postgres -D '/var/lib/$x'*".into(),
        });
        let token = o.to_token();
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(AgentOptions::from_token(&token), Ok(o));
    }

    #[test]
    fn unknown_keys_are_ignored_and_bad_tokens_named() {
        let token = hex_encode(b"max_members=3\nfuture_thing=1\n");
        assert_eq!(
            AgentOptions::from_token(&token).map(|o| o.max_members),
            Ok(3)
        );
        assert!(AgentOptions::from_token("zz").is_err());
        assert!(AgentOptions::from_token(&hex_encode(b"max_members=x\n")).is_err());
    }
}
