//! The five socket options kawrap manages, and applying a profile to a socket.
use core::ffi::c_int;

use kawrap_core::KeepaliveProfile;

use crate::sys;

/// One of the options a profile sets.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeepaliveOption {
    /// `SO_KEEPALIVE`: send keepalive probes at all.
    Enable,
    /// `TCP_KEEPIDLE`: idle seconds before the first probe.
    Idle,
    /// `TCP_KEEPINTVL`: seconds between probes.
    Interval,
    /// `TCP_KEEPCNT`: unanswered probes before the connection is dropped.
    Count,
    /// `TCP_USER_TIMEOUT`: ms unacknowledged data may wait.
    UserTimeout,
}

use KeepaliveOption::*;

impl KeepaliveOption {
    /// In the order they are applied: enabling first, so a failure later
    /// still leaves keepalive on.
    pub(crate) const ALL: [KeepaliveOption; 5] = [Enable, Idle, Interval, Count, UserTimeout];

    /// The option a `setsockopt(level, name)` call is about, if it is ours.
    pub(crate) fn from_call(level: c_int, name: c_int) -> Option<KeepaliveOption> {
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_KEEPALIVE) => Some(Enable),
            (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE) => Some(Idle),
            (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL) => Some(Interval),
            (libc::IPPROTO_TCP, libc::TCP_KEEPCNT) => Some(Count),
            (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT) => Some(UserTimeout),
            _ => None,
        }
    }

    fn level_and_name(self) -> (c_int, c_int) {
        match self {
            Enable => (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
            Idle => (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
            Interval => (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
            Count => (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
            UserTimeout => (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
        }
    }

    /// The value `profile` gives this option; `None` for a user timeout
    /// the profile does not set (the kernel's default stays).
    pub(crate) fn value_in(self, profile: &KeepaliveProfile) -> Option<c_int> {
        Some(match self {
            Enable => 1,
            Idle => c_int::from(profile.idle_secs()),
            Interval => c_int::from(profile.interval_secs()),
            Count => c_int::from(profile.count()),
            // At most i32::MAX by kawrap-core's validation.
            UserTimeout => profile.user_timeout_ms()? as c_int,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Enable => "SO_KEEPALIVE",
            Idle => "TCP_KEEPIDLE",
            Interval => "TCP_KEEPINTVL",
            Count => "TCP_KEEPCNT",
            UserTimeout => "TCP_USER_TIMEOUT",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }

    /// Sets this option to `value` on `fd`: `Err(errno)`.
    pub(crate) fn set(self, fd: c_int, value: c_int) -> Result<(), c_int> {
        let (level, name) = self.level_and_name();
        sys::set_int_option(fd, level, name, value)
    }
}

/// A set of [`KeepaliveOption`]s, as bits.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OptionSet(u8);

impl OptionSet {
    pub(crate) const EMPTY: OptionSet = OptionSet(0);

    pub(crate) fn from_bits(bits: u8) -> Self {
        OptionSet(bits & 0x1f)
    }

    pub(crate) fn bits(self) -> u8 {
        self.0
    }

    pub(crate) fn only(option: KeepaliveOption) -> Self {
        OptionSet(option.bit())
    }

    pub(crate) fn contains(self, option: KeepaliveOption) -> bool {
        self.0 & option.bit() != 0
    }

    fn insert(&mut self, option: KeepaliveOption) {
        self.0 |= option.bit();
    }
}

/// What applying a profile did.
#[derive(Clone, Copy)]
pub(crate) struct Applied {
    /// Options set successfully.
    pub(crate) set: OptionSet,
    /// The first option the kernel refused, with its errno.
    pub(crate) failed: Option<(KeepaliveOption, c_int)>,
}

/// Sets every option of `profile` on `fd` except those in `keep` (the
/// program's own, under the respect policy). Errors are collected, never
/// returned to the program: its call succeeds or fails on its own.
pub(crate) fn apply(fd: c_int, profile: &KeepaliveProfile, keep: OptionSet) -> Applied {
    let mut applied = Applied { set: OptionSet::EMPTY, failed: None };
    for option in KeepaliveOption::ALL {
        let Some(value) = option.value_in(profile) else { continue };
        if keep.contains(option) {
            continue;
        }
        match option.set(fd, value) {
            Ok(()) => applied.set.insert(option),
            Err(errno) => {
                applied.failed.get_or_insert((option, errno));
            }
        }
    }
    applied
}

/// True if `fd` is a TCP socket of AF_INET/AF_INET6 — asked of the kernel,
/// for descriptors the shim did not see created.
pub(crate) fn is_tcp_socket(fd: c_int) -> bool {
    let get = |name| sys::get_int_option(fd, libc::SOL_SOCKET, name);
    matches!(get(libc::SO_DOMAIN), Some(libc::AF_INET | libc::AF_INET6))
        && get(libc::SO_TYPE) == Some(libc::SOCK_STREAM)
        && get(libc::SO_PROTOCOL) == Some(libc::IPPROTO_TCP)
}

/// True if `socket(domain, kind, protocol)` makes a TCP socket. The type
/// may carry SOCK_CLOEXEC | SOCK_NONBLOCK; MPTCP (262) and raw sockets
/// are left alone.
pub(crate) fn creates_tcp_socket(domain: c_int, kind: c_int, protocol: c_int) -> bool {
    const SOCK_TYPE_MASK: c_int = 0xf;
    matches!(domain, libc::AF_INET | libc::AF_INET6)
        && kind & SOCK_TYPE_MASK == libc::SOCK_STREAM
        && matches!(protocol, 0 | libc::IPPROTO_TCP)
}
