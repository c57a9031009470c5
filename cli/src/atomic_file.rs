//! Replacing a file so that a reader sees the old contents or the new ones,
//! never a part: node_exporter's textfile collector may read a `.prom` file
//! at any moment, and a half-written one is a scrape error.
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How many temporary names are tried before giving up.
const ATTEMPTS: u32 = 100;

/// Writes `contents` to `path` atomically, with permissions `mode`
/// whatever the umask: a new temporary file in the same directory
/// (`O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`: never an existing file, never
/// through a symbolic link; named `.NAME.PID-N.tmp`, which no `*.prom`
/// pattern matches), written and synced, then renamed over `path`. A
/// symbolic link at `path` is replaced, not followed. On failure the
/// temporary file is removed and `path` is left as it was.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{} does not name a file", path.display()))
    })?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (temporary, mut file) = create_temporary(dir, &name.to_string_lossy())?;
    let written = (|| {
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    // The rename itself survives a crash once the directory is synced;
    // some filesystems refuse to sync a directory, which changes nothing
    // for readers.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The first `.NAME.PID-N.tmp` in `dir` that did not exist yet, created.
fn create_temporary(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut last_error = None;
    for attempt in 0..ATTEMPTS {
        let temporary = dir.join(temporary_name(name, pid, attempt));
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temporary);
        match opened {
            Ok(file) => return Ok((temporary, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists)))
}

fn temporary_name(name: &str, pid: u32, attempt: u32) -> String {
    format!(".{name}.{pid}-{attempt}.tmp")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

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
        let dir = scratch();
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
        let dir = scratch();
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
        let dir = scratch();
        let victim = dir.path().join("victim");
        fs::write(&victim, "untouched").unwrap();
        // Someone guessed the first temporary name and put a link there.
        let planted = dir.path().join(temporary_name("kawrap.prom", std::process::id(), 0));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let path = dir.path().join("kawrap.prom");
        write_atomically(&path, b"metrics\n", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(fs::read_to_string(&path).unwrap(), "metrics\n");
        assert!(fs::symlink_metadata(&planted).unwrap().file_type().is_symlink());
    }

    #[test]
    fn a_failure_leaves_nothing_behind() {
        let dir = scratch();
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
