//! What kawrap keeps on the BPF filesystem, so that a run does not load
//! and verify its programs again (the slow part of starting) and systemd
//! can attach them to a service at every start:
//!
//! ```text
//! <bpffs>/kawrap/
//!   sockets-v2               the socket map every kawrap program shares
//!   programs/<BUILD>/        this build's programs, verified once, reused by every
//!                            `kawrap --bpf` and `kawrap bpf attach`
//!   programs/new-<pid>-<n>/  being pinned
//!   pinned/<NAME>/           `kawrap bpf pin --name NAME`: a copy with its own
//!                            configuration, for systemd's BPFProgram=
//!   pinned/<NAME>/build-<BUILD>/   which build pinned it (an empty directory)
//! ```
//!
//! `<BUILD>` is kawrap's version and a hash of the BPF object: an upgraded
//! kawrap never takes another build's programs for its own. A set is pinned
//! under a `new-*` name and renamed into place once complete, so a reader
//! finds all of it or nothing; a `new-*` directory is locked (flock) by
//! the kawrap writing it, and removed by the next one if it is not (the
//! parent directory's lock keeps that next one out while a `new-*`
//! directory is between its creation and its own lock). The
//! BPF filesystem refuses names with a dot.
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kawrap_core::Config;

use crate::error::Error;
use crate::maps::{Kind, RawConfig};
use crate::program::{self, BUILD, Programs, Variant};
use crate::sys;

const PROGRAMS: &str = "programs";
const PINNED: &str = "pinned";
const NEW_PREFIX: &str = "new-";
const BUILD_MARKER_PREFIX: &str = "build-";

/// Distinguishes the `new-*` directories of one process.
static NEXT_NEW: AtomicU32 = AtomicU32::new(0);

/// kawrap's directory on a BPF filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PinDir {
    root: PathBuf,
}

/// Where a run's programs came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Pinned by an earlier kawrap of this build: nothing was loaded.
    Reused(PathBuf),
    /// Loaded and verified now, in this long.
    Loaded {
        /// How long loading took.
        took: Duration,
        /// Where they were pinned for the next run; `None` without a BPF
        /// filesystem, or when pinning failed (the reason).
        kept: Result<PathBuf, String>,
    },
}

/// What [`PinDir::pin_named`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinOutcome {
    /// A new copy was pinned.
    Pinned,
    /// This build's copy was pinned already: its values were replaced,
    /// effective for connections made from now on.
    Updated,
    /// Another build's copy was replaced by this build's (cgroups it is
    /// attached to keep the old one until they are re-created).
    Replaced,
}

/// A set of programs pinned for reuse, for `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    /// Its directory.
    pub path: PathBuf,
    /// The build that pinned it.
    pub build: String,
    /// This kawrap's build: the one it reuses.
    pub current: bool,
    /// Being pinned, or left half-done by a kawrap that was killed.
    pub incomplete: bool,
}

/// A copy pinned by `kawrap bpf pin`, for `status`.
#[derive(Clone, Debug, PartialEq)]
pub struct Named {
    /// The name it was pinned under.
    pub name: String,
    /// Its directory; systemd attaches `sock_ops` and `setsockopt` in it.
    pub path: PathBuf,
    /// The build that pinned it, if known.
    pub build: Option<String>,
    /// Its values, or why they cannot be read.
    pub config: Result<Config, String>,
}

fn io_error(what: impl std::fmt::Display, path: &Path, error: io::Error) -> Error {
    Error::io(format!("{what} {}", path.display()), error)
}

/// An exclusively locked, new directory on the BPF filesystem.
struct NewDir {
    path: PathBuf,
    _lock: File,
}

impl NewDir {
    fn create(parent: &Path) -> Result<NewDir, Error> {
        fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
        let _parent = lock_parent(parent).map_err(|e| io_error("lock", parent, e))?;
        let name = format!("{NEW_PREFIX}{}-{}", std::process::id(), NEXT_NEW.fetch_add(1, Ordering::Relaxed));
        let path = parent.join(name);
        fs::create_dir(&path).map_err(|e| io_error("create", &path, e))?;
        let lock = File::open(&path).map_err(|e| io_error("open", &path, e))?;
        let _ = sys::lock(&lock, true);
        Ok(NewDir { path, _lock: lock })
    }

    /// Renames it to `target`; `false` if `target` exists (not empty).
    fn publish(self, target: &Path) -> Result<bool, Error> {
        match fs::rename(&self.path, target) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                let _ = program::remove_pin_dir(&self.path);
                Ok(false)
            }
            Err(e) => {
                let _ = program::remove_pin_dir(&self.path);
                Err(io_error("rename to", target, e))
            }
        }
    }
}

/// Locks `parent` while a `new-*` directory in it is created and locked,
/// and while abandoned ones are looked for: between its creation and its
/// lock, a new directory looks abandoned.
fn lock_parent(parent: &Path) -> io::Result<File> {
    let dir = File::open(parent)?;
    sys::lock(&dir, true)?;
    Ok(dir)
}

/// Removes the `new-*` directories under `parent` that nobody is writing.
fn remove_abandoned(parent: &Path) {
    let Ok(_parent) = lock_parent(parent) else { return };
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(NEW_PREFIX) {
            continue;
        }
        let Ok(dir) = File::open(entry.path()) else { continue };
        if sys::lock(&dir, false).is_ok() {
            let _ = program::remove_pin_dir(&entry.path());
        }
    }
}

/// A name for `kawrap bpf pin`: one path component a person can read, not
/// one kawrap uses itself, and without dots, which the BPF filesystem
/// refuses.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with(NEW_PREFIX)
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_@-:".contains(c));
    if valid { Ok(()) } else { Err(Error::BadName { name: name.to_string() }) }
}

impl PinDir {
    pub(crate) fn new(root: PathBuf) -> PinDir {
        PinDir { root }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Where the shared socket map is pinned.
    pub(crate) fn sockets_pin(&self) -> PathBuf {
        self.root.join(program::SOCKETS_PIN)
    }

    fn load(&self, variant: Variant) -> Result<Programs, Error> {
        fs::create_dir_all(&self.root).map_err(|e| io_error("create", &self.root, e))?;
        Programs::load(variant, Some(&self.sockets_pin()))
    }

    /// This build's programs: the pinned ones, or loaded now and pinned for
    /// the next run.
    pub(crate) fn programs(&self) -> Result<(Programs, Origin), Error> {
        let parent = self.root.join(PROGRAMS);
        let dir = parent.join(BUILD);
        if let Ok(programs) = Programs::open(&dir) {
            return Ok((programs, Origin::Reused(dir)));
        }
        let started = Instant::now();
        let programs = self.load(Variant::PerCgroup)?;
        let took = started.elapsed();
        remove_abandoned(&parent);
        let kept = (|| {
            let new = NewDir::create(&parent)?;
            programs.pin(&new.path)?;
            new.publish(&dir)
        })();
        match kept {
            Ok(true) => {
                // An upgrade: what earlier builds pinned is never reused.
                // Cgroups they are attached to keep them until removed.
                for cached in self.cached().into_iter().filter(|c| !c.current && !c.incomplete) {
                    let _ = program::remove_pin_dir(&cached.path);
                }
                Ok((programs, Origin::Loaded { took, kept: Ok(dir) }))
            }
            // Another kawrap pinned its copy first: use that one, so that
            // every run attaches the same programs.
            Ok(false) => match Programs::open(&dir) {
                Ok(theirs) => Ok((theirs, Origin::Reused(dir))),
                Err(e) => Ok((programs, Origin::Loaded { took, kept: Err(e.to_string()) })),
            },
            Err(e) => Ok((programs, Origin::Loaded { took, kept: Err(e.to_string()) })),
        }
    }

    /// Every set pinned for reuse, this build's and others'.
    pub(crate) fn cached(&self) -> Vec<Cached> {
        let Ok(entries) = fs::read_dir(self.root.join(PROGRAMS)) else { return Vec::new() };
        let mut found: Vec<Cached> = entries
            .flatten()
            .map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let incomplete = name.starts_with(NEW_PREFIX);
                Cached { path: entry.path(), current: name == BUILD, build: name, incomplete }
            })
            .collect();
        found.sort_by(|a, b| a.path.cmp(&b.path));
        found
    }

    /// Removes every set pinned for reuse (cgroups they are attached to keep
    /// them); the next run loads and pins again.
    pub(crate) fn clear_cache(&self) -> Result<(), Error> {
        for cached in self.cached() {
            program::remove_pin_dir(&cached.path).map_err(|e| io_error("remove", &cached.path, e))?;
        }
        let _ = fs::remove_dir(self.root.join(PROGRAMS));
        Ok(())
    }

    pub(crate) fn named_dir(&self, name: &str) -> PathBuf {
        self.root.join(PINNED).join(name)
    }

    /// Pins a copy of the programs under `name` with `config` built in, for
    /// systemd's `BPFProgram=sock_ops:…/sock_ops` and `setsockopt:…/setsockopt`.
    /// Again with the same build: the values change live.
    pub(crate) fn pin_named(&self, name: &str, config: &Config) -> Result<(PinOutcome, PathBuf), Error> {
        check_name(name)?;
        let dir = self.named_dir(name);
        let marker = format!("{BUILD_MARKER_PREFIX}{BUILD}");
        if dir.join(&marker).is_dir()
            && let Ok(programs) = Programs::open(&dir)
        {
            write_named_config(&programs, config)?;
            return Ok((PinOutcome::Updated, dir));
        }
        let parent = self.root.join(PINNED);
        remove_abandoned(&parent);
        let programs = self.load(Variant::Pinned)?;
        write_named_config(&programs, config)?;
        let new = NewDir::create(&parent)?;
        programs.pin(&new.path)?;
        fs::create_dir(new.path.join(&marker)).map_err(|e| io_error("create", &new.path, e))?;
        let existed = dir.exists();
        if existed {
            // Aside first, then the new one in: never a moment without a
            // complete copy under the name for longer than one rename.
            let old = NewDir::create(&parent)?;
            fs::remove_dir(&old.path).map_err(|e| io_error("remove", &old.path, e))?;
            fs::rename(&dir, &old.path).map_err(|e| io_error("rename", &dir, e))?;
            let published = new.publish(&dir);
            let _ = program::remove_pin_dir(&old.path);
            published?;
        } else if !new.publish(&dir)? {
            // A concurrent `pin` of the same name won; write our values
            // into its copy so that the last one to finish counts.
            let theirs = Programs::open(&dir).map_err(|e| io_error("open", &dir, e))?;
            write_named_config(&theirs, config)?;
        }
        Ok((if existed { PinOutcome::Replaced } else { PinOutcome::Pinned }, dir))
    }

    /// Removes the copy pinned under `name`; cgroups it is attached to keep
    /// it until they are re-created.
    pub(crate) fn unpin_named(&self, name: &str) -> Result<PathBuf, Error> {
        check_name(name)?;
        let dir = self.named_dir(name);
        if !dir.is_dir() {
            return Err(Error::NotPinned { name: name.to_string() });
        }
        program::remove_pin_dir(&dir).map_err(|e| io_error("remove", &dir, e))?;
        // The last one takes its (then empty) parent along.
        let _ = fs::remove_dir(self.root.join(PINNED));
        Ok(dir)
    }

    /// Every copy pinned by `kawrap bpf pin`.
    pub(crate) fn named(&self) -> Vec<Named> {
        let Ok(entries) = fs::read_dir(self.root.join(PINNED)) else { return Vec::new() };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(NEW_PREFIX) {
                continue;
            }
            let path = entry.path();
            let build = fs::read_dir(&path).ok().and_then(|inner| {
                inner.flatten().find_map(|e| {
                    e.file_name().to_string_lossy().strip_prefix(BUILD_MARKER_PREFIX).map(str::to_owned)
                })
            });
            let config = Programs::open(&path)
                .map_err(|e| e.to_string())
                .and_then(|p| p.maps.read(0).ok_or_else(|| "no values".to_string()))
                .and_then(|raw| raw.decode());
            found.push(Named { name, path, build, config });
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    /// The ids of every program pinned here (reuse sets and named copies).
    pub(crate) fn program_ids(&self) -> Vec<u32> {
        let dirs = self.cached().into_iter().map(|c| c.path).chain(self.named().into_iter().map(|n| n.path));
        dirs.filter_map(|dir| Programs::open(&dir).ok()?.ids().ok()).flatten().collect()
    }

    /// Removes everything: reuse sets, named copies, the shared socket map
    /// (programs that use it keep it), and the directory.
    pub(crate) fn remove_all(&self) -> Result<(), Error> {
        program::remove_pin_dir(&self.root).map_err(|e| io_error("remove", &self.root, e))
    }
}

/// The configuration of a named copy; its owner id is the copy's program
/// id with the top bit set, which no cgroup id has.
fn write_named_config(programs: &Programs, config: &Config) -> Result<(), Error> {
    let owner = (1u64 << 63) | u64::from(programs.ids()?[0]);
    programs
        .maps
        .write(0, &RawConfig::encode(config, Kind::Pinned, owner))
        .map_err(|e| Error::io("write the values of the pinned copy", e))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// A kawrap that looks for abandoned `new-*` directories while another
    /// creates one must never remove the new one: it is not abandoned.
    #[test]
    fn a_directory_being_created_is_never_taken_for_an_abandoned_one() {
        let parent = std::env::temp_dir().join(format!("kawrap-new-dirs-{}", std::process::id()));
        let done = AtomicBool::new(false);
        let (created, lost) = std::thread::scope(|threads| {
            threads.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    remove_abandoned(&parent);
                }
            });
            let started = Instant::now();
            let (mut created, mut lost) = (0, 0);
            while lost == 0 && started.elapsed() < Duration::from_secs(2) {
                match NewDir::create(&parent) {
                    // Done with it, as a kawrap is once it has published it.
                    Ok(new) if fs::remove_dir(&new.path).is_ok() => created += 1,
                    _ => lost += 1,
                }
            }
            done.store(true, Ordering::Relaxed);
            (created, lost)
        });
        let _ = fs::remove_dir_all(&parent);
        assert_eq!(lost, 0, "a new directory was removed while being created, after {created} were not");
    }
}
