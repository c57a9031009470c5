//! The bpf(2) commands kawrap makes itself: attaching programs to cgroups
//! and asking what is attached, pinning, reading and writing map entries,
//! and reading programs' and maps' names.
//!
//! Every command's attribute is a fixed-size prefix of `union bpf_attr`,
//! small enough to make directly; aya is only needed to load the object.
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;

/// `enum bpf_attach_type` values.
pub(crate) const BPF_CGROUP_SOCK_OPS: u32 = 3;
pub(crate) const BPF_CGROUP_SETSOCKOPT: u32 = 22;

/// Attach flags (`BPF_F_ALLOW_*`); none of them is "exclusive".
pub(crate) const BPF_F_ALLOW_OVERRIDE: u32 = 1;
pub(crate) const BPF_F_ALLOW_MULTI: u32 = 2;

fn bpf<T>(command: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a `repr(C)` prefix of `union bpf_attr` for this
    // command, of the size we pass; the kernel zero-extends the rest and
    // writes back only within it. Pointers inside it point to buffers
    // of the sizes stated next to them, owned by the caller.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, command, attr as *mut T, size_of::<T>()) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

/// A new descriptor returned by a bpf(2) command.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the command returned a new fd that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// `path` as the NUL-terminated string system calls take; InvalidInput
/// if it holds a NUL byte.
pub(crate) fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// The `attach`/`detach` member of `union bpf_attr`, up to `replace_bpf_fd`.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn attach_command(
    command: libc::c_long,
    program: BorrowedFd<'_>,
    cgroup: &File,
    attach_type: u32,
    flags: u32,
) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type,
        attach_flags: flags,
        ..AttachAttr::default()
    };
    bpf(command, &mut attr).map(|_| ())
}

/// Attaches `program` to the cgroup `cgroup` with BPF_F_ALLOW_MULTI, next
/// to programs others attached there, without a link: the attachment lives
/// as long as the cgroup (or until [`prog_detach`]), not as long as a
/// descriptor — a killed kawrap leaves its command covered. EINVAL: this
/// very program is attached there already (or another reason).
pub(crate) fn prog_attach(program: BorrowedFd<'_>, cgroup: &File, attach_type: u32) -> io::Result<()> {
    attach_command(BPF_PROG_ATTACH, program, cgroup, attach_type, BPF_F_ALLOW_MULTI)
}

/// Detaches `program` from the cgroup. ENOENT: it was not attached there.
pub(crate) fn prog_detach(program: BorrowedFd<'_>, cgroup: &File, attach_type: u32) -> io::Result<()> {
    attach_command(BPF_PROG_DETACH, program, cgroup, attach_type, 0)
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

/// Pins a BPF object (map, program) at `path` on a BPF filesystem.
pub(crate) fn obj_pin(object: BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let c_path = c_path(path)?;
    let mut attr =
        PinAttr { pathname: c_path.as_ptr() as u64, bpf_fd: object.as_raw_fd() as u32, ..PinAttr::default() };
    bpf(BPF_OBJ_PIN, &mut attr).map(|_| ())
}

/// Opens a pinned BPF object.
pub(crate) fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c_path = c_path(path)?;
    let mut attr = PinAttr { pathname: c_path.as_ptr() as u64, ..PinAttr::default() };
    bpf(BPF_OBJ_GET, &mut attr).map(owned)
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

/// What is attached directly to one cgroup for one attach type (not what it
/// inherits from its parents).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Attached {
    /// The programs' ids, in the order they run.
    pub(crate) ids: Vec<u32>,
    /// The cgroup's attach flags for this type: `BPF_F_ALLOW_MULTI`,
    /// `BPF_F_ALLOW_OVERRIDE`, or 0 (one program, exclusive).
    pub(crate) flags: u32,
}

/// The programs of `attach_type` attached to the cgroup open as `cgroup`.
pub(crate) fn prog_query(cgroup: &File, attach_type: u32) -> io::Result<Attached> {
    let mut ids = vec![0u32; 16];
    loop {
        let mut attr = QueryAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_type,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..QueryAttr::default()
        };
        // The kernel writes at most `prog_cnt` ids into `ids`, which we own.
        let result = bpf(BPF_PROG_QUERY, &mut attr);
        let count = attr.prog_cnt as usize;
        let Err(error) = result else {
            ids.truncate(count.min(ids.len()));
            return Ok(Attached { ids, flags: attr.attach_flags });
        };
        // ENOSPC: more programs than room; the kernel told us how many.
        if error.raw_os_error() == Some(libc::ENOSPC) && count > ids.len() {
            ids = vec![0; count];
            continue;
        }
        return Err(error);
    }
}

/// The `map_elem` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Reads the value of `key` into `value`, which must be the map's value
/// size (times the number of possible CPUs, rounded up to 8 bytes each, for
/// a per-CPU map).
pub(crate) fn map_lookup(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..MapElemAttr::default()
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).map(|_| ())
}

/// Replaces the value of `key` (BPF_ANY). A cgroup storage map has an entry
/// only for the cgroups its programs are attached to: ENOENT otherwise.
pub(crate) fn map_update(map: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        ..MapElemAttr::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
}

/// The `*_get_fd_by_id` and `*_get_next_id` members of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct IdAttr {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Opens the program with this id (CAP_SYS_ADMIN).
pub(crate) fn prog_by_id(id: u32) -> io::Result<OwnedFd> {
    bpf(BPF_PROG_GET_FD_BY_ID, &mut IdAttr { id, ..IdAttr::default() }).map(owned)
}

/// Opens the map with this id (CAP_SYS_ADMIN).
pub(crate) fn map_by_id(id: u32) -> io::Result<OwnedFd> {
    bpf(BPF_MAP_GET_FD_BY_ID, &mut IdAttr { id, ..IdAttr::default() }).map(owned)
}

/// The `info` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `struct bpf_prog_info` up to `name`.
#[repr(C)]
#[derive(Default)]
struct RawProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

/// `struct bpf_map_info` up to `name`.
#[repr(C)]
#[derive(Default)]
struct RawMapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: [u8; 16],
}

fn object_info<T>(object: BorrowedFd<'_>, info: &mut T) -> io::Result<()> {
    let mut attr = InfoAttr {
        bpf_fd: object.as_raw_fd() as u32,
        info_len: size_of::<T>() as u32,
        info: info as *mut T as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map(|_| ())
}

fn name_of(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// What kawrap needs to know about a loaded program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProgInfo {
    pub(crate) id: u32,
    /// As given at load time, cut to 15 bytes by the kernel.
    pub(crate) name: String,
    pub(crate) map_ids: Vec<u32>,
}

/// A loaded program's id, name and maps.
pub(crate) fn prog_info(program: BorrowedFd<'_>) -> io::Result<ProgInfo> {
    let mut map_ids = vec![0u32; 8];
    let mut info = RawProgInfo {
        nr_map_ids: map_ids.len() as u32,
        map_ids: map_ids.as_mut_ptr() as u64,
        ..RawProgInfo::default()
    };
    object_info(program, &mut info)?;
    map_ids.truncate((info.nr_map_ids as usize).min(map_ids.len()));
    Ok(ProgInfo { id: info.id, name: name_of(&info.name), map_ids })
}

/// A map's name, as given at load time (cut to 15 bytes by the kernel).
pub(crate) fn map_name(map: BorrowedFd<'_>) -> io::Result<String> {
    let mut info = RawMapInfo::default();
    object_info(map, &mut info)?;
    Ok(name_of(&info.name))
}

/// The number of possible CPUs: per-CPU maps hold one value for each.
pub(crate) fn possible_cpus() -> usize {
    // "0-3", or "0", or "0-3,8-11".
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let count: usize = text
        .trim()
        .split(',')
        .filter_map(|range| {
            let (low, high) = range.split_once('-').unwrap_or((range, range));
            Some(high.parse::<usize>().ok()? - low.parse::<usize>().ok()? + 1)
        })
        .sum();
    count.max(1)
}

/// Locks `file` (a file or a directory) exclusively with flock(2), until
/// it is closed; `wait`: until the lock is free, else EWOULDBLOCK at once
/// while another open file holds it.
pub(crate) fn lock(file: &File, wait: bool) -> io::Result<()> {
    let operation = if wait { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Opens a cgroup directory for the attach and query commands.
pub(crate) fn open_cgroup(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY).open(dir)
}
