//! Who may change a file: what root checks before it trusts a file (a
//! profile file it reads, a directory it writes a unit drop-in into), as
//! sudo and sshd do.
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

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
