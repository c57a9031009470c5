//! Who may change a file: what root checks before it trusts a file (a
//! profile file it reads, a directory it writes a unit drop-in into), as
//! sudo and sshd do; and what a file is, for refusing one that is not a
//! regular file.
use std::fs::{FileType, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Writable by others than its owner and root: by "other", or by a group
/// other than root's.
pub fn writable_by_others(metadata: &Metadata) -> bool {
    let mode = metadata.mode();
    mode & 0o002 != 0 || (mode & 0o020 != 0 && metadata.gid() != 0)
}

/// The permission bits as `ls -l` users read them in messages: `0644`.
pub fn mode_text(metadata: &Metadata) -> String {
    format!("{:04o}", metadata.mode() & 0o7777)
}

/// True when kawrap runs as root, whose reads and writes others must not steer.
pub fn running_as_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// What a file is, as a phrase for a message: `a FIFO`, `a directory`…
pub fn file_kind(kind: FileType) -> &'static str {
    if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}
