//! The three bpf(2) commands kawrap makes itself: creating a cgroup link,
//! pinning it, and asking which programs a cgroup has.
//!
//! aya 0.14 turns a sock_ops link into a pinnable `FdLink` but not a cgroup
//! setsockopt link, and keeps its query helper private; each call is a
//! fixed-size struct, small enough to make directly.
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_LINK_DETACH: libc::c_long = 34;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_LINK_CREATE: libc::c_long = 28;
/// `enum bpf_attach_type` values.
pub(crate) const BPF_CGROUP_SOCK_OPS: u32 = 3;
pub(crate) const BPF_CGROUP_SETSOCKOPT: u32 = 22;

fn bpf<T>(command: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a `repr(C)` prefix of `union bpf_attr` for this
    // command, of the size we pass; the kernel zero-extends the rest and
    // writes back only within it.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, command, attr as *mut T, size_of::<T>()) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

/// The `link_create` member of `union bpf_attr`, without the per-type tail.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    tail: [u64; 4],
}

/// Attaches a loaded program to a cgroup as a BPF link: the attachment
/// lives as long as the returned fd or a pin of it. Cgroup links always
/// allow other programs next to them (BPF_F_ALLOW_MULTI).
pub(crate) fn link_create(program: BorrowedFd<'_>, cgroup: &File, attach_type: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: program.as_raw_fd() as u32,
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type,
        ..LinkCreateAttr::default()
    };
    let fd = bpf(BPF_LINK_CREATE, &mut attr)?;
    // SAFETY: BPF_LINK_CREATE returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The `obj_pin` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct PinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// Pins a BPF object (link, map, program) at `path` on a BPF filesystem.
pub(crate) fn obj_pin(object: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr =
        PinAttr { pathname: c_path.as_ptr() as u64, bpf_fd: object.as_raw_fd() as u32, ..PinAttr::default() };
    bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
}

/// Opens a pinned BPF object.
pub(crate) fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr = PinAttr { pathname: c_path.as_ptr() as u64, ..PinAttr::default() };
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    // SAFETY: BPF_OBJ_GET returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Detaches a link now. Unpinning alone also detaches, but only once the
/// kernel frees the link, after an RCU grace period: a `status` right after
/// would still see it.
pub(crate) fn link_detach(link: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr: [u32; 4] = [link.as_raw_fd() as u32, 0, 0, 0];
    bpf(BPF_LINK_DETACH, &mut attr).map(|_| ())
}

/// The `query` member of `union bpf_attr` (linux/bpf.h), up to `revision`.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// Ids of the sock_ops programs attached directly to `cgroup` (not those
/// it inherits from its parents).
pub(crate) fn sock_ops_programs(cgroup: &Path) -> io::Result<Vec<u32>> {
    let dir = File::open(cgroup)?;
    let mut ids = vec![0u32; 64];
    loop {
        let mut attr = QueryAttr {
            target_fd: dir.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_SOCK_OPS,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..QueryAttr::default()
        };
        // The kernel writes at most `prog_cnt` ids into `ids`, which we own.
        let result = bpf(BPF_PROG_QUERY, &mut attr);
        let count = attr.prog_cnt as usize;
        let Err(error) = result else {
            ids.truncate(count.min(ids.len()));
            return Ok(ids);
        };
        // ENOSPC: more programs than room; the kernel told us how many.
        if error.raw_os_error() == Some(libc::ENOSPC) && count > ids.len() {
            ids = vec![0; count];
            continue;
        }
        return Err(error);
    }
}
