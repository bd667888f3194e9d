//! Family `processes`: for each watched process of the options, how many running
//! processes match it, by name (`/proc/PID/comm`) or by command line (`/proc/PID/cmdline`,
//! arguments joined by spaces; its first 4 KiB, one read per process: compilers' command
//! lines run to tens of KiB, and a scan of every process each sample must stay cheap). Threads are not counted (only `/proc/PID`, not `task/`). With
//! no watch configured the section is empty and `/proc` is not scanned.

use edgemon_proto::report::family::Section;
use edgemon_proto::report::family::options::{Watch, WatchBy, glob_match};
use edgemon_proto::report::family::processes::Watched;

use super::read_attr;

/// A running process as the watches see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// `comm`, without its newline.
    pub name: String,
    /// `cmdline` with NULs as spaces, trailing ones dropped; empty for kernel threads.
    pub cmdline: String,
}

/// `cmdline`'s NUL-separated arguments as one line.
pub fn join_cmdline(raw: &[u8]) -> String {
    let trimmed = raw.strip_suffix(b"\0").unwrap_or(raw);
    let text: Vec<u8> = trimmed
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    String::from_utf8_lossy(&text).into_owned()
}

/// How many of `procs` each watch matches, in the watches' order.
pub fn count(watches: &[Watch], procs: &[Proc]) -> Vec<Watched> {
    watches
        .iter()
        .map(|w| {
            let n = procs
                .iter()
                .filter(|p| match w.by {
                    WatchBy::Name => glob_match(&w.pattern, &p.name),
                    WatchBy::Cmdline => !p.cmdline.is_empty() && glob_match(&w.pattern, &p.cmdline),
                })
                .count();
            Watched {
                name: w.name.clone(),
                count: Some(n as u64),
            }
        })
        .collect()
}

/// The processes of `/proc` now (those that vanish while read are skipped), with their names
/// and command lines when asked for (each is one file per process).
fn scan(need_name: bool, need_cmdline: bool) -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut buf = Vec::with_capacity(4096);
    let mut path = std::path::PathBuf::with_capacity(32);
    dir.filter_map(|e| {
        let e = e.ok()?;
        let name = e.file_name();
        let pid = name.to_str()?;
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        path.clear();
        path.push("/proc");
        path.push(pid);
        let comm = if need_name {
            path.push("comm");
            read_attr(&path, &mut buf)?;
            String::from_utf8_lossy(buf.strip_suffix(b"\n").unwrap_or(&buf)).into_owned()
        } else {
            path.push("comm");
            String::new()
        };
        let cmdline = if need_cmdline {
            path.set_file_name("cmdline");
            read_attr(&path, &mut buf)?;
            join_cmdline(&buf)
        } else {
            String::new()
        };
        Some(Proc {
            name: comm,
            cmdline,
        })
    })
    .collect()
}

/// The processes section for `watches`, measured now.
pub fn measure(watches: &[Watch]) -> Section {
    if watches.is_empty() {
        return Section::from_typed::<Watched>(&[]);
    }
    let need_cmdline = watches.iter().any(|w| w.by == WatchBy::Cmdline);
    let need_name = watches.iter().any(|w| w.by == WatchBy::Name);
    Section::from_typed(&count(watches, &scan(need_name, need_cmdline)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(name: &str, by: WatchBy, pattern: &str) -> Watch {
        Watch {
            name: name.into(),
            by,
            pattern: pattern.into(),
        }
    }

    #[test]
    fn watches_count_by_name_and_by_command_line() {
        let procs = [
            Proc {
                name: "sshd".into(),
                cmdline: join_cmdline(b"/usr/sbin/sshd\0-D\0"),
            },
            Proc {
                name: "postgres".into(),
                cmdline: join_cmdline(b"/usr/lib/postgresql/15/bin/postgres\0-D\0/var/lib/pg\0"),
            },
            Proc {
                name: "postgres".into(),
                cmdline: "postgres: checkpointer".into(),
            },
            Proc {
                name: "kworker/0:1".into(),
                cmdline: String::new(),
            },
        ];
        assert_eq!(procs[0].cmdline, "/usr/sbin/sshd -D");
        let got = count(
            &[
                watch("sshd", WatchBy::Name, "sshd"),
                watch("pg main", WatchBy::Cmdline, "*postgres -D *"),
                watch("pg", WatchBy::Name, "postgres"),
                watch("cron", WatchBy::Name, "cron"),
                watch("all", WatchBy::Cmdline, "*"),
            ],
            &procs,
        );
        let counts: Vec<(&str, Option<u64>)> =
            got.iter().map(|w| (w.name.as_str(), w.count)).collect();
        assert_eq!(
            counts,
            [
                ("sshd", Some(1)),
                ("pg main", Some(1)),
                ("pg", Some(2)),
                ("cron", Some(0)),
                ("all", Some(3))
            ]
        );
    }

    #[test]
    fn this_process_is_found_by_name() {
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        let s = measure(&[watch("me", WatchBy::Name, me.trim())]);
        let w: Vec<Watched> = s.typed();
        assert!(w[0].count.is_some_and(|n| n >= 1), "{w:?}");
    }
}
