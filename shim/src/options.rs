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

    /// Reads this option of `fd` from the kernel.
    pub(crate) fn get(self, fd: c_int) -> Result<c_int, c_int> {
        let (level, name) = self.level_and_name();
        sys::get_int_option(fd, level, name)
    }
}

/// A set of [`KeepaliveOption`]s, as bits.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OptionSet(u8);

impl OptionSet {
    pub(crate) const EMPTY: OptionSet = OptionSet(0);
    pub(crate) const ALL: OptionSet = OptionSet(0x1f);

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

    pub(crate) fn insert(&mut self, option: KeepaliveOption) {
        self.0 |= option.bit();
    }
}

/// What applying a profile did.
#[derive(Clone, Copy, Default)]
pub(crate) struct Applied {
    /// Options set successfully.
    pub(crate) set: OptionSet,
    /// Options left as they were: the program's own, under `respect`.
    pub(crate) kept: OptionSet,
    /// The first option the kernel refused, with its errno.
    pub(crate) failed: Option<(KeepaliveOption, c_int)>,
}

impl Applied {
    /// Records the outcome of setting `option`.
    pub(crate) fn record(&mut self, option: KeepaliveOption, outcome: Result<(), c_int>) {
        match outcome {
            Ok(()) => self.set.insert(option),
            Err(errno) => {
                self.failed.get_or_insert((option, errno));
            }
        }
    }
}
