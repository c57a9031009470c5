//! `--log FILE`: the launcher opens it once before the program runs, since
//! the shim never writes to the terminal and a log it cannot open would go
//! unnoticed. kawrap is often run by root on behalf of others, so the file
//! is opened the way a privileged program must open a path someone else
//! may control:
//!
//! - the file itself is never a symbolic link (`O_NOFOLLOW`), so nothing is
//!   appended to, or created at, the place a planted link points to;
//! - a link on the way to it is followed only if root or the caller owns
//!   it (as the kernel's `fs.protected_symlinks` does in sticky directories);
//! - it must be a regular file: a FIFO, a device or a socket is refused, and
//!   the open never blocks (`O_NONBLOCK`), so a FIFO without a reader
//!   cannot hang the launcher.
use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, describe};
use crate::permissions::file_kind;

/// How many links one path may go through, as the kernel allows (MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// Opens (creating it if missing, mode 0644 before the umask) the log file
/// at the absolute `path` for appending, and checks it is a regular file.
pub fn open_for_append(path: &Path) -> Result<File, Error> {
    let refuse = |reason: String| Error::Invalid {
        message: format!("--log {}: {reason}", path.display()),
        hint: "give the path of a regular file (created if missing), e.g. /var/log/kawrap.log; \
               kawrap never writes through a symbolic link"
            .to_owned(),
    };
    if let Some(parent) = path.parent() {
        check_links_to(parent).map_err(refuse)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_file() => {
            return Err(refuse(not_regular(file_kind(meta.file_type()))));
        }
        _ => {}
    }
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|error| match error.raw_os_error() {
            // Swapped for a link, or a FIFO without a reader, since the check.
            Some(libc::ELOOP) => refuse("it is a symbolic link".to_owned()),
            Some(libc::ENXIO) => refuse(not_regular("a FIFO")),
            _ => Error::io(format!("--log: cannot open {}", path.display()), error),
        })?;
    let meta =
        file.metadata().map_err(|error| Error::io(format!("--log: fstat {}", path.display()), error))?;
    if !meta.file_type().is_file() {
        return Err(refuse(not_regular(file_kind(meta.file_type()))));
    }
    Ok(file)
}

/// `not a regular file (a FIFO); …`.
fn not_regular(kind: &str) -> String {
    format!("not a regular file ({kind}); the shim writes only to regular files")
}

/// Follows the absolute directory `dir` component by component, as the
/// kernel would, and refuses a symbolic link that neither root nor the
/// caller owns: another user could point it anywhere. A component that does
/// not exist ends the walk; opening the file then says so.
fn check_links_to(dir: &Path) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let caller = unsafe { libc::geteuid() };
    let mut resolved = PathBuf::from("/");
    let mut pending: VecDeque<OsString> = names(dir);
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let next = resolved.join(&name);
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(meta) => meta,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(format!("{}: {}", next.display(), describe(&error))),
        };
        if !meta.file_type().is_symlink() {
            resolved = next;
            continue;
        }
        if meta.uid() != 0 && meta.uid() != caller {
            return Err(format!(
                "{} is a symbolic link owned by uid {}; kawrap follows only links owned by root or by \
                 you (uid {caller})",
                next.display(),
                meta.uid()
            ));
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(format!("more than {MAX_LINKS} symbolic links on the way to the file"));
        }
        let target =
            std::fs::read_link(&next).map_err(|error| format!("{}: {}", next.display(), describe(&error)))?;
        if target.is_absolute() {
            resolved = PathBuf::from("/");
        }
        for component in names(&target).into_iter().rev() {
            pending.push_front(component);
        }
    }
    Ok(())
}

/// The names in a path, `..` kept (it means the parent of what a link
/// resolved to, not of the link), `.` and the root dropped.
fn names(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn links_are_followed_like_the_kernel_does() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        symlink("a/b", root.join("relative")).unwrap();
        symlink("../../a", root.join("a/b/up")).unwrap();
        // Our own links: followed.
        assert_eq!(check_links_to(&root.join("relative/up/b")), Ok(()));
        let file = open_for_append(&root.join("relative/up/b/k.log")).unwrap();
        assert!(file.metadata().unwrap().is_file());
        assert!(root.join("a/b/k.log").is_file());
        // The file itself as a link: refused, whoever owns it.
        symlink(root.join("a/b/k.log"), root.join("link.log")).unwrap();
        let error = open_for_append(&root.join("link.log")).unwrap_err().to_string();
        assert!(
            error.ends_with("not a regular file (a symbolic link); the shim writes only to regular files"),
            "{error}"
        );
        // A loop.
        symlink("loop", root.join("loop")).unwrap();
        assert!(check_links_to(&root.join("loop")).unwrap_err().contains("more than 40"));
    }
}
