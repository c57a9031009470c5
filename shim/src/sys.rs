//! The only place the shim talks to libc and the kernel.
//!
//! Two kinds of calls:
//! - the *real* hooked functions, resolved with `dlsym(RTLD_NEXT)` (written
//!   by hand rather than with `redhook`, which is unmaintained and aborts
//!   the host when a symbol is missing: here a missing symbol fails that one
//!   call with `ENOSYS`);
//! - the shim's own socket-option and file work, done with raw `syscall(2)`
//!   so it can never re-enter a hook (a plain `close` from inside this
//!   library would call our own exported `close`).
use core::ffi::{c_char, c_int, c_long, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use kawrap_core::Destination;
use libc::{sockaddr, socklen_t};

unsafe extern "C" {
    // Not declared by the libc crate for glibc; present since glibc 2.17.
    fn secure_getenv(name: *const c_char) -> *mut c_char;
}

/// One real function pointer, resolved at most once and cached in an
/// atomic (no lock, so a `fork` in the middle of resolving is harmless:
/// the child just resolves again).
struct Real {
    name: &'static core::ffi::CStr,
    address: AtomicUsize,
}

impl Real {
    const fn new(name: &'static core::ffi::CStr) -> Self {
        Real { name, address: AtomicUsize::new(0) }
    }

    fn get(&self) -> Option<usize> {
        match self.address.load(Ordering::Relaxed) {
            0 => {
                // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name has
                // no other preconditions; it returns null if not found.
                let found = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) } as usize;
                if found != 0 {
                    self.address.store(found, Ordering::Relaxed);
                    Some(found)
                } else {
                    None
                }
            }
            address => Some(address),
        }
    }
}

static SOCKET: Real = Real::new(c"socket");
static CONNECT: Real = Real::new(c"connect");
static LISTEN: Real = Real::new(c"listen");
static SETSOCKOPT: Real = Real::new(c"setsockopt");
static CLOSE: Real = Real::new(c"close");

/// Resolves every real function now (called from the constructor).
pub(crate) fn resolve_all() {
    for real in [&SOCKET, &CONNECT, &LISTEN, &SETSOCKOPT, &CLOSE] {
        real.get();
    }
}

/// Result of a real call whose symbol could not be found.
fn unresolved() -> c_int {
    set_errno(libc::ENOSYS);
    -1
}

macro_rules! call_real {
    ($real:expr, fn($($ty:ty),*) -> $ret:ty, $($arg:expr),*) => {
        match $real.get() {
            // SAFETY: the address was returned by dlsym for this symbol,
            // whose C prototype is the one transmuted to.
            Some(address) => unsafe {
                let function: unsafe extern "C" fn($($ty),*) -> $ret = core::mem::transmute(address);
                function($($arg),*)
            },
            None => unresolved(),
        }
    };
}

pub(crate) fn real_socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int {
    call_real!(SOCKET, fn(c_int, c_int, c_int) -> c_int, domain, kind, protocol)
}

pub(crate) fn real_connect(fd: c_int, address: *const sockaddr, length: socklen_t) -> c_int {
    call_real!(CONNECT, fn(c_int, *const sockaddr, socklen_t) -> c_int, fd, address, length)
}

pub(crate) fn real_listen(fd: c_int, backlog: c_int) -> c_int {
    call_real!(LISTEN, fn(c_int, c_int) -> c_int, fd, backlog)
}

pub(crate) fn real_setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    length: socklen_t,
) -> c_int {
    call_real!(
        SETSOCKOPT,
        fn(c_int, c_int, c_int, *const c_void, socklen_t) -> c_int,
        fd,
        level,
        name,
        value,
        length
    )
}

pub(crate) fn real_close(fd: c_int) -> c_int {
    call_real!(CLOSE, fn(c_int) -> c_int, fd)
}

pub(crate) fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

pub(crate) fn set_errno(value: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

/// Keeps `errno` as it was when created, whatever happens until it drops:
/// the program must see exactly the real call's errno.
pub(crate) struct ErrnoGuard(c_int);

impl ErrnoGuard {
    pub(crate) fn save() -> Self {
        ErrnoGuard(errno())
    }
}

impl Drop for ErrnoGuard {
    fn drop(&mut self) {
        set_errno(self.0);
    }
}

/// `setsockopt` with an int value, as a raw syscall: `Err(errno)`.
pub(crate) fn set_int_option(fd: c_int, level: c_int, name: c_int, value: c_int) -> Result<(), c_int> {
    let size = core::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: the value pointer and length describe a live c_int.
    let result =
        unsafe { libc::syscall(libc::SYS_setsockopt, fd, level, name, &value as *const c_int, size) };
    if result == 0 { Ok(()) } else { Err(errno()) }
}

/// `getsockopt` of an int option, as a raw syscall.
pub(crate) fn get_int_option(fd: c_int, level: c_int, name: c_int) -> Option<c_int> {
    let mut value: c_int = 0;
    let mut size = core::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: value and size are live and sized for a c_int.
    let result =
        unsafe { libc::syscall(libc::SYS_getsockopt, fd, level, name, &mut value as *mut c_int, &mut size) };
    (result == 0).then_some(value)
}

/// The environment variable's bytes, or `None` if unset — always `None` in
/// a setuid/setgid/capability (AT_SECURE) process.
pub(crate) fn secure_env(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: name is NUL-terminated; the returned pointer, if not null,
    // points into the environment block, NUL-terminated.
    unsafe {
        let value = secure_getenv(name.as_ptr());
        if value.is_null() { None } else { Some(core::ffi::CStr::from_ptr(value).to_bytes()) }
    }
}

/// True in a process the loader treats as privileged (setuid, setgid,
/// file capabilities): there the shim never opens a file.
pub(crate) fn is_secure_process() -> bool {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

pub(crate) fn getpid() -> c_long {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_getpid) }
}

/// Appends `line` to the file at `path` (NUL-terminated): opened, written
/// with one `write(2)` (O_APPEND keeps concurrent lines whole) and closed
/// again, so no descriptor of ours lives in the program (a daemon that
/// closes all fds, or reuses the number, can't be confused by it).
///
/// Only a regular file is written: a FIFO nobody reads would block the
/// program (hence O_NONBLOCK on open), a terminal or pipe would put our
/// text on the program's output. A write past `ulimit -f` would kill the
/// program with SIGXFSZ, so a log at the limit stops growing instead.
pub(crate) fn append_to_file(path: &[u8], line: &[u8]) {
    let flags =
        libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK;
    // SAFETY: path is NUL-terminated (checked by the caller), line and the
    // stat/rlimit buffers are live; the fd is ours and closed before
    // returning.
    unsafe {
        let fd = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), flags, 0o600 as c_long);
        if fd < 0 {
            return;
        }
        // If fd 0, 1 or 2 were closed, open(2) reuses them; move ours out of
        // the way so nothing the shim writes ever lands on a standard stream
        // number, even momentarily.
        let mut fd = fd;
        if fd <= 2 {
            let moved = libc::syscall(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, 3 as c_long);
            libc::syscall(libc::SYS_close, fd);
            if moved < 0 {
                return;
            }
            fd = moved;
        }
        let mut stat: libc::stat = core::mem::zeroed();
        let mut limit = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        let fits = libc::syscall(libc::SYS_fstat, fd, &mut stat as *mut libc::stat) == 0
            && stat.st_mode & libc::S_IFMT == libc::S_IFREG
            && libc::syscall(
                libc::SYS_prlimit64,
                0 as c_long,
                libc::RLIMIT_FSIZE as c_long,
                core::ptr::null::<libc::rlimit>(),
                &mut limit as *mut libc::rlimit,
            ) == 0
            && (limit.rlim_cur == libc::RLIM_INFINITY
                || (stat.st_size as u64).saturating_add(line.len() as u64) <= limit.rlim_cur);
        if fits {
            libc::syscall(libc::SYS_write, fd, line.as_ptr(), line.len());
        }
        libc::syscall(libc::SYS_close, fd);
    }
}

/// The IPv4/IPv6 destination of a `connect`, if it is one.
///
/// The program's buffer is copied with `process_vm_readv(2)` on our own
/// process, which fails with EFAULT where a plain read of a bad pointer
/// would crash the program (the kernel answers such a connect with EFAULT,
/// and so must the program's call). Where that syscall is itself denied
/// (a seccomp sandbox), the buffer is read directly, as libc would.
pub(crate) fn read_destination(address: *const sockaddr, length: socklen_t) -> Option<Destination> {
    const CAPACITY: usize = core::mem::size_of::<libc::sockaddr_in6>();
    if address.is_null() {
        return None;
    }
    let wanted = (length as usize).min(CAPACITY);
    if wanted < core::mem::size_of::<libc::sa_family_t>() {
        return None;
    }
    let mut buffer = [0u8; CAPACITY];
    let local = libc::iovec { iov_base: buffer.as_mut_ptr() as *mut c_void, iov_len: wanted };
    let remote = libc::iovec { iov_base: address as *mut c_void, iov_len: wanted };
    // SAFETY: both iovecs describe `wanted` bytes; the kernel checks the
    // remote one and reports EFAULT instead of faulting.
    let copied = unsafe {
        libc::syscall(
            libc::SYS_process_vm_readv,
            getpid(),
            &local as *const libc::iovec,
            1 as c_long,
            &remote as *const libc::iovec,
            1 as c_long,
            0 as c_long,
        )
    };
    if copied != wanted as c_long {
        if copied >= 0 || errno() == libc::EFAULT {
            return None;
        }
        // SAFETY: the caller passed `length` readable bytes, as connect(2)
        // requires; only reached where process_vm_readv is unavailable.
        unsafe { core::ptr::copy_nonoverlapping(address as *const u8, buffer.as_mut_ptr(), wanted) };
    }
    parse_destination(&buffer[..wanted])
}

fn parse_destination(bytes: &[u8]) -> Option<Destination> {
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let family = libc::sa_family_t::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]);
    // sockaddr_in: family, port (big-endian), address; sockaddr_in6:
    // family, port, flowinfo, address.
    let port = u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]);
    let ip = match c_int::from(family) {
        libc::AF_INET if bytes.len() >= core::mem::size_of::<libc::sockaddr_in>() => {
            IpAddr::V4(Ipv4Addr::new(bytes[4], bytes[5], bytes[6], bytes[7]))
        }
        libc::AF_INET6 if bytes.len() >= core::mem::size_of::<libc::sockaddr_in6>() => {
            let octets: [u8; 16] = bytes[8..24].try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(Destination { ip, port })
}
