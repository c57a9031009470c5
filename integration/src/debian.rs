//! Real Debian userlands for the portability tests: a minimal root of a
//! release (`debootstrap --variant=minbase`), made once per machine, and
//! throwaway chroots on top of it.
//!
//! The roots are cached outside the source tree, in
//! `/var/cache/kawrap-test/debian-SUITE` (`KAWRAP_TEST_CACHE` moves the
//! directory; `KAWRAP_TEST_DEBIAN_MIRROR` names another archive than
//! deb.debian.org). The first test that needs one builds it, taking about a
//! minute; a lock file makes a second test process wait for that build
//! instead of starting its own. Delete a directory to have it built again.
//!
//! A [`Chroot`] never writes into the cached root: each command runs in a
//! private mount namespace, in an overlay whose upper layer belongs to the
//! `Chroot` (so a package installed by one command is there for the next),
//! with `/proc` mounted and host files bind-mounted read-only where asked.
//! A chroot shares the host's network namespace: a client inside reaches a
//! listener on the host's 127.0.0.1, and `ss` on the host sees its socket.
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// A Debian release the tests run in.
#[derive(Clone, Copy, Debug)]
pub struct Release {
    /// The suite's code name, as debootstrap takes it.
    pub suite: &'static str,
    /// The glibc version it ships, for messages.
    pub glibc: &'static str,
}

/// Debian 11: glibc 2.31, older than 2.34 (`dlsym` still in libdl.so.2,
/// `pthread_atfork` in libpthread.so.0).
pub const BULLSEYE: Release = Release { suite: "bullseye", glibc: "2.31" };
/// Debian 13: glibc 2.41.
pub const TRIXIE: Release = Release { suite: "trixie", glibc: "2.41" };

/// PATH inside a chroot: Debian's default for root.
const CHROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the roots are kept.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KAWRAP_TEST_CACHE")
        .map_or_else(|| PathBuf::from("/var/cache/kawrap-test"), PathBuf::from)
}

fn mirror() -> String {
    std::env::var("KAWRAP_TEST_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".to_owned())
}

/// Why Debian roots cannot be made or used here, or `None` when they can:
/// root (chroot, mounts) and debootstrap are needed.
pub fn unavailable_reason() -> Option<String> {
    if !crate::is_root() {
        return Some("needs root (debootstrap, chroot, overlay mounts)".into());
    }
    for (tool, package) in
        [("debootstrap", "debootstrap"), ("unshare", "util-linux"), ("chroot", "coreutils")]
    {
        if !crate::servers::have_program(tool) {
            return Some(format!("needs `{tool}` ({package})"));
        }
    }
    None
}

/// The cached root of `release`, built first if it is not there yet.
pub fn cached_root(release: Release) -> io::Result<PathBuf> {
    let cache = cache_dir();
    fs::create_dir_all(&cache)?;
    let root = cache.join(format!("debian-{}", release.suite));
    // A root appears under its name only once complete (renamed from
    // `.partial`), so its presence is the answer.
    if root.is_dir() {
        return Ok(root);
    }
    let lock = File::create(cache.join(format!("debian-{}.lock", release.suite)))?;
    // SAFETY: flock(2) on a descriptor this function owns; it blocks until
    // another process building the same root is done.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if root.is_dir() {
        return Ok(root);
    }
    let partial = cache.join(format!("debian-{}.partial", release.suite));
    if partial.exists() {
        fs::remove_dir_all(&partial)?;
    }
    let log_path = cache.join(format!("debian-{}.log", release.suite));
    let log = File::create(&log_path)?;
    eprintln!(
        "building the Debian {} root (glibc {}) in {} with debootstrap, once per machine …",
        release.suite,
        release.glibc,
        root.display()
    );
    let status = Command::new("debootstrap")
        .args(["--variant=minbase", release.suite])
        .arg(&partial)
        .arg(mirror())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    if !status.success() {
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        return Err(io::Error::other(format!(
            "debootstrap {} failed ({status}); last lines of {}:\n{}",
            release.suite,
            log_path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )));
    }
    fs::rename(&partial, &root)?;
    Ok(root)
}

/// A throwaway chroot over a cached root (see the module's documentation).
pub struct Chroot {
    release: Release,
    lower: PathBuf,
    scratch: TempDir,
    binds: Vec<(PathBuf, String)>,
}

/// Mounts the overlay, `/proc` and the read-only binds in the private mount
/// namespace `unshare` made, then runs the command in the chroot with a
/// clean environment. Arguments: PATH LOWER SCRATCH [SOURCE TARGET]… -- COMMAND…
const ENTER: &str = r#"set -e
chroot_path=$1 lower=$2 scratch=$3
shift 3
merged=$scratch/merged
mkdir -p "$scratch/upper" "$scratch/work" "$merged"
mount -t overlay kawrap-test -o "lowerdir=$lower,upperdir=$scratch/upper,workdir=$scratch/work" "$merged"
mount -t proc proc "$merged/proc"
while [ "$1" != -- ]; do
    source=$1 target=$merged$2
    shift 2
    if [ -d "$source" ]; then
        mkdir -p "$target"
    else
        mkdir -p "$(dirname "$target")"
        [ -e "$target" ] || : >"$target"
    fi
    mount --bind "$source" "$target"
    mount -o remount,bind,ro "$target"
done
shift
exec chroot "$merged" /usr/bin/env -i "PATH=$chroot_path" HOME=/root "$@"
"#;

impl Chroot {
    /// A fresh chroot of `release` (building its cached root if needed).
    pub fn new(release: Release) -> io::Result<Chroot> {
        let lower = cached_root(release)?;
        let scratch = crate::temp_dir(&format!("chroot-{}", release.suite));
        Ok(Chroot { release, lower, scratch, binds: Vec::new() })
    }

    /// The release this chroot is.
    pub fn release(&self) -> Release {
        self.release
    }

    /// Makes the host's file or directory `source` appear read-only at
    /// `target` in every later command, as `docker run -v SOURCE:TARGET:ro`
    /// does.
    pub fn bind_read_only(&mut self, source: &Path, target: &str) -> &mut Chroot {
        self.binds.push((source.to_owned(), target.to_owned()));
        self
    }

    /// `args` run in the chroot: a program (found in the chroot's PATH) and
    /// its arguments, optionally preceded by `NAME=VALUE` settings (env(1)
    /// reads them). The environment is otherwise empty but for PATH and HOME.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("unshare");
        command
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                ENTER,
                "kawrap-chroot",
                CHROOT_PATH,
            ])
            .arg(&self.lower)
            .arg(self.scratch.path());
        for (source, target) in &self.binds {
            command.arg(source).arg(target);
        }
        command.arg("--").args(args);
        command
    }
}
