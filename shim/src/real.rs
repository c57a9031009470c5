//! The real functions behind the hooks: the next definition of each name
//! after this library, resolved with `dlsym(RTLD_NEXT)` (by hand rather
//! than with `redhook`, which is unmaintained and aborts the host when a
//! symbol is missing: here a missing symbol fails that one call with
//! `ENOSYS`).
//!
//! Each address is resolved at most once and cached in an atomic (no lock,
//! so a `fork` in the middle of resolving is harmless: the child just
//! resolves again). Nothing is registered with libc (no atexit or atfork
//! handler): once `dlclose` unmaps this library, nothing points into it.
use core::ffi::{CStr, c_int, c_void};
use core::sync::atomic::{AtomicUsize, Ordering};

use libc::{msghdr, size_t, sockaddr, socklen_t, ssize_t};

use crate::sys::ErrnoGuard;

struct Real {
    name: &'static CStr,
    address: AtomicUsize,
}

impl Real {
    const fn new(name: &'static CStr) -> Self {
        Real { name, address: AtomicUsize::new(0) }
    }

    fn get(&self) -> Option<usize> {
        match self.address.load(Ordering::Relaxed) {
            0 => {
                // dlsym may touch errno (it can allocate); the program's
                // call has not been made yet, but a lazy resolution must not
                // show either.
                let _errno = ErrnoGuard::save();
                // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name has
                // no other preconditions; it returns null if not found.
                let found = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) } as usize;
                (found != 0).then(|| {
                    self.address.store(found, Ordering::Relaxed);
                    found
                })
            }
            address => Some(address),
        }
    }
}

static SOCKET: Real = Real::new(c"socket");
static CONNECT: Real = Real::new(c"connect");
static LISTEN: Real = Real::new(c"listen");
static ACCEPT: Real = Real::new(c"accept");
static ACCEPT4: Real = Real::new(c"accept4");
static SETSOCKOPT: Real = Real::new(c"setsockopt");
static SENDTO: Real = Real::new(c"sendto");
static SENDMSG: Real = Real::new(c"sendmsg");

/// Resolves every real function now (called from the constructor).
pub(crate) fn resolve_all() {
    for real in [&SOCKET, &CONNECT, &LISTEN, &ACCEPT, &ACCEPT4, &SETSOCKOPT, &SENDTO, &SENDMSG] {
        real.get();
    }
}

/// The result of a call whose function could not be found.
fn unresolved<T: From<i8>>() -> T {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    T::from(-1)
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

pub(crate) fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int {
    call_real!(SOCKET, fn(c_int, c_int, c_int) -> c_int, domain, kind, protocol)
}

pub(crate) fn connect(fd: c_int, address: *const sockaddr, length: socklen_t) -> c_int {
    call_real!(CONNECT, fn(c_int, *const sockaddr, socklen_t) -> c_int, fd, address, length)
}

pub(crate) fn listen(fd: c_int, backlog: c_int) -> c_int {
    call_real!(LISTEN, fn(c_int, c_int) -> c_int, fd, backlog)
}

pub(crate) fn accept(fd: c_int, address: *mut sockaddr, length: *mut socklen_t) -> c_int {
    call_real!(ACCEPT, fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int, fd, address, length)
}

pub(crate) fn accept4(fd: c_int, address: *mut sockaddr, length: *mut socklen_t, flags: c_int) -> c_int {
    call_real!(ACCEPT4, fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int, fd, address, length, flags)
}

pub(crate) fn setsockopt(
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

pub(crate) fn sendto(
    fd: c_int,
    data: *const c_void,
    length: size_t,
    flags: c_int,
    address: *const sockaddr,
    address_length: socklen_t,
) -> ssize_t {
    call_real!(
        SENDTO,
        fn(c_int, *const c_void, size_t, c_int, *const sockaddr, socklen_t) -> ssize_t,
        fd,
        data,
        length,
        flags,
        address,
        address_length
    )
}

pub(crate) fn sendmsg(fd: c_int, message: *const msghdr, flags: c_int) -> ssize_t {
    call_real!(SENDMSG, fn(c_int, *const msghdr, c_int) -> ssize_t, fd, message, flags)
}
