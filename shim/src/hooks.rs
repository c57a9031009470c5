//! The interposed functions. Each calls the real one and returns exactly
//! its result and `errno`; what the shim does (in `events`) comes after the
//! real call has succeeded, except around the program's own setsockopt.
//! Nothing the shim does changes `errno`: its own system calls never touch
//! it (see `sys`), and the few libc calls it makes keep it.
use core::ffi::{c_int, c_void};

use kawrap_core::Destination;
use libc::{msghdr, size_t, sockaddr, socklen_t, ssize_t};

use crate::log::Event;
use crate::options::KeepaliveOption;
use crate::sys;
use crate::{address, config, events, real};

/// `socket(2)`: a new TCP socket gets the profile at once, so even a
/// program that never calls `connect` or `listen` through libc is covered.
///
/// # Safety
/// Same contract as libc's `socket`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int {
    let fd = real::socket(domain, kind, protocol);
    if fd >= 0 {
        config::with(|loaded| events::created(loaded, fd, domain, kind, protocol));
    }
    fd
}

/// True when a connecting call's `result` means the kernel took the
/// destination: connected, connecting in the background (non-blocking,
/// or a blocking connect a signal interrupted).
fn connecting(result: isize) -> bool {
    result >= 0 || matches!(sys::errno(), libc::EINPROGRESS | libc::EINTR)
}

/// After a connecting call the kernel accepted: the destination's rule.
///
/// # Safety
/// `address` and `length` are what the kernel just accepted in that call.
unsafe fn after_connect(
    fd: c_int,
    address: *const c_void,
    length: usize,
    event: fn(Option<Destination>) -> Event,
) {
    config::with(|loaded| {
        let dest = if events::wants_destination(loaded) {
            // SAFETY: as the caller promises.
            unsafe { address::destination(address, length) }
        } else {
            None
        };
        events::connected(loaded, fd, event(dest));
    });
}

/// `connect(2)`: the destination's rule, or the profile for a TCP socket
/// the shim did not create.
///
/// # Safety
/// Same contract as libc's `connect`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, address: *const sockaddr, length: socklen_t) -> c_int {
    let result = real::connect(fd, address, length);
    if connecting(result as isize) {
        // SAFETY: the kernel accepted `length` bytes at `address`.
        unsafe { after_connect(fd, address.cast(), length as usize, Event::Connect) };
    }
    result
}

/// `sendto(2)`: with MSG_FASTOPEN on an unconnected TCP socket it connects
/// (TCP Fast Open), and gets its destination's rule like a connect.
///
/// # Safety
/// Same contract as libc's `sendto`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    data: *const c_void,
    length: size_t,
    flags: c_int,
    address: *const sockaddr,
    address_length: socklen_t,
) -> ssize_t {
    let sent = real::sendto(fd, data, length, flags, address, address_length);
    if flags & libc::MSG_FASTOPEN != 0 && connecting(sent) {
        // SAFETY: the kernel accepted `address_length` bytes at `address`.
        unsafe { after_connect(fd, address.cast(), address_length as usize, Event::FastOpen) };
    }
    sent
}

/// `sendmsg(2)`: as `sendto`, the destination in `msg_name`.
///
/// # Safety
/// Same contract as libc's `sendmsg`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, message: *const msghdr, flags: c_int) -> ssize_t {
    let sent = real::sendmsg(fd, message, flags);
    if flags & libc::MSG_FASTOPEN != 0 && connecting(sent) {
        // SAFETY: the kernel read the msghdr (or the call would have failed
        // with EFAULT), and `msg_namelen` bytes at `msg_name` with it.
        unsafe {
            let (name, name_length) = ((*message).msg_name, (*message).msg_namelen);
            after_connect(fd, name, name_length as usize, Event::FastOpen);
        }
    }
    sent
}

/// `listen(2)`: sockets accepted from a listener inherit its options, so
/// a server's connections are covered too.
///
/// # Safety
/// Same contract as libc's `listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    let result = real::listen(fd, backlog);
    if result == 0 {
        config::with(|loaded| events::listening(loaded, fd));
    }
    result
}

fn after_accept(listener: c_int, fd: c_int) {
    if fd >= 0 {
        config::with(|loaded| events::accepted(loaded, listener, fd));
    }
}

/// `accept(2)`: a connection from a listener the shim never configured
/// (inherited from systemd or inetd) gets the profile.
///
/// # Safety
/// Same contract as libc's `accept`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, address: *mut sockaddr, length: *mut socklen_t) -> c_int {
    let accepted = real::accept(fd, address, length);
    after_accept(fd, accepted);
    accepted
}

/// `accept4(2)`: as `accept`.
///
/// # Safety
/// Same contract as libc's `accept4`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    address: *mut sockaddr,
    length: *mut socklen_t,
    flags: c_int,
) -> c_int {
    let accepted = real::accept4(fd, address, length, flags);
    after_accept(fd, accepted);
    accepted
}

/// `setsockopt(2)`: under `respect`, remembers which keepalive options the
/// program set so the shim never overwrites them; under `force`, replaces
/// the program's value with the profile's.
///
/// # Safety
/// Same contract as libc's `setsockopt`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    length: socklen_t,
) -> c_int {
    let call = || real::setsockopt(fd, level, name, value, length);
    match KeepaliveOption::from_call(level, name) {
        Some(option) => config::with(|loaded| events::program_sets(loaded, fd, option, call)),
        None => call(),
    }
}
