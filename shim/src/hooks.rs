//! The interposed functions. Each calls the real one and returns exactly
//! its result; the shim's own work happens before or after, with `errno`
//! saved and restored around it.
use core::ffi::{c_int, c_void};
use core::mem::size_of;

use kawrap_core::{Config, Destination, KeepaliveProfile, Policy};
use libc::{sockaddr, socklen_t};

use crate::fds::{self, Choice};
use crate::options::{self, KeepaliveOption, OptionSet};
use crate::sys::{self, ErrnoGuard};
use crate::{config, log};

/// `socket(2)`: a new TCP socket gets the profile at once, so even a
/// program that never calls `connect` or `listen` through us is covered.
///
/// # Safety
/// Same contract as libc's `socket`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int {
    let fd = sys::real_socket(domain, kind, protocol);
    if fd >= 0 {
        let _errno = ErrnoGuard::save();
        config::with(|loaded| {
            if loaded.config.is_none() {
                return;
            }
            if !options::creates_tcp_socket(domain, kind, protocol) {
                fds::mark_not_tcp(fd);
                return;
            }
            fds::reset(fd);
            apply_profile(loaded, fd, log::Event::Socket, None);
        });
    }
    fd
}

/// `connect(2)`: applies the destination's rule, or the profile to a TCP
/// socket the shim did not create. Done before the real call, so it also
/// holds for non-blocking connects.
///
/// # Safety
/// Same contract as libc's `connect`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, address: *const sockaddr, length: socklen_t) -> c_int {
    // SAFETY: the caller passes a sockaddr of `length` bytes, as for connect(2).
    if let Some(dest) = unsafe { destination(address, length) } {
        let _errno = ErrnoGuard::save();
        config::with(|loaded| {
            if loaded.config.is_some() {
                apply_profile(loaded, fd, log::Event::Connect(dest), Some(&dest));
            }
        });
    }
    sys::real_connect(fd, address, length)
}

/// `listen(2)`: sockets accepted from a listener inherit its options, so
/// a server's connections are covered too.
///
/// # Safety
/// Same contract as libc's `listen`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    {
        let _errno = ErrnoGuard::save();
        config::with(|loaded| {
            if loaded.config.is_some() {
                apply_profile(loaded, fd, log::Event::Listen, None);
            }
        });
    }
    sys::real_listen(fd, backlog)
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
    let Some(option) = KeepaliveOption::from_call(level, name) else {
        return sys::real_setsockopt(fd, level, name, value, length);
    };
    config::with(|loaded| {
        let Some(config) = &loaded.config else {
            return sys::real_setsockopt(fd, level, name, value, length);
        };
        match config.policy {
            Policy::Respect => {
                let result = sys::real_setsockopt(fd, level, name, value, length);
                if result == 0 {
                    fds::mark_program_set(fd, OptionSet::only(option));
                }
                result
            }
            Policy::Force => match forced_value(config, fd, option, value, length) {
                Some(ours) => {
                    let result = sys::real_setsockopt(
                        fd,
                        level,
                        name,
                        &ours as *const c_int as *const c_void,
                        size_of::<c_int>() as socklen_t,
                    );
                    let _errno = ErrnoGuard::save();
                    log::forced(loaded, fd, option, ours);
                    result
                }
                None => sys::real_setsockopt(fd, level, name, value, length),
            },
        }
    })
}

/// `close(2)`: the number may be reused for anything; forget what we knew.
///
/// # Safety
/// Same contract as libc's `close`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    // Before the real close: afterwards another thread's socket() may
    // already have this number, and its fresh entry must not be wiped.
    fds::reset(fd);
    sys::real_close(fd)
}

/// Applies the profile `dest` calls for (the main one when `dest` is
/// `None`) to `fd`, unless it is already applied or `fd` is not TCP.
fn apply_profile(loaded: &config::Loaded, fd: c_int, event: log::Event, dest: Option<&Destination>) {
    let Some(config) = &loaded.config else { return };
    let entry = fds::get(fd);
    if entry.is_not_tcp() {
        return;
    }
    let (choice, profile) = config.profile_for(dest);
    let previous = entry.applied();
    if previous == Some(choice) {
        // Already done at socket(): the common path costs no syscall.
        return;
    }
    // A fresh socket() was checked by its arguments; anything else is
    // asked of the kernel before the shim writes to it.
    if !matches!(event, log::Event::Socket) && !options::is_tcp_socket(fd) {
        fds::mark_not_tcp(fd);
        return;
    }
    let keep = match config.policy {
        Policy::Respect => entry.program_set(),
        Policy::Force => OptionSet::EMPTY,
    };
    let mut applied = options::apply(fd, profile, keep);
    // A rule without a user timeout replacing a profile with one: the
    // kernel default (0, off) is what this destination asked for.
    if let Some(previous) = previous.map(|choice| profile_of(config, choice)) {
        if previous.user_timeout_ms().is_some()
            && profile.user_timeout_ms().is_none()
            && !keep.contains(KeepaliveOption::UserTimeout)
        {
            if let Err(errno) = KeepaliveOption::UserTimeout.set(fd, 0) {
                applied.failed.get_or_insert((KeepaliveOption::UserTimeout, errno));
            }
        }
    }
    fds::mark_applied(fd, choice);
    log::applied(loaded, fd, event, choice, profile, keep, &applied);
}

fn profile_of(config: &Config, choice: Choice) -> &KeepaliveProfile {
    match choice.and_then(|index| config.rules.as_slice().get(index)) {
        Some(rule) => rule.profile(),
        None => &config.profile,
    }
}

/// Under `force`, the value the profile gives `option` on `fd`, if the
/// shim should substitute it for the program's.
fn forced_value(
    config: &Config,
    fd: c_int,
    option: KeepaliveOption,
    value: *const c_void,
    length: socklen_t,
) -> Option<c_int> {
    // A null or short value is left to the kernel to refuse, as it would.
    if value.is_null() || (length as usize) < size_of::<c_int>() {
        return None;
    }
    let entry = fds::get(fd);
    let ours = option.value_in(profile_of(config, entry.applied().flatten()))?;
    let _errno = ErrnoGuard::save();
    (!entry.is_not_tcp() && options::is_tcp_socket(fd)).then_some(ours)
}

/// The IPv4/IPv6 destination of a `connect`, if it is one.
///
/// # Safety
/// `address` is null or points to `length` readable bytes.
unsafe fn destination(address: *const sockaddr, length: socklen_t) -> Option<Destination> {
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    if address.is_null() || (length as usize) < size_of::<libc::sa_family_t>() {
        return None;
    }
    // SAFETY: at least the family field is readable (checked above); each
    // full structure is read only when `length` covers it. Unaligned reads,
    // since the program's buffer need not be aligned.
    unsafe {
        let family = core::ptr::read_unaligned(address as *const libc::sa_family_t);
        match c_int::from(family) {
            libc::AF_INET if length as usize >= size_of::<libc::sockaddr_in>() => {
                let v4 = core::ptr::read_unaligned(address as *const libc::sockaddr_in);
                Some(Destination {
                    ip: IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))),
                    port: u16::from_be(v4.sin_port),
                })
            }
            libc::AF_INET6 if length as usize >= size_of::<libc::sockaddr_in6>() => {
                let v6 = core::ptr::read_unaligned(address as *const libc::sockaddr_in6);
                Some(Destination {
                    ip: IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)),
                    port: u16::from_be(v6.sin6_port),
                })
            }
            _ => None,
        }
    }
}
