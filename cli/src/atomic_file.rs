//! Replacing a file whole, so that a reader sees the old contents or the
//! new ones, never a part: node_exporter's textfile collector may read a
//! `.prom` file at any moment (a half-written one is a scrape error), and
//! systemd a drop-in. Also the `*at(2)` calls this takes, for code that
//! reaches a directory through a descriptor it opened once.
//!
//! The new contents go into a temporary file beside the target, with a
//! random name (`.NAME.RANDOM`, which no `*.prom` or `*.conf` pattern
//! matches) created with `O_CREAT|O_EXCL|O_NOFOLLOW`: never an existing
//! file, never through a symbolic link, so nothing planted at a name
//! someone guessed is written through. Its mode is set explicitly, whatever
//! the umask; it is synced, renamed over the target (a symbolic link there
//! is replaced, not followed), and the directory synced. On failure the
//! temporary file is removed and the target is left as it was.
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How many temporary names are tried before giving up.
const ATTEMPTS: usize = 16;

/// Replaces the file at `path` with `contents`, mode `mode` (see the module
/// documentation). Its directory is opened by path; the file itself is
/// never followed if it is a link.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let name = path.file_name().and_then(|name| name.to_str()).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} does not name a file", path.display()))
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let dir = open_at(None, dir, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)?;
    replace_in(&dir, name, contents, mode)
}

/// Replaces the file `name` in the directory `dir` with `contents`, mode
/// `mode`: for callers that opened (and checked) the directory themselves.
pub fn replace_in(dir: &OwnedFd, name: &str, contents: &[u8], mode: u32) -> io::Result<()> {
    replace_with_names(dir, name, contents, mode, std::iter::repeat_with(|| format!("{:016x}", random())))
}

fn replace_with_names(
    dir: &OwnedFd,
    name: &str,
    contents: &[u8],
    mode: u32,
    suffixes: impl Iterator<Item = String>,
) -> io::Result<()> {
    let (temporary, mut file) = create_temporary(dir, name, suffixes)?;
    let written = (|| {
        set_mode(&file, mode)?;
        file.write_all(contents)?;
        file.sync_all()?;
        rename_at(dir, &temporary, name)
    })();
    if let Err(error) = written {
        let _ = unlink_at(dir, &temporary);
        return Err(error);
    }
    // The rename on disk too; a filesystem that cannot sync a directory
    // changes nothing for readers.
    if let Ok(dir) = dir.try_clone() {
        let _ = File::from(dir).sync_all();
    }
    Ok(())
}

/// The first `.NAME.SUFFIX` in `dir` that did not exist yet, created empty
/// and private (0600) until [`replace_in`] sets its mode.
fn create_temporary(
    dir: &OwnedFd,
    name: &str,
    suffixes: impl Iterator<Item = String>,
) -> io::Result<(String, File)> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    for suffix in suffixes.take(ATTEMPTS) {
        let temporary = format!(".{name}.{suffix}");
        match open_at(Some(dir), Path::new(&temporary), flags, 0o600) {
            Ok(fd) => return Ok((temporary, File::from(fd))),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, "every temporary name tried was taken"))
}

/// 64 random bits: std's hash keys, which it takes from the kernel's
/// getrandom(2) *system call* — not glibc's getrandom(3), which only exists
/// from glibc 2.25 on and would keep the release `kawrap` from linking
/// against 2.17 (`make dist`). The name only has to be hard to guess; O_EXCL
/// and O_NOFOLLOW are what make a planted file harmless.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher, RandomState};
    RandomState::new().build_hasher().finish()
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// openat(2): relative to `dir` when given, else an ordinary open.
pub fn open_at(dir: Option<&OwnedFd>, path: &Path, flags: i32, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let path = c_path(path)?;
    let dir = dir.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
    // SAFETY: `path` is NUL-terminated and outlives the call; the result is
    // checked before it is owned.
    let fd = unsafe { libc::openat(dir, path.as_ptr(), flags, libc::c_uint::from(mode)) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mkdirat(2), mode 0700 (set the final mode with [`set_mode`] once it is open).
pub fn mkdir_at(dir: &OwnedFd, name: &str) -> io::Result<()> {
    let name = c_path(Path::new(name))?;
    // SAFETY: `name` is NUL-terminated and outlives the call.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o700) })
}

fn rename_at(dir: &OwnedFd, from: &str, to: &str) -> io::Result<()> {
    let (from, to) = (c_path(Path::new(from))?, c_path(Path::new(to))?);
    // SAFETY: both names are NUL-terminated and outlive the call.
    cvt(unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) })
}

fn unlink_at(dir: &OwnedFd, name: &str) -> io::Result<()> {
    let name = c_path(Path::new(name))?;
    // SAFETY: `name` is NUL-terminated and outlives the call.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })
}

/// fchmod(2): the mode as given, whatever the umask made of it.
pub fn set_mode(fd: &impl AsRawFd, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: fchmod only reads its arguments.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })
}

fn cvt(result: i32) -> io::Result<()> {
    if result < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_file_with_a_new_one_of_the_given_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kawrap.prom");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let old_inode = fs::metadata(&path).unwrap().ino();
        write_atomically(&path, b"new\n", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new\n");
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644);
        // A new inode: readers holding the old file keep the old contents.
        assert_ne!(meta.ino(), old_inode);
        assert_eq!(entries(dir.path()), ["kawrap.prom"]);
    }

    #[test]
    fn a_symbolic_link_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        let path = dir.path().join("kawrap.prom");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_atomically(&path, b"metrics\n", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert!(!fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
        assert_eq!(fs::read_to_string(&path).unwrap(), "metrics\n");
    }

    #[test]
    fn a_planted_temporary_name_is_skipped_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        // Someone guessed the first temporary name and put a link there.
        let planted = dir.path().join(".kawrap.prom.guessed");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let handle = open_at(None, dir.path(), libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
        let names = ["guessed", "next"].into_iter().map(str::to_owned);
        replace_with_names(&handle, "kawrap.prom", b"metrics\n", 0o644, names).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(fs::read_to_string(dir.path().join("kawrap.prom")).unwrap(), "metrics\n");
        assert!(fs::symlink_metadata(&planted).unwrap().file_type().is_symlink());
        assert_eq!(entries(dir.path()), [".kawrap.prom.guessed", "kawrap.prom", "victim"]);
    }

    #[test]
    fn a_failure_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // Renaming a file over a non-empty directory fails.
        let path = dir.path().join("busy");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "x").unwrap();
        assert!(write_atomically(&path, b"x", 0o644).is_err());
        assert_eq!(entries(dir.path()), ["busy"]);
        let missing = dir.path().join("no/such/dir/kawrap.prom");
        assert_eq!(write_atomically(&missing, b"x", 0o644).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert!(write_atomically(Path::new("/"), b"x", 0o644).is_err());
    }
}
