//! A transient cgroup with kawrap's programs attached: the `kawrap --bpf`
//! mode. Everything started in it, and everything those processes fork,
//! gets the profile, whatever its libc, linking or privileges.
//!
//! The programs are attached to the cgroup itself (BPF_PROG_ATTACH, not a
//! link held by kawrap), so the attachment lives exactly as long as the
//! cgroup: a killed kawrap leaves its command covered, and a command's
//! descendants that outlive it stay covered. Whoever removes the empty
//! cgroup detaches the programs with it: kawrap when the command ends, or
//! the next kawrap for what a launcher left (see registry.rs).
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kawrap_core::Config;

use crate::error::Error;
use crate::fs as kfs;
use crate::host::Host;
use crate::maps::{Counters, Kind, RawConfig};
use crate::neighbours;
use crate::pins::Origin;
use crate::program::Programs;
use crate::registry::Entry;
use crate::sys;

/// Distinguishes several scopes of one process (tests create many), and
/// the names tried after one that is taken.
static NEXT_SCOPE: AtomicU32 = AtomicU32::new(0);

/// How long a cgroup whose last process has just exited may take to
/// become removable.
const SETTLE: Duration = Duration::from_millis(200);

/// A cgroup v2 child of kawrap's own cgroup (or of a cgroup given to
/// [`Host::scope_under`]), with the programs attached.
///
/// Processes join it through [`Scope::spawn`]; kawrap itself stays
/// outside, so its own sockets are untouched and the directory can be
/// removed once the command is done. Dropping the scope closes it.
pub struct Scope<'h> {
    host: &'h Host,
    dir: PathBuf,
    cgroup_id: u64,
    programs: Programs,
    origin: Origin,
    /// The registry entry, held until the scope is gone.
    entry: Option<Entry>,
    closed: bool,
}

/// What [`Scope::close`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Processes still in the scope (the command's daemonised descendants):
    /// they keep running in it, covered, and the next kawrap removes the
    /// cgroup once they have exited.
    pub still_running: Vec<libc::pid_t>,
    /// Why the cgroup could not be removed, other than processes in it
    /// (the next kawrap tries again).
    pub not_removed: Option<String>,
    /// Sockets the scope configured, by kind.
    pub counters: Counters,
}

impl Host {
    /// Creates a scope next to kawrap's own cgroup (same resource limits)
    /// and attaches the programs with `config`.
    pub fn scope(&self, config: &Config) -> Result<Scope<'_>, Error> {
        let parent = self.cgroup2.own_cgroup()?;
        self.scope_under(&parent, config)
    }

    /// Creates the scope as a child of the cgroup v2 directory `parent`
    /// (a service's cgroup, say) instead of kawrap's own.
    pub fn scope_under(&self, parent: &Path, config: &Config) -> Result<Scope<'_>, Error> {
        kfs::check_cgroup2_dir(parent)?;
        neighbours::check(self.cgroup2.root(), parent, |dir| self.display(dir))?;
        let (programs, origin) = self.programs()?;
        let relative_parent = self.cgroup2.relative(parent).unwrap_or(parent).to_path_buf();
        let (dir, entry) = self.create_unique(parent, &relative_parent)?;
        // From here on, Drop removes the directory whatever fails next.
        let mut scope =
            Scope { host: self, cgroup_id: 0, dir, programs, origin, entry: Some(entry), closed: false };
        scope.cgroup_id = kfs::cgroup_id(&scope.dir)?;
        let cgroup = sys::open_cgroup(&scope.dir)
            .map_err(|e| Error::NoSuchCgroup { path: scope.dir.clone(), source: e })?;
        scope.programs.attach(&cgroup).map_err(|e| {
            Error::from_bpf(&format!("kawrap's programs (attach to {})", scope.dir.display()), &e)
        })?;
        scope.write(config)?;
        Ok(scope)
    }

    /// A new cgroup `kawrap-<pid>-<n>` under `parent`, listed in the
    /// registry: the first name that is free both there and in the
    /// registry (a launcher in another pid namespace, or before the pid
    /// wrapped around, may have had this pid).
    fn create_unique(&self, parent: &Path, relative_parent: &Path) -> Result<(PathBuf, Entry), Error> {
        for _ in 0..1000 {
            let name =
                format!("kawrap-{}-{}", std::process::id(), NEXT_SCOPE.fetch_add(1, Ordering::Relaxed));
            let registry =
                |e| Error::io(format!("record the transient cgroup {name} in /run/kawrap/scopes"), e);
            let Some(entry) = self.registry.claim(&name, &relative_parent.join(&name)).map_err(registry)?
            else {
                continue;
            };
            let dir = parent.join(&name);
            match fs::create_dir(&dir) {
                Ok(()) => return Ok((dir, entry)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => entry.remove(),
                Err(e) => {
                    entry.remove();
                    return Err(Error::io(format!("create cgroup {}", dir.display()), e));
                }
            }
        }
        Err(Error::io(
            format!("create a cgroup under {}", parent.display()),
            io::Error::new(io::ErrorKind::AlreadyExists, "1000 names taken"),
        ))
    }
}

impl Scope<'_> {
    /// The cgroup directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The cgroup directory for a person.
    pub fn display(&self) -> String {
        self.host.display(&self.dir)
    }

    /// Where its programs came from: reused or loaded now.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    fn write(&self, config: &Config) -> Result<(), Error> {
        let raw = RawConfig::encode(config, Kind::Run, self.cgroup_id);
        self.programs
            .maps
            .write(self.cgroup_id, &raw)
            .map_err(|e| Error::io(format!("write the configuration of {}", self.dir.display()), e))
    }

    /// Starts `command` inside the scope: the child moves itself into the
    /// cgroup between fork and exec, so its first instruction already runs
    /// there, and every process it forks inherits the cgroup.
    pub fn spawn(&self, command: &mut Command) -> Result<Child, Error> {
        let procs = sys::c_path(&self.dir.join("cgroup.procs")).map_err(|e| Error::io("cgroup path", e))?;
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls (open, write, close) on
        // memory allocated before the fork.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // "0" moves the writing process itself.
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let error = io::Error::last_os_error();
                libc::close(fd);
                if written == 1 { Ok(()) } else { Err(error) }
            });
        }
        command.spawn().map_err(|e| Error::Spawn {
            program: command.get_program().to_string_lossy().into_owned(),
            source: e,
        })
    }

    /// Changes the profile, rules or policy for connections made from now on.
    pub fn update(&mut self, config: &Config) -> Result<(), Error> {
        self.write(config)
    }

    /// Sockets configured so far.
    pub fn counters(&self) -> Counters {
        self.programs.maps.counters(self.cgroup_id)
    }

    /// Removes the cgroup (and any left below it), which detaches the
    /// programs; if processes are still in it, leaves it to them, attached.
    pub fn close(mut self) -> Cleanup {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Cleanup {
        self.closed = true;
        let counters = self.counters();
        let started = Instant::now();
        loop {
            let error = match kfs::remove_cgroup_tree(&self.dir) {
                Ok(()) => {
                    if let Some(entry) = self.entry.take() {
                        entry.remove();
                    }
                    return Cleanup { counters, ..Cleanup::default() };
                }
                Err(e) => e,
            };
            let busy = error.raw_os_error() == Some(libc::EBUSY);
            if busy && kfs::populated(&self.dir) {
                let mut still_running = Vec::new();
                for dir in kfs::walk_cgroups(&self.dir) {
                    still_running.extend(kfs::procs(&dir));
                }
                return Cleanup { still_running, counters, not_removed: None };
            }
            // A process that has just been reaped can take a moment to
            // leave the cgroup.
            if busy && started.elapsed() < SETTLE {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let not_removed = Some(format!("cannot remove {}: {error}", self.display()));
            return Cleanup { still_running: Vec::new(), counters, not_removed };
        }
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.close_inner();
        }
    }
}
