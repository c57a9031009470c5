//! Putting a drop-in in place, as root, without trusting the directory it
//! goes into: `kawrap env --systemd --write`.
//!
//! The unit directory is opened once and everything below it is reached
//! from that descriptor (openat(2) and friends) with `O_NOFOLLOW`, so no
//! symbolic link is followed or installed; the temporary file has a random
//! name and is created with `O_EXCL`, so nothing planted at a predictable
//! name is written through (`atomic_file`, which `kawrap check --output`
//! uses too); modes are set explicitly (0755 directory, 0644 file),
//! whatever the umask. A directory writable by others than its
//! owner and root is refused: someone else could change the drop-in.
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use crate::atomic_file::{mkdir_at, open_at, replace_in, set_mode};
use crate::error::Error;
use crate::permissions::{mode_text, writable_by_others};

/// A drop-in larger than this is not one of kawrap's.
const MAX_DROP_IN_BYTES: u64 = 1 << 16;

/// What [`install`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    /// The file was written.
    Written,
    /// The file already had exactly this content.
    Unchanged,
}

impl Installed {
    /// What was done to the file at `path`, for a person.
    pub fn describe(&self, path: &Path) -> String {
        match self {
            Installed::Written => format!("wrote {}", path.display()),
            Installed::Unchanged => format!("{} already has this content", path.display()),
        }
    }
}

/// Writes `text` as `unit_dir/RELATIVE` (`NAME` or `SUBDIR/NAME`), creating
/// `unit_dir` and `SUBDIR` when missing. An existing file with other
/// content is replaced only when `force`; the error says to compare it
/// with `regenerate`.
pub fn install(
    unit_dir: &Path,
    relative: &str,
    text: &str,
    force: bool,
    regenerate: &str,
) -> Result<Installed, Error> {
    let (subdir, name) = match relative.rsplit_once('/') {
        Some((subdir, name)) => (Some(subdir), name),
        None => (None, relative),
    };
    let dir_path = subdir.map_or_else(|| unit_dir.to_owned(), |subdir| unit_dir.join(subdir));
    let path = dir_path.join(name);
    let created = !unit_dir.exists();
    if created {
        create_unit_dir(unit_dir)?;
    }
    let units = open_dir(None, unit_dir, unit_dir)?;
    if created {
        // Through the descriptor just checked, never by path again: a link
        // swapped in meanwhile cannot redirect the chmod.
        set_mode(&units, 0o755).map_err(|e| Error::io(format!("cannot chmod {}", unit_dir.display()), e))?;
    }
    let dir = match subdir {
        None => units,
        Some(subdir) => match mkdir_at(&units, subdir) {
            Ok(()) => {
                let dir = open_dir(Some(&units), Path::new(subdir), &dir_path)?;
                set_mode(&dir, 0o755)
                    .map_err(|e| Error::io(format!("cannot chmod {}", dir_path.display()), e))?;
                dir
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                open_dir(Some(&units), Path::new(subdir), &dir_path)?
            }
            Err(error) => return Err(Error::io(format!("cannot create {}", dir_path.display()), error)),
        },
    };
    match read_existing(&dir, name, &path)? {
        Some(existing) if existing == text.as_bytes() => return Ok(Installed::Unchanged),
        Some(_) if !force => {
            return Err(Error::Refused {
                message: format!("{} exists with different content", path.display()),
                hint: format!(
                    "compare it with `{regenerate}` (without --write), then add --force to replace it"
                ),
            });
        }
        _ => {}
    }
    // Written beside it and renamed: systemd never reads half a file.
    replace_in(&dir, name, text.as_bytes(), 0o644)
        .map_err(|error| Error::io(format!("cannot write {}", path.display()), error))?;
    Ok(Installed::Written)
}

/// Creates a missing unit directory (as for `systemctl --user` units in
/// `~/.config/systemd/user`), 0755.
fn create_unit_dir(unit_dir: &Path) -> Result<(), Error> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(unit_dir)
        .map_err(|error| Error::io(format!("cannot create {}", unit_dir.display()), error))
}

/// Opens a directory (below `parent`, without following a link, when
/// given) and checks that no one but its owner and root can write in it.
fn open_dir(parent: Option<&OwnedFd>, path: &Path, shown: &Path) -> Result<OwnedFd, Error> {
    let mut flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    if parent.is_some() {
        flags |= libc::O_NOFOLLOW;
    }
    let dir = open_at(parent, path, flags, 0).map_err(|error| match error.raw_os_error() {
        Some(libc::ELOOP) => refused_link(shown),
        // O_DIRECTORY|O_NOFOLLOW on a link fails with ENOTDIR.
        Some(libc::ENOTDIR) if shown.is_symlink() => refused_link(shown),
        Some(libc::ENOTDIR) => Error::Refused {
            message: format!("{} is not a directory", shown.display()),
            hint: "systemd reads drop-ins from a directory named UNIT.d".to_owned(),
        },
        _ => Error::io(format!("cannot open {}", shown.display()), error),
    })?;
    let metadata = File::from(dir.try_clone().map_err(|e| Error::io("dup", e))?)
        .metadata()
        .map_err(|error| Error::io(format!("cannot stat {}", shown.display()), error))?;
    if writable_by_others(&metadata) {
        return Err(Error::Refused {
            message: format!(
                "{}: writable by others than its owner and root (mode {}); a drop-in there could be \
                 changed by them",
                shown.display(),
                mode_text(&metadata)
            ),
            hint: format!("chmod go-w {} (systemd's own directories are 0755)", shown.display()),
        });
    }
    Ok(dir)
}

fn refused_link(path: &Path) -> Error {
    Error::Refused {
        message: format!(
            "{} is a symbolic link; kawrap neither writes through one nor replaces it",
            path.display()
        ),
        hint: "look at where it points and remove it if it is not yours, then run kawrap again".to_owned(),
    }
}

/// The drop-in's present content; `None` when there is none. A link or
/// anything but a regular file in its place is refused.
fn read_existing(dir: &OwnedFd, name: &str, path: &Path) -> Result<Option<Vec<u8>>, Error> {
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    let file = match open_at(Some(dir), Path::new(name), flags, 0) {
        Ok(fd) => File::from(fd),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => return Err(refused_link(path)),
        Err(error) => return Err(Error::io(format!("cannot read {}", path.display()), error)),
    };
    let metadata = file.metadata().map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
    if !metadata.is_file() {
        return Err(Error::Refused {
            message: format!("{} is not a regular file", path.display()),
            hint: "remove it, then run kawrap again".to_owned(),
        });
    }
    let mut content = Vec::new();
    file.take(MAX_DROP_IN_BYTES)
        .read_to_end(&mut content)
        .map_err(|error| Error::io(format!("cannot read {}", path.display()), error))?;
    Ok(Some(content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_then_refuses_to_clobber_a_different_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.service.d/50-kawrap.conf");
        let install = |text: &str, force: bool| {
            install(dir.path(), "backup.service.d/50-kawrap.conf", text, force, "kawrap env --systemd …")
        };
        assert_eq!(install("one\n", false).unwrap(), Installed::Written);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
        assert_eq!(install("one\n", false).unwrap(), Installed::Unchanged);
        let error = install("two\n", false).unwrap_err();
        assert!(error.to_string().contains("exists with different content"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
        assert_eq!(install("two\n", true).unwrap(), Installed::Written);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }
}
