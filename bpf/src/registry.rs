//! The transient cgroups of `kawrap --bpf`, listed so that a later kawrap
//! removes what a launcher left: one killed with SIGKILL, or one whose
//! command left processes running (they stay covered until they exit).
//!
//! One file per scope in /run/kawrap/scopes (gone at reboot, like the
//! cgroups), named like the scope's directory and holding its path relative
//! to the cgroup v2 root. The launcher holds an exclusive flock(2) on its
//! file for as long as it runs, so a file nobody holds belongs to a
//! launcher that is gone — whatever its pid or pid namespace.
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::fs::{self as kfs, Cgroup2};
use crate::sys;

/// The registry directory.
pub(crate) struct Registry {
    dir: PathBuf,
}

/// A scope's entry, locked by the running launcher.
pub(crate) struct Entry {
    path: PathBuf,
    /// Holds the lock; closing it releases it.
    _file: File,
}

/// A scope the registry lists, for `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Relative to the cgroup v2 root.
    pub(crate) relative: PathBuf,
    /// Its launcher still runs.
    pub(crate) launcher_running: bool,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry { dir: Path::new(kfs::RUN_DIR).join("scopes") }
    }

    /// Records a scope named `name` at `relative`, locked by this process
    /// until the entry is dropped or removed. `None` when the name is taken
    /// (a scope of a launcher with the same pid, in another pid namespace
    /// or from before a pid wrapped around).
    pub(crate) fn claim(&self, name: &str, relative: &Path) -> io::Result<Option<Entry>> {
        fs::create_dir_all(&self.dir)?;
        // An unnamed file, locked and written before it gets its name: no
        // other kawrap ever sees it unlocked or empty.
        let mut file = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
            .mode(0o644)
            .open(&self.dir)?;
        sys::lock(&file, true)?;
        file.write_all(relative.as_os_str().as_encoded_bytes())?;
        let path = self.dir.join(name);
        let from = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        let to = sys::c_path(&path)?;
        // SAFETY: NUL-terminated paths; linkat only reads them.
        let rc = unsafe {
            libc::linkat(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW)
        };
        if rc != 0 {
            let error = io::Error::last_os_error();
            return if error.raw_os_error() == Some(libc::EEXIST) { Ok(None) } else { Err(error) };
        }
        Ok(Some(Entry { path, _file: file }))
    }

    /// Removes the scopes whose launcher is gone and in which no process is
    /// left, and their entries. Best effort: what cannot be removed now is
    /// tried again next time.
    pub(crate) fn collect(&self, cgroup2: &Cgroup2) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(mut file) = File::open(&path) else { continue };
            if sys::lock(&file, false).is_err() {
                continue; // its launcher runs
            }
            let mut relative = String::new();
            if file.read_to_string(&mut relative).is_err() {
                continue;
            }
            let dir = cgroup2.root().join(relative.trim_start_matches('/'));
            let gone = match kfs::remove_cgroup_tree(&dir) {
                Ok(()) => true,
                // Its processes still run, covered: later.
                Err(_) => false,
            };
            if gone {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Every scope listed, for `status`.
    pub(crate) fn list(&self) -> Vec<Listed> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut listed = Vec::new();
        for entry in entries.flatten() {
            let Ok(mut file) = File::open(entry.path()) else { continue };
            let mut relative = String::new();
            if file.read_to_string(&mut relative).is_err() {
                continue;
            }
            let launcher_running = sys::lock(&file, false).is_err();
            listed
                .push(Listed { relative: PathBuf::from(relative.trim_start_matches('/')), launcher_running });
        }
        listed
    }
}

impl Entry {
    /// Removes the entry: its scope is gone.
    pub(crate) fn remove(self) {
        let _ = fs::remove_file(&self.path);
    }
}
