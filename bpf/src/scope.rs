//! A transient cgroup with kawrap's programs attached: the `kawrap --bpf`
//! mode. Everything started in it, and everything those processes fork,
//! gets the profile, whatever its libc, linking or privileges.
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kawrap_core::Config;

use crate::error::Error;
use crate::fs as kfs;
use crate::maps::Counters;
use crate::program::{Links, Loaded};
use crate::sys;

/// Distinguishes several scopes of one process (tests create many).
static NEXT_SCOPE: AtomicU32 = AtomicU32::new(0);

/// A cgroup v2 child of kawrap's own cgroup (or of a cgroup given to
/// [`Scope::create_under`]), with the programs attached.
///
/// Processes join it through [`Scope::spawn`]; kawrap itself stays
/// outside, so its own sockets are untouched and the directory can be
/// removed once the command is done. Dropping the scope closes it.
pub struct Scope {
    dir: PathBuf,
    parent: PathBuf,
    loaded: Option<(Loaded, Links)>,
}

/// What [`Scope::close`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Processes still in the scope when it closed (the command's
    /// daemonised descendants). They were moved to kawrap's own cgroup and
    /// keep running; their existing sockets keep their settings, new ones
    /// get none.
    pub moved_out: Vec<libc::pid_t>,
    /// Sockets the scope configured, by kind.
    pub counters: Counters,
}

impl Scope {
    /// Creates the cgroup next to kawrap's own (same resource limits) and
    /// attaches the programs with `config`.
    pub fn create(config: &Config) -> Result<Scope, Error> {
        let root = kfs::cgroup2_root()?;
        let parent = kfs::own_cgroup(&root)?;
        Scope::create_under(&parent, config)
    }

    /// Creates the scope as a child of the cgroup v2 directory `parent`
    /// (a service's cgroup, say) instead of kawrap's own. Processes left
    /// when it closes move to `parent`.
    pub fn create_under(parent: &Path, config: &Config) -> Result<Scope, Error> {
        kfs::check_cgroup2_dir(parent)?;
        let parent = parent.to_path_buf();
        let name = format!("kawrap-{}-{}", std::process::id(), NEXT_SCOPE.fetch_add(1, Ordering::Relaxed));
        let dir = parent.join(name);
        fs::create_dir(&dir).map_err(|e| Error::io(format!("create cgroup {}", dir.display()), e))?;
        // From here on, Drop removes the directory whatever fails next.
        let mut scope = Scope { dir, parent, loaded: None };
        let mut loaded = Loaded::load(config)?;
        let links = loaded.attach(&scope.dir)?;
        scope.loaded = Some((loaded, links));
        Ok(scope)
    }

    /// The cgroup directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Starts `command` inside the scope: the child moves itself into the
    /// cgroup between fork and exec, so its first instruction already runs
    /// there, and every process it forks inherits the cgroup.
    pub fn spawn(&self, command: &mut Command) -> Result<Child, Error> {
        let procs = self.dir.join("cgroup.procs");
        let procs = CString::new(procs.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::io("cgroup path", io::Error::from(io::ErrorKind::InvalidInput)))?;
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
        match &mut self.loaded {
            Some((loaded, _)) => loaded.update(config),
            None => Ok(()),
        }
    }

    /// Sockets configured so far.
    pub fn counters(&self) -> Counters {
        self.loaded.as_ref().map(|(loaded, _)| loaded.counters()).unwrap_or_default()
    }

    /// Detaches the programs, moves any remaining process out and removes
    /// the cgroup directory.
    pub fn close(mut self) -> Result<Cleanup, Error> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<Cleanup, Error> {
        let counters = self.counters();
        if let Some((_, links)) = &self.loaded {
            // Detach now rather than when the kernel gets round to freeing
            // the closed links; closing them below would do it eventually.
            for link in [&links.sockops, &links.setsockopt] {
                let _ = sys::link_detach(link.as_fd());
            }
        }
        self.loaded = None;
        let mut moved_out = Vec::new();
        if !self.dir.exists() {
            return Ok(Cleanup { moved_out, counters });
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            for pid in kfs::procs(&self.dir) {
                // A process that exits meanwhile cannot be moved: ignore it.
                if fs::write(self.parent.join("cgroup.procs"), pid.to_string()).is_ok()
                    && !moved_out.contains(&pid)
                {
                    moved_out.push(pid);
                }
            }
            match fs::remove_dir(&self.dir) {
                Ok(()) => return Ok(Cleanup { moved_out, counters }),
                // A process that just exited leaves the cgroup a moment
                // after its parent has reaped it.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(Error::io(format!("remove cgroup {}", self.dir.display()), e)),
            }
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if self.loaded.is_some() || self.dir.exists() {
            let _ = self.close_inner();
        }
    }
}
