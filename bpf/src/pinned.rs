//! `kawrap bpf attach|detach|status`: programs attached to an existing
//! cgroup, pinned in the BPF filesystem so they outlive kawrap.
//!
//! Layout: `<bpffs>/kawrap/<cgroup id>/{sockops_link,setsockopt_link,
//! kawrap_config,kawrap_stats}`. The links keep the programs attached; the
//! maps let a later `attach` change the values live and `status` read them.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use aya::maps::{Map, MapData, MapInfo};
use aya::programs::loaded_programs;
use kawrap_core::Config;

use crate::error::Error;
use crate::fs as kfs;
use crate::maps::Counters;
use crate::program::{self, CONFIG_MAP, Loaded, SOCKOPS_PROGRAM, STATS_MAP};
use crate::sys;

const SOCKOPS_LINK: &str = "sockops_link";
const SETSOCKOPT_LINK: &str = "setsockopt_link";

/// What [`attach`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachOutcome {
    /// The programs were attached and pinned.
    Attached {
        /// The kernel's id of the cgroup.
        cgroup_id: u64,
    },
    /// kawrap was attached already: its values were replaced in place,
    /// effective for connections made from now on.
    Updated {
        /// The kernel's id of the cgroup.
        cgroup_id: u64,
    },
}

/// Attaches kawrap to the cgroup v2 directory `cgroup` with `config`, pinned
/// so it stays after this process exits; if it is attached already, updates
/// the values live.
pub fn attach(cgroup: &Path, config: &Config) -> Result<AttachOutcome, Error> {
    kfs::check_cgroup2_dir(cgroup)?;
    let cgroup_id = kfs::cgroup_id(cgroup)?;
    let dir = kfs::pin_root()?.join(cgroup_id.to_string());
    let config_pin = dir.join(CONFIG_MAP);
    if config_pin.exists() {
        let map = MapData::from_pin(&config_pin).map_err(|e| Error::from_bpf(CONFIG_MAP, &e))?;
        program::write_config(&mut Map::Array(map), config)?;
        return Ok(AttachOutcome::Updated { cgroup_id });
    }
    let mut loaded = Loaded::load(config)?;
    let links = loaded.attach(cgroup)?;
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let pinned = (|| {
        loaded.pin_maps(&dir)?;
        for (fd, name) in [(&links.sockops, SOCKOPS_LINK), (&links.setsockopt, SETSOCKOPT_LINK)] {
            let path = dir.join(name);
            sys::obj_pin(fd.as_fd(), &path).map_err(|e| Error::io(format!("pin {}", path.display()), e))?;
        }
        Ok(())
    })();
    if let Err(error) = pinned {
        // Half a pin directory would look attached to the next `attach`.
        let _ = remove_pins(&dir);
        return Err(error);
    }
    Ok(AttachOutcome::Attached { cgroup_id })
}

/// Detaches kawrap from the cgroup directory `cgroup`.
pub fn detach(cgroup: &Path) -> Result<(), Error> {
    let cgroup_id = kfs::cgroup_id(cgroup)?;
    match detach_id(cgroup_id) {
        Err(Error::NotAttached { .. }) => Err(Error::NotAttached { path: cgroup.to_path_buf() }),
        other => other,
    }
}

/// Detaches kawrap from the cgroup with this id; for attachments whose
/// cgroup directory was removed (see [`Attachment::cgroup`]).
pub fn detach_id(cgroup_id: u64) -> Result<(), Error> {
    let not_attached = || Error::NotAttached { path: PathBuf::from(format!("cgroup id {cgroup_id}")) };
    let dir = kfs::pin_root_if_mounted().ok_or_else(not_attached)?.join(cgroup_id.to_string());
    if !dir.is_dir() {
        return Err(not_attached());
    }
    remove_pins(&dir)
}

/// Detaches the pinned links, then removes the pins.
fn remove_pins(dir: &Path) -> Result<(), Error> {
    for name in [SOCKOPS_LINK, SETSOCKOPT_LINK] {
        // A link whose cgroup is gone is detached already (ENOLINK).
        if let Ok(link) = sys::obj_get(&dir.join(name)) {
            match sys::link_detach(link.as_fd()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOLINK) => {}
                Err(e) => return Err(Error::io(format!("detach {}", dir.join(name).display()), e)),
            }
        }
    }
    for name in [SOCKOPS_LINK, SETSOCKOPT_LINK, CONFIG_MAP, STATS_MAP] {
        match fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("unpin {}", dir.join(name).display()), e)),
        }
    }
    fs::remove_dir(dir).map_err(|e| Error::io(format!("remove {}", dir.display()), e))
}

/// One place kawrap is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The cgroup directory; `None` if the cgroup was removed while a pin
    /// kept the attachment (remove it with [`detach_id`]).
    pub cgroup: Option<PathBuf>,
    /// The kernel's id of the cgroup.
    pub cgroup_id: u64,
    /// Pinned by `kawrap bpf attach` (stays until detached); otherwise a
    /// running `kawrap --bpf` owns it and removes it when its command exits.
    pub pinned: bool,
    /// The sock_ops program's id (`bpftool prog show id N`).
    pub program_id: Option<u32>,
    /// The values in force, or why they cannot be read.
    pub config: Result<Config, String>,
    /// Sockets configured so far.
    pub counters: Counters,
}

/// `cgroup /sys/fs/cgroup/db (id 1234, pinned): 300/30/5, rules :5432=60/10/6, policy respect; 12 connects, 3 accepts`
impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cgroup {
            Some(path) => write!(f, "{}", path.display())?,
            None => f.write_str("(cgroup removed)")?,
        }
        let how = if self.pinned { "pinned" } else { "transient, kawrap --bpf" };
        write!(f, " (cgroup id {}, {how}", self.cgroup_id)?;
        if let Some(id) = self.program_id {
            write!(f, ", program id {id}")?;
        }
        f.write_str("): ")?;
        match &self.config {
            Ok(config) => {
                write!(f, "profile {}", config.profile)?;
                if !config.rules.is_empty() {
                    write!(f, ", rules {}", config.rules)?;
                }
                write!(f, ", policy {}", config.policy)?;
            }
            Err(why) => write!(f, "values unreadable: {why}")?,
        }
        let c = &self.counters;
        write!(f, "; {} connects, {} accepts configured", c.connect, c.passive)?;
        if c.forced > 0 || c.respected > 0 {
            write!(f, ", {} own settings replaced, {} kept", c.forced, c.respected)?;
        }
        if c.failed > 0 {
            write!(f, ", {} refused by the kernel", c.failed)?;
        }
        Ok(())
    }
}

/// Every cgroup kawrap is attached to: pinned attachments and the scopes of
/// running `kawrap --bpf` commands, found by asking the kernel which
/// sock_ops programs each cgroup has.
pub fn status() -> Result<Vec<Attachment>, Error> {
    let root = kfs::cgroup2_root()?;
    let pin_root = kfs::pin_root_if_mounted();
    let pins: BTreeSet<u64> = pin_root
        .as_ref()
        .and_then(|dir| fs::read_dir(dir).ok())
        .map(|entries| entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();

    // Program id → its map ids, for kawrap's sock_ops programs only.
    let mut ours: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for info in loaded_programs() {
        let info = info.map_err(|e| Error::from_bpf("list BPF programs", &e))?;
        if info.name_as_str() == Some(SOCKOPS_PROGRAM) {
            let maps = info.map_ids().ok().flatten().unwrap_or_default();
            ours.insert(info.id(), maps);
        }
    }

    let mut found = Vec::new();
    let mut seen = BTreeSet::new();
    for cgroup in kfs::walk_cgroups(&root) {
        let Ok(ids) = sys::sock_ops_programs(&cgroup) else { continue };
        for id in ids {
            let Some(map_ids) = ours.get(&id) else { continue };
            let Ok(cgroup_id) = kfs::cgroup_id(&cgroup) else { continue };
            seen.insert(cgroup_id);
            let (config, counters) = read_maps(map_ids);
            found.push(Attachment {
                cgroup: Some(cgroup.clone()),
                cgroup_id,
                pinned: pins.contains(&cgroup_id),
                program_id: Some(id),
                config,
                counters,
            });
        }
    }
    // Pins whose cgroup is gone: the kernel detached the programs, the pin
    // directory remains until `detach_id`.
    if let Some(pin_root) = &pin_root {
        for cgroup_id in pins.difference(&seen) {
            let dir = pin_root.join(cgroup_id.to_string());
            let config = MapData::from_pin(dir.join(CONFIG_MAP))
                .map_err(|e| e.to_string())
                .and_then(|map| program::read_config(&Map::Array(map)));
            let counters = MapData::from_pin(dir.join(STATS_MAP))
                .map(|map| program::read_stats(&Map::Array(map)))
                .unwrap_or_default();
            found.push(Attachment {
                cgroup: None,
                cgroup_id: *cgroup_id,
                pinned: true,
                program_id: None,
                config,
                counters,
            });
        }
    }
    Ok(found)
}

fn read_maps(map_ids: &[u32]) -> (Result<Config, String>, Counters) {
    let mut config = Err("configuration map not found".to_string());
    let mut counters = Counters::default();
    for &id in map_ids {
        let Ok(info) = MapInfo::from_id(id) else { continue };
        match info.name_as_str() {
            Some(CONFIG_MAP) => {
                config = MapData::from_id(id)
                    .map_err(|e| e.to_string())
                    .and_then(|map| program::read_config(&Map::Array(map)));
            }
            Some(STATS_MAP) => {
                if let Ok(map) = MapData::from_id(id) {
                    counters = program::read_stats(&Map::Array(map));
                }
            }
            _ => {}
        }
    }
    (config, counters)
}
