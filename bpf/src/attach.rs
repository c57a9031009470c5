//! `kawrap bpf attach|detach|pin|unpin`: programs attached to an existing
//! cgroup, and copies pinned for systemd.
//!
//! An attachment lives with its cgroup, as systemd's BPFProgram= ones do:
//! it stays after kawrap exits and ends when the cgroup is removed — for a
//! service, at its next restart. What survives restarts and reboots is a
//! pinned copy (`pin`) that systemd attaches at every start.
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use kawrap_core::Config;

use crate::error::Error;
use crate::fs as kfs;
use crate::host::Host;
use crate::maps::{Kind, RawConfig};
use crate::neighbours;
use crate::pins::{PinDir, PinOutcome};
use crate::program::{self, ATTACH_TYPES, Maps};
use crate::sys;

/// What [`Host::attach`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachOutcome {
    /// The programs were attached.
    Attached {
        /// The kernel's id of the cgroup.
        cgroup_id: u64,
    },
    /// kawrap was attached already (or a concurrent `attach` was first):
    /// its values were replaced in place, effective for connections made
    /// from now on.
    Updated {
        /// The kernel's id of the cgroup.
        cgroup_id: u64,
    },
    /// Another build's programs were attached; this build's replace them.
    Replaced {
        /// The kernel's id of the cgroup.
        cgroup_id: u64,
    },
}

impl Host {
    /// Attaches kawrap to the cgroup v2 directory `cgroup` with `config`,
    /// for as long as the cgroup exists; if it is attached already, updates
    /// the values live.
    pub fn attach(&self, cgroup: &Path, config: &Config) -> Result<AttachOutcome, Error> {
        kfs::check_cgroup2_dir(cgroup)?;
        let cgroup_id = kfs::cgroup_id(cgroup)?;
        let file =
            sys::open_cgroup(cgroup).map_err(|e| Error::NoSuchCgroup { path: cgroup.into(), source: e })?;
        let (programs, _) = self.programs()?;
        let ours = programs.ids()?;
        // Without CAP_SYS_ADMIN the programs there cannot be named: then
        // kawrap only finds out at attach time that it is there already.
        let present = program::kawrap_programs_on(&file, ATTACH_TYPES[0]).unwrap_or_default();
        let already = present.contains(&ours[0]);
        if !already {
            neighbours::check(self.cgroup2.root(), cgroup, |dir| self.display(dir))?;
        }
        programs.attach(&file).map_err(|e| {
            Error::from_bpf(&format!("kawrap's programs (attach to {})", cgroup.display()), &e)
        })?;
        programs
            .maps
            .write(cgroup_id, &RawConfig::encode(config, Kind::Attach, cgroup_id))
            .map_err(|e| Error::io(format!("write the configuration of {}", cgroup.display()), e))?;
        // Other builds' copies give way; a copy pinned for systemd stays
        // (it comes back at the next start anyway).
        let replaceable =
            |id: &u32| !ours.contains(id) && !Maps::of_program(*id).is_ok_and(|maps| maps.is_pinned_copy());
        let mut replaced = false;
        for attach_type in ATTACH_TYPES {
            let others = program::kawrap_programs_on(&file, attach_type).unwrap_or_default();
            for id in others.into_iter().filter(replaceable) {
                detach_id(&file, id, attach_type)
                    .map_err(|e| Error::io(format!("detach program {id} from {}", cgroup.display()), e))?;
                replaced = true;
            }
        }
        Ok(match (already, replaced) {
            (true, _) => AttachOutcome::Updated { cgroup_id },
            (false, true) => AttachOutcome::Replaced { cgroup_id },
            (false, false) => AttachOutcome::Attached { cgroup_id },
        })
    }

    /// Detaches every copy of kawrap's programs from the cgroup `cgroup`.
    pub fn detach(&self, cgroup: &Path) -> Result<(), Error> {
        kfs::check_cgroup2_dir(cgroup)?;
        let file =
            sys::open_cgroup(cgroup).map_err(|e| Error::NoSuchCgroup { path: cgroup.into(), source: e })?;
        if !detach_kawrap(&file, |_| true)
            .map_err(|e| Error::io(format!("detach from {}", cgroup.display()), e))?
        {
            return Err(Error::NotAttached { path: cgroup.to_path_buf() });
        }
        Ok(())
    }

    /// Detaches kawrap from every cgroup it was attached to with `attach`
    /// or through a pinned copy (running `kawrap --bpf` commands keep
    /// theirs until they end), and removes everything kawrap pinned.
    /// Returns the cgroups it was detached from.
    pub fn detach_all(&self) -> Result<Vec<String>, Error> {
        // With pins, only the programs pinned there (a test's private pin
        // directory stays apart from the rest of the machine); without, any
        // copy of kawrap's.
        let pinned = self.pins.as_ref().map(|pins| pins.program_ids());
        let ours = |id: u32| {
            pinned.as_ref().map_or_else(|| program::is_kawrap(id).unwrap_or(false), |ids| ids.contains(&id))
        };
        let mut detached = Vec::new();
        for dir in kfs::walk_cgroups(self.cgroup2.root()) {
            let Ok(file) = sys::open_cgroup(&dir) else { continue };
            let Ok(cgroup_id) = kfs::cgroup_id(&dir) else { continue };
            let not_a_run = |id: u32| {
                ours(id)
                    && Maps::of_program(id)
                        .map(|maps| maps.read(cgroup_id).and_then(|raw| raw.kind()) != Some(Kind::Run))
                        .unwrap_or(true)
            };
            if detach_kawrap(&file, not_a_run)
                .map_err(|e| Error::io(format!("detach from {}", dir.display()), e))?
            {
                detached.push(self.display(&dir));
            }
        }
        if let Some(pins) = &self.pins {
            pins.remove_all()?;
        }
        Ok(detached)
    }

    /// Pins a copy of the programs under `name` with `config` built in, for
    /// systemd's BPFProgram= (see [`PinDir`](crate::pins)); mounts a BPF
    /// filesystem at /sys/fs/bpf if none is mounted. Returns the directory.
    pub fn pin(&mut self, name: &str, config: &Config) -> Result<(PinOutcome, PathBuf), Error> {
        self.pins_or_mount()?.pin_named(name, config)
    }

    /// Where [`Host::pin`] puts the copy named `name` (under /sys/fs/bpf
    /// when no BPF filesystem is mounted yet): what systemd's BPFProgram=
    /// lines name, with `sock_ops` and `setsockopt` in it.
    pub fn pinned_path(&self, name: &str) -> Result<PathBuf, Error> {
        crate::pins::check_name(name)?;
        let pins = self.pins.clone().unwrap_or_else(|| PinDir::new(Path::new(kfs::BPFFS).join(kfs::PIN_DIR)));
        Ok(pins.named_dir(name))
    }

    /// Removes the copy pinned under `name`.
    pub fn unpin(&self, name: &str) -> Result<PathBuf, Error> {
        match &self.pins {
            Some(pins) => pins.unpin_named(name),
            None => Err(Error::NotPinned { name: name.to_string() }),
        }
    }

    /// Removes the programs pinned for reuse; the next run loads (and pins)
    /// them again.
    pub fn clear_cache(&self) -> Result<(), Error> {
        match &self.pins {
            Some(pins) => pins.clear_cache(),
            None => Ok(()),
        }
    }
}

fn detach_id(cgroup: &std::fs::File, id: u32, attach_type: u32) -> std::io::Result<()> {
    let program = sys::prog_by_id(id)?;
    match sys::prog_detach(program.as_fd(), cgroup, attach_type) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// Detaches kawrap's programs that `which` selects from the cgroup open as
/// `cgroup`; whether there were any.
fn detach_kawrap(cgroup: &std::fs::File, which: impl Fn(u32) -> bool) -> std::io::Result<bool> {
    let mut any = false;
    for attach_type in ATTACH_TYPES {
        for id in program::kawrap_programs_on(cgroup, attach_type)? {
            if which(id) {
                detach_id(cgroup, id, attach_type)?;
                any = true;
            }
        }
    }
    Ok(any)
}
