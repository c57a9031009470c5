//! What the kernel says about one socket: which socket it is (whatever
//! number it has now), whether it is TCP, whether keepalive is on.
use core::ffi::c_int;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::options::KeepaliveOption;
use crate::sys;

/// A socket's identity: the same for every descriptor of it, in this and
/// every other process, and never given to another socket while it lives.
/// 48 bits of its `SO_COOKIE` (never 0).
pub(crate) type Identity = u64;

/// Identities fit in this many bits of a record.
pub(crate) const IDENTITY_BITS: u32 = 48;
const IDENTITY_MASK: u64 = (1 << IDENTITY_BITS) - 1;

/// `SO_COOKIE` (Linux ≥ 4.12): a 64-bit number the kernel gives a socket
/// the first time anyone asks, from a counter that never goes back.
const SO_COOKIE: c_int = 57;

/// Set once a kernel answered ENOPROTOOPT to SO_COOKIE (older than 4.12,
/// such as RHEL 7's 3.10): from then on the sockfs inode number serves.
static NO_COOKIES: AtomicBool = AtomicBool::new(false);

/// The identity of the socket `fd` refers to; `None` for a descriptor
/// that is not a socket (or one the shim may not ask about).
///
/// SO_COOKIE where the kernel has it, else the inode number of the
/// socket's sockfs file (`fstat`), unique among live sockets as well.
pub(crate) fn identity(fd: c_int) -> Option<Identity> {
    if !NO_COOKIES.load(Ordering::Relaxed) {
        match sys::get_u64_option(fd, libc::SOL_SOCKET, SO_COOKIE) {
            Ok(cookie) => return Some(fold(cookie)),
            Err(libc::ENOPROTOOPT) => NO_COOKIES.store(true, Ordering::Relaxed),
            Err(_) => return None,
        }
    }
    match sys::file_type_and_inode(fd) {
        Ok((libc::S_IFSOCK, inode)) => Some(fold(inode)),
        _ => None,
    }
}

/// The low 48 bits; 0 (which means "no identity" in a record) becomes
/// the mask itself. Two live sockets would need cookies 2^48 apart to meet.
fn fold(value: u64) -> Identity {
    match value & IDENTITY_MASK {
        0 => IDENTITY_MASK,
        identity => identity,
    }
}

/// SO_KEEPALIVE of `fd`: `None` if it cannot be read (not a socket).
pub(crate) fn keepalive_on(fd: c_int) -> Option<bool> {
    KeepaliveOption::Enable.get(fd).ok().map(|on| on != 0)
}

/// True if `fd` is a TCP socket of AF_INET/AF_INET6 — asked of the
/// kernel, for sockets the shim did not see created. The protocol first:
/// it alone rules out UDP and unix sockets, the usual other answers.
pub(crate) fn is_tcp(fd: c_int) -> bool {
    let get = |name| sys::get_int_option(fd, libc::SOL_SOCKET, name).ok();
    get(libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP)
        && get(libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && matches!(get(libc::SO_DOMAIN), Some(libc::AF_INET | libc::AF_INET6))
}

/// True if `socket(domain, kind, protocol)` makes a TCP socket. The type
/// may carry SOCK_CLOEXEC | SOCK_NONBLOCK; MPTCP (262) and raw sockets
/// are left alone.
pub(crate) fn creates_tcp(domain: c_int, kind: c_int, protocol: c_int) -> bool {
    const SOCK_TYPE_MASK: c_int = 0xf;
    matches!(domain, libc::AF_INET | libc::AF_INET6)
        && kind & SOCK_TYPE_MASK == libc::SOCK_STREAM
        && matches!(protocol, 0 | libc::IPPROTO_TCP)
}
