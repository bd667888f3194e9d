//! A small tmpfs mounted in a test's temporary directory, unmounted on drop,
//! to fill a filesystem for real without touching the machine's disks.
//!
//! Mounting needs root (CI runs as root). Without the privilege, or without
//! `mount`, [`Tmpfs::mount`] returns an [`Unavailable`] error, which
//! `skip_or_fail!` turns into a skip unless `EDGEMON_REQUIRE_SERVERS=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::{Unavailable, is_root, run_tool};

/// A mounted tmpfs; unmounted (lazily if still busy) when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it, e.g. `3m`) on `dir`,
    /// creating the directory.
    pub fn mount(dir: &Path, size: &str) -> Result<Tmpfs> {
        if !is_root() {
            return Err(Unavailable("mounting a tmpfs needs root".into()).into());
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        run_tool(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size},mode=0755"))
                .arg("tmpfs")
                .arg(dir),
        )
        .map_err(|err| {
            Unavailable(format!(
                "cannot mount a tmpfs on {}: {err:#}",
                dir.display()
            ))
        })?;
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Free bytes on the tmpfs, as `df` counts them.
    pub fn avail(&self) -> u64 {
        edgemon::buffer::fs_space(&self.dir).map_or(0, |s| s.avail)
    }

    /// Writes `name` until the filesystem is full; returns the bytes written.
    pub fn fill(&self, name: &str) -> u64 {
        use std::io::Write;
        let path = self.dir.join(name);
        let Ok(mut file) = std::fs::File::create(&path) else {
            return 0;
        };
        let chunk = vec![0xA5u8; 4096];
        let mut written = 0;
        while file.write_all(&chunk).is_ok() {
            written += chunk.len() as u64;
        }
        // The last partial block, if any.
        for _ in 0..4096 {
            if file.write_all(&[0]).is_err() {
                break;
            }
            written += 1;
        }
        let _ = file.sync_all();
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds a file open (a process being killed): detach it now,
            // the kernel frees it with the last reference.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}
