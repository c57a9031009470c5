//! `kawrap bpf status`: where kawrap's programs are attached, with which
//! values, and what is pinned.
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::path::PathBuf;

use kawrap_core::Config;

use crate::error::Error;
use crate::fs as kfs;
use crate::host::Host;
use crate::maps::{Counters, Kind};
use crate::pins::{Cached, Named};
use crate::program::{self, Maps, Programs};
use crate::sys;

/// Who attached kawrap to a cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttachedBy {
    /// `kawrap --bpf`: a transient cgroup, removed when no process is left
    /// in it.
    Run {
        /// The `kawrap --bpf` that made it still runs (else its command's
        /// descendants, or the command of a killed kawrap, still do).
        launcher_running: bool,
    },
    /// `kawrap bpf attach`: until detached or the cgroup is removed.
    Attach,
    /// A copy pinned by `kawrap bpf pin` (attached by systemd, say).
    Pinned {
        /// The name it is pinned under; `None` if it was unpinned since.
        name: Option<String>,
    },
}

/// One cgroup kawrap's programs are attached to.
#[derive(Clone, Debug, PartialEq)]
pub struct Attachment {
    /// The cgroup directory, for a person.
    pub cgroup: String,
    /// The kernel's id of the cgroup.
    pub cgroup_id: u64,
    /// Who attached it.
    pub attached_by: AttachedBy,
    /// The sock_ops program's id (`bpftool prog show id N`).
    pub program_id: u32,
    /// The values in force, or why they cannot be read.
    pub config: Result<Config, String>,
    /// Sockets configured so far in this cgroup.
    pub counters: Counters,
}

/// Everything `kawrap bpf status` shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Status {
    /// Every cgroup kawrap is attached to.
    pub attachments: Vec<Attachment>,
    /// kawrap's directory on the BPF filesystem, if one is mounted.
    pub pin_dir: Option<PathBuf>,
    /// Programs pinned for reuse by `kawrap --bpf` and `kawrap bpf attach`.
    pub cached: Vec<Cached>,
    /// Copies pinned by `kawrap bpf pin`.
    pub named: Vec<Named>,
}

impl Host {
    /// Every cgroup kawrap is attached to, found by asking the kernel which
    /// sock_ops programs each cgroup has, and what is pinned.
    pub fn status(&self) -> Result<Status, Error> {
        let named = self.pins.as_ref().map(|p| p.named()).unwrap_or_default();
        let mut named_ids = BTreeMap::new();
        for copy in &named {
            if let Ok(ids) = Programs::open(&copy.path).and_then(|p| p.ids().map_err(std::io::Error::other)) {
                named_ids.insert(ids[0], copy.name.clone());
            }
        }
        let runs = self.registry.list();
        // Program id → its maps, for kawrap's programs only (None: another
        // program, or one whose maps cannot be read).
        let mut known: BTreeMap<u32, Option<Maps>> = BTreeMap::new();
        let mut attachments = Vec::new();
        for dir in kfs::walk_cgroups(self.cgroup2.root()) {
            let Ok(file) = sys::open_cgroup(&dir) else { continue };
            let attached = match sys::prog_query(&file, sys::BPF_CGROUP_SOCK_OPS) {
                Ok(attached) => attached,
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Err(permission(e)),
                Err(_) => continue,
            };
            for id in attached.ids {
                if let Entry::Vacant(entry) = known.entry(id) {
                    let maps = match program::is_kawrap(id) {
                        Ok(false) => None,
                        Ok(true) => Maps::of_program(id).ok(),
                        Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Err(permission(e)),
                        Err(_) => None,
                    };
                    entry.insert(maps);
                }
                let Some(Some(maps)) = known.get(&id) else { continue };
                let Ok(cgroup_id) = kfs::cgroup_id(&dir) else { continue };
                let raw = maps.read(cgroup_id);
                let attached_by = match raw.as_ref().and_then(|r| r.kind()) {
                    Some(Kind::Run) => {
                        let relative = self.cgroup2.relative(&dir);
                        let launcher_running =
                            runs.iter().any(|r| Some(r.relative.as_path()) == relative && r.launcher_running);
                        AttachedBy::Run { launcher_running }
                    }
                    Some(Kind::Pinned) => AttachedBy::Pinned { name: named_ids.get(&id).cloned() },
                    _ => AttachedBy::Attach,
                };
                let config = raw.ok_or_else(|| "no values yet".to_string()).and_then(|r| r.decode());
                attachments.push(Attachment {
                    cgroup: self.display(&dir),
                    cgroup_id,
                    attached_by,
                    program_id: id,
                    config,
                    counters: maps.counters(cgroup_id),
                });
            }
        }
        Ok(Status {
            attachments,
            pin_dir: self.pin_dir().map(PathBuf::from),
            cached: self.pins.as_ref().map(|p| p.cached()).unwrap_or_default(),
            named,
        })
    }
}

fn permission(error: std::io::Error) -> Error {
    Error::io("read which programs are attached (needs CAP_SYS_ADMIN)", error)
}

/// `/sys/fs/cgroup/db (cgroup id 1234, kawrap bpf attach, program id 56): profile 300/30/5, policy respect; 12 connects, 3 accepts configured`
impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let by = match &self.attached_by {
            AttachedBy::Run { launcher_running: true } => "kawrap --bpf".to_string(),
            AttachedBy::Run { launcher_running: false } => {
                "kawrap --bpf, which has exited: removed once its processes have".to_string()
            }
            AttachedBy::Attach => "kawrap bpf attach".to_string(),
            AttachedBy::Pinned { name: Some(name) } => format!("pinned copy {name}"),
            AttachedBy::Pinned { name: None } => "a pinned copy since unpinned".to_string(),
        };
        write!(f, "{} (cgroup id {}, {by}, program id {}): ", self.cgroup, self.cgroup_id, self.program_id)?;
        match &self.config {
            Ok(config) => write_config(f, config)?,
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

fn write_config(f: &mut fmt::Formatter<'_>, config: &Config) -> fmt::Result {
    write!(f, "profile {}", config.profile)?;
    if !config.rules.is_empty() {
        write!(f, ", rules {}", config.rules)?;
    }
    write!(f, ", policy {}", config.policy)
}

/// `/sys/fs/bpf/kawrap/programs/0.1.0-0123456789abcdef (this kawrap's, reused by every run)`
impl fmt::Display for Cached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match (self.incomplete, self.current) {
            (true, _) => "being pinned, or left half-done by a killed kawrap",
            (false, true) => "this kawrap's, reused by every run",
            (false, false) => "another kawrap build's",
        };
        write!(f, "{} ({what})", self.path.display())
    }
}

/// `backup.service: /sys/fs/bpf/kawrap/pinned/backup.service, profile 60/10/6, policy respect`
impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}, ", self.name, self.path.display())?;
        match &self.config {
            Ok(config) => write_config(f, config)?,
            Err(why) => write!(f, "values unreadable: {why}")?,
        }
        match &self.build {
            Some(build) if build == program::BUILD => Ok(()),
            Some(build) => write!(f, " (pinned by kawrap {build})"),
            None => f.write_str(" (pinned by an unknown kawrap)"),
        }
    }
}
