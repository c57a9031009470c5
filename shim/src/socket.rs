//! What the kernel says about one socket: which socket it is (whatever
//! number it has now), whether it is TCP, whether keepalive is on.
use core::ffi::c_int;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::options::KeepaliveOption;
use crate::sys;

/// A socket's identity: the same for every descriptor of it, in this and
/// every other process, and never given to another socket while it lives.
/// 48 bits of its `SO_COOKIE` or inode number (never 0), see [`identity`].
pub(crate) type Identity = u64;

/// Identities fit in this many bits of a record.
pub(crate) const IDENTITY_BITS: u32 = 48;
const IDENTITY_MASK: u64 = (1 << IDENTITY_BITS) - 1;

/// `SO_COOKIE` (Linux ≥ 4.12): a 64-bit number the kernel gives a socket
/// the first time anyone asks, from a counter that never goes back.
const SO_COOKIE: c_int = 57;

/// Which identity this kernel gives: not decided yet, SO_COOKIE, or the
/// sockfs inode.
const UNDECIDED: u8 = 0;
const COOKIE: u8 = 1;
const INODE: u8 = 2;
static KIND: AtomicU8 = AtomicU8::new(UNDECIDED);

/// SO_COOKIE from Linux 5.3 on, where one counter serves the whole system.
/// Before (4.12 to 5.2), each network namespace counted on its own, so two
/// sockets of one process in two namespaces could have the same cookie;
/// and before 4.12 there is none (RHEL 7's 3.10). There the inode number
/// of the socket's sockfs file serves, unique among live sockets as well.
fn kind() -> u8 {
    match KIND.load(Ordering::Relaxed) {
        UNDECIDED => {
            let kind = match sys::kernel_version() {
                Some(version) if version >= (5, 3) => COOKIE,
                _ => INODE,
            };
            KIND.store(kind, Ordering::Relaxed);
            kind
        }
        kind => kind,
    }
}

/// The identity of the socket `fd` refers to; `None` for a descriptor
/// that is not a socket (or one the shim may not ask about).
pub(crate) fn identity(fd: c_int) -> Option<Identity> {
    if kind() == COOKIE {
        match sys::get_u64_option(fd, libc::SOL_SOCKET, SO_COOKIE) {
            Ok(cookie) => return Some(fold(cookie)),
            Err(libc::ENOPROTOOPT) => KIND.store(INODE, Ordering::Relaxed),
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
