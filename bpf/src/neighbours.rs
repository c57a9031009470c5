//! Other programs on the same hooks: kawrap attaches with BPF_F_ALLOW_MULTI,
//! so programs others attached the same way keep running next to it. A
//! program attached to an ancestor with BPF_F_ALLOW_OVERRIDE would stop
//! running for everything below a kawrap attachment, and one attached
//! exclusively (no flag) makes the kernel refuse kawrap's: either way kawrap
//! stops and says what is there, instead of turning it off silently.
use std::os::fd::AsFd;
use std::path::Path;

use crate::error::Error;
use crate::program::{ATTACH_TYPES, HOOK_NAMES};
use crate::sys;

/// `id 42 "name"`, or `id 42` when the name cannot be read.
fn describe(id: u32) -> String {
    let name = sys::prog_by_id(id).and_then(|fd| sys::prog_info(fd.as_fd())).map(|info| info.name);
    match name {
        Ok(name) if !name.is_empty() => format!("id {id} \"{name}\""),
        _ => format!("id {id}"),
    }
}

/// Checks `cgroup` and every ancestor up to `root` for a program that a
/// kawrap attachment to `cgroup` or below would turn off or be refused by.
pub(crate) fn check(root: &Path, cgroup: &Path, display: impl Fn(&Path) -> String) -> Result<(), Error> {
    for dir in cgroup.ancestors() {
        let Ok(file) = sys::open_cgroup(dir) else { break };
        for (attach_type, hook) in ATTACH_TYPES.into_iter().zip(HOOK_NAMES) {
            // Unreadable (no CAP_NET_ADMIN…): the attach itself will say.
            let Ok(attached) = sys::prog_query(&file, attach_type) else { continue };
            let Some(&id) = attached.ids.first() else { continue };
            if attached.flags & sys::BPF_F_ALLOW_MULTI != 0 {
                continue;
            }
            return Err(Error::Occupied {
                cgroup: display(dir),
                hook,
                program: describe(id),
                overridable: attached.flags & sys::BPF_F_ALLOW_OVERRIDE != 0,
            });
        }
        if dir == root {
            break;
        }
    }
    Ok(())
}
