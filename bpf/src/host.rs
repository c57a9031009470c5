//! This machine as the eBPF mode sees it: the cgroup v2 hierarchy, kawrap's
//! directory on the BPF filesystem, and the list of transient cgroups.
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::Error;
use crate::fs::{self as kfs, Cgroup2, Mounts};
use crate::pins::{Origin, PinDir};
use crate::program::{Programs, Variant};
use crate::registry::Registry;

/// Where kawrap finds cgroup v2 and its pins; every operation of the eBPF
/// mode is a method of it.
pub struct Host {
    pub(crate) cgroup2: Cgroup2,
    pub(crate) pins: Option<PinDir>,
    pub(crate) registry: Registry,
}

impl Host {
    /// This machine's cgroup v2 (mounted privately for as long as the Host
    /// lives when the system has not mounted it) and BPF filesystem (kawrap
    /// keeps its verified programs there for the next run when one is
    /// mounted; it mounts none itself to run a command). Removes the
    /// transient cgroups that launchers left and no process uses any more.
    pub fn open() -> Result<Host, Error> {
        let mounts = Mounts::read()?;
        Host::with_pins(&mounts, mounts.pin_root())
    }

    /// Like [`Host::open`], with kawrap's pins in `dir` (a directory on a
    /// BPF filesystem) instead of `<bpffs>/kawrap`: what is pinned there is
    /// separate from what other kawraps on the machine use.
    pub fn with_pin_dir(dir: PathBuf) -> Result<Host, Error> {
        Host::with_pins(&Mounts::read()?, Some(dir))
    }

    fn with_pins(mounts: &Mounts, pins: Option<PathBuf>) -> Result<Host, Error> {
        let host = Host {
            cgroup2: Cgroup2::find_or_mount(mounts)?,
            pins: pins.map(PinDir::new),
            registry: Registry::new(),
        };
        host.registry.collect(&host.cgroup2);
        Ok(host)
    }

    /// The root of the cgroup v2 hierarchy (`/proc/self/fd/N` under a
    /// private mount).
    pub fn cgroup2_root(&self) -> &Path {
        self.cgroup2.root()
    }

    /// kawrap's directory on the BPF filesystem, if one is mounted.
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pins.as_ref().map(PinDir::root)
    }

    /// A cgroup directory for a person (see [`Cgroup2::display`]).
    pub fn display(&self, dir: &Path) -> String {
        self.cgroup2.display(dir)
    }

    /// This build's programs: pinned by an earlier run, or loaded now (and
    /// pinned for the next one if there is a BPF filesystem).
    pub(crate) fn programs(&self) -> Result<(Programs, Origin), Error> {
        if let Some(pins) = &self.pins {
            return pins.programs();
        }
        let started = Instant::now();
        let programs = Programs::load(Variant::PerCgroup, None)?;
        let kept = Err("no BPF filesystem is mounted".to_string());
        Ok((programs, Origin::Loaded { took: started.elapsed(), kept }))
    }

    /// kawrap's pins, mounting a BPF filesystem at /sys/fs/bpf when none is
    /// mounted: for what must outlive kawrap.
    pub(crate) fn pins_or_mount(&mut self) -> Result<PinDir, Error> {
        if let Some(pins) = &self.pins {
            return Ok(pins.clone());
        }
        let pins = PinDir::new(kfs::pin_root_or_mount()?);
        self.pins = Some(pins.clone());
        Ok(pins)
    }
}
