//! The interposed functions. Each calls the real one and returns exactly
//! its result; the shim's own work happens before or after, with `errno`
//! saved and restored around it.
use core::ffi::{c_int, c_void};

use kawrap_core::{Config, KeepaliveProfile, Policy};
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
            apply_profile(loaded, fd, log::Event::Socket);
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
    {
        let _errno = ErrnoGuard::save();
        config::with(|loaded| {
            let Some(config) = &loaded.config else { return };
            let entry = fds::get(fd);
            // The common case, a socket the shim set up at socket() and no
            // rules to consult, costs no syscall and no look at the address.
            if entry.is_not_tcp() || (config.rules.is_empty() && entry.applied() == Some(None)) {
                return;
            }
            if let Some(dest) = sys::read_destination(address, length) {
                apply_profile(loaded, fd, log::Event::Connect(dest));
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
                apply_profile(loaded, fd, log::Event::Listen);
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
            Policy::Force => {
                // The program's own call first, so it gets exactly the
                // kernel's answer (EINVAL, EFAULT, EBADF…); only once that
                // succeeded is the profile's value put back.
                let result = sys::real_setsockopt(fd, level, name, value, length);
                if result == 0 {
                    let _errno = ErrnoGuard::save();
                    if let Some(ours) = forced_value(config, fd, option) {
                        if let Err(errno) = option.set(fd, ours) {
                            log::force_failed(loaded, fd, option, errno);
                        } else {
                            log::forced(loaded, fd, option, ours);
                        }
                    }
                }
                result
            }
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
    fds::forget(fd);
    sys::real_close(fd)
}

/// Applies the profile `event` calls for (a connect's destination may
/// match a rule; otherwise the main profile) to `fd`, unless it is already
/// applied or `fd` is not TCP.
fn apply_profile(loaded: &config::Loaded, fd: c_int, event: log::Event) {
    let Some(config) = &loaded.config else { return };
    let entry = fds::get(fd);
    if entry.is_not_tcp() {
        return;
    }
    let dest = match &event {
        log::Event::Connect(dest) => Some(dest),
        log::Event::Socket | log::Event::Listen => None,
    };
    let (choice, profile) = config.profile_for(dest);
    let previous = entry.applied();
    let needed = match event {
        // A destination may call for another profile than socket() gave.
        log::Event::Connect(_) => previous != Some(choice),
        // A listener (or a fresh socket) gets the profile once; listen()
        // on a connected socket, which the kernel refuses, must not undo
        // its destination's rule.
        log::Event::Socket | log::Event::Listen => previous.is_none(),
    };
    if !needed {
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
/// shim should put it in place of the program's: only on TCP sockets, and
/// only for options the profile sets.
fn forced_value(config: &Config, fd: c_int, option: KeepaliveOption) -> Option<c_int> {
    let entry = fds::get(fd);
    let ours = option.value_in(profile_of(config, entry.applied().flatten()))?;
    (!entry.is_not_tcp() && options::is_tcp_socket(fd)).then_some(ours)
}
