//! Keeping a connection alive through a middlebox that forgets idle flows:
//! a load balancer's, NAT's or firewall's idle timeout, the keepalive
//! timings that stay under it, and the common boxes by name.
//!
//! # The formula
//!
//! For a box that forgets a flow `T` seconds after the last packet it saw
//! (`T` in 10 s ..= 7 d):
//!
//! ```text
//! IDLE  = min(T − ⌈T/4⌉, 300)        seconds of silence before the first probe
//! INTVL = min(max(⌊T/10⌋, 1), 30)    seconds between probes
//! CNT   = 5                          unanswered probes before ETIMEDOUT
//! ```
//!
//! - The first probe must pass the box before the box forgets the flow.
//!   Linux keeps the keepalive timer on its timer wheel, which fires a timer
//!   up to 1/8 of its delay late (kernel/time/timer.c: every level of the
//!   wheel is 8 times coarser than the one below and holds only delays of at
//!   least 8 of its own steps). So the first probe leaves at most
//!   IDLE × 9/8 ≤ 0.85 T after the last packet.
//! - If that probe is lost before it reaches the box, the next one follows
//!   INTVL later, still in time: (IDLE + INTVL) × 9/8 ≤ 0.96 T.
//! - The rest, at least 4 % of T, absorbs the box's own clock granularity
//!   and the path's delay.
//! - IDLE is never longer than the recommended profile's 300 s, nor INTVL
//!   than its 30 s: a box that waits longer needs nothing slower, and a dead
//!   peer is still noticed within IDLE + 5 × INTVL ≤ 7 min 30 s.
//!
//! 240 s (Azure Load Balancer) gives 180/24/5; 350 s (AWS NLB) 262/30/5;
//! from 400 s on it is the recommended 300/30/5.
//!
//! Keepalive cannot help against layer-7 proxies such as the AWS
//! Application Load Balancer: their idle timeout counts only data, and a
//! keepalive probe carries none. Their names are refused with that reason
//! ([`Layer7Proxy`]).
use core::fmt;
use core::ops::RangeInclusive;

use crate::duration::parse_duration_ms;
use crate::number::{is_digits, parse_u64};
use crate::quoted::Quoted;

/// How long a middlebox remembers a flow that carries no packet, in whole
/// seconds, within [`IdleTimeout::RANGE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdleTimeout(u32);

/// The keepalive timings that keep a flow under an [`IdleTimeout`]: what
/// [`IdleTimeout::timings`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timings {
    /// `TCP_KEEPIDLE`, seconds.
    pub idle_secs: u16,
    /// `TCP_KEEPINTVL`, seconds.
    pub interval_secs: u16,
    /// `TCP_KEEPCNT`.
    pub count: u8,
}

/// The longest idle the formula gives: the recommended profile's.
const MAX_IDLE_SECS: u32 = 300;
/// The longest interval the formula gives: the recommended profile's.
const MAX_INTERVAL_SECS: u32 = 30;
/// Unanswered probes before the connection is dropped.
const COUNT: u8 = 5;

impl IdleTimeout {
    /// The idle timeouts kawrap computes a profile for: from 10 s (below
    /// that, probes would crowd out the connection) to 7 days (beyond any
    /// box's; Linux conntrack's 5 days is the longest in use).
    pub const RANGE: RangeInclusive<u64> = 10..=604_800;

    /// A timeout of `secs` seconds; `None` outside [`Self::RANGE`].
    pub const fn from_secs(secs: u64) -> Option<IdleTimeout> {
        if secs >= *Self::RANGE.start() && secs <= *Self::RANGE.end() {
            Some(IdleTimeout(secs as u32))
        } else {
            None
        }
    }

    /// The timeout in seconds.
    pub const fn as_secs(self) -> u32 {
        self.0
    }

    /// The keepalive timings for a box with this idle timeout (the formula
    /// in this module's documentation).
    pub const fn timings(self) -> Timings {
        let t = self.0;
        let idle = min(t - t.div_ceil(4), MAX_IDLE_SECS);
        let interval = min(max(t / 10, 1), MAX_INTERVAL_SECS);
        // Both are at most 300: they fit.
        Timings { idle_secs: idle as u16, interval_secs: interval as u16, count: COUNT }
    }

    /// Parses a box's idle timeout: a duration with units (`240s`, `4m`,
    /// `20min`, `1h`, `350000ms`, rounded down to whole seconds), plain
    /// seconds (`240`), or a middlebox name from [`MIDDLEBOXES`] (ASCII
    /// case ignored). Surrounding spaces are ignored. The names of layer-7
    /// proxies ([`LAYER7_PROXIES`]) are refused with the reason.
    pub fn parse(input: &str) -> Result<IdleTimeout, KeepUnderError<'_>> {
        let error = |kind| KeepUnderError { input, kind };
        Self::parse_kind(input).map_err(error)
    }

    /// [`Self::parse`], with the error's kind only (for a profile's `under:`).
    pub(crate) fn parse_kind(input: &str) -> Result<IdleTimeout, KeepUnderErrorKind<'_>> {
        let text = input.trim();
        if text.is_empty() {
            return Err(KeepUnderErrorKind::Empty);
        }
        if let Some(named) = Middlebox::find(text) {
            return Ok(named.idle_timeout);
        }
        if let Some(proxy) = Layer7Proxy::find(text) {
            return Err(KeepUnderErrorKind::Layer7Proxy(proxy));
        }
        let secs = if is_digits(text) {
            parse_u64(text)
        } else {
            let ms =
                parse_duration_ms(text).map_err(|()| KeepUnderErrorKind::NotADuration { token: text })?;
            ms.map(|ms| ms / 1000)
        };
        secs.and_then(IdleTimeout::from_secs).ok_or(KeepUnderErrorKind::OutOfRange { token: text })
    }
}

const fn min(a: u32, b: u32) -> u32 {
    if a < b { a } else { b }
}

const fn max(a: u32, b: u32) -> u32 {
    if a > b { a } else { b }
}

/// `240 s`.
impl fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s", self.0)
    }
}

/// A middlebox whose idle timeout is documented by its vendor: its name
/// is a built-in profile that keeps connections under that timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Middlebox {
    /// The name users type.
    pub name: &'static str,
    /// After how long without a packet it forgets a TCP flow.
    pub idle_timeout: IdleTimeout,
    /// What it is.
    pub what: &'static str,
}

impl Middlebox {
    /// Looks up a name, ignoring ASCII case.
    pub fn find(name: &str) -> Option<&'static Middlebox> {
        MIDDLEBOXES.iter().find(|b| b.name.eq_ignore_ascii_case(name))
    }
}

const fn middlebox(name: &'static str, secs: u64, what: &'static str) -> Middlebox {
    match IdleTimeout::from_secs(secs) {
        Some(idle_timeout) => Middlebox { name, idle_timeout, what },
        None => panic!("a middlebox's idle timeout must be within IdleTimeout::RANGE"),
    }
}

/// The middleboxes kawrap knows by name, with their vendors' documented
/// idle timeouts for established TCP flows.
pub const MIDDLEBOXES: [Middlebox; 7] = [
    middlebox("aws-nlb", 350, "AWS Network Load Balancer and Gateway Load Balancer"),
    middlebox("aws-nat", 350, "AWS NAT Gateway"),
    middlebox("azure-lb", 240, "Azure Load Balancer (its default)"),
    middlebox("azure-nat", 240, "Azure NAT Gateway (its default)"),
    middlebox("gcp-firewall", 600, "Google Cloud VPC firewall"),
    middlebox("gcp-nat", 1200, "Google Cloud NAT (established TCP)"),
    middlebox("ipvs", 900, "IPVS (kube-proxy in IPVS mode, Docker Swarm)"),
];

/// A proxy that ends the TCP connection and counts only data against its
/// idle timeout: keepalive probes, which carry none, cannot keep a
/// connection open through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layer7Proxy {
    /// The name users may try.
    pub name: &'static str,
    /// Its default idle timeout, seconds.
    pub idle_timeout_secs: u32,
    /// What it is.
    pub what: &'static str,
}

impl Layer7Proxy {
    /// Looks up a name, ignoring ASCII case.
    pub fn find(name: &str) -> Option<&'static Layer7Proxy> {
        LAYER7_PROXIES.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// Layer-7 proxies users may mistake for middleboxes keepalive can help with.
pub const LAYER7_PROXIES: [Layer7Proxy; 1] =
    [Layer7Proxy { name: "aws-alb", idle_timeout_secs: 60, what: "AWS Application Load Balancer" }];

/// A middlebox idle timeout that could not be used, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepUnderError<'a> {
    /// The whole text as given.
    pub input: &'a str,
    /// What is wrong with it.
    pub kind: KeepUnderErrorKind<'a>,
}

/// What is wrong with a middlebox idle timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepUnderErrorKind<'a> {
    /// Nothing but spaces.
    Empty,
    /// Neither a duration nor a middlebox name.
    NotADuration {
        /// Its text.
        token: &'a str,
    },
    /// Outside [`IdleTimeout::RANGE`] (or too large to read at all).
    OutOfRange {
        /// Its text.
        token: &'a str,
    },
    /// A layer-7 proxy, which no keepalive setting can keep a connection through.
    Layer7Proxy(&'static Layer7Proxy),
}

impl fmt::Display for KeepUnderErrorKind<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KeepUnderErrorKind::Empty => f.write_str("a middlebox idle timeout is needed; it is empty"),
            KeepUnderErrorKind::NotADuration { token } => {
                let token = Quoted(token);
                write!(
                    f,
                    "idle timeout {token} is neither a duration (240s, 4m, 20min, 1h; a plain number is \
                     seconds) nor a middlebox name ("
                )?;
                write_names(f, MIDDLEBOXES.iter().map(|named| named.name))?;
                f.write_str(")")
            }
            KeepUnderErrorKind::OutOfRange { token } => write!(
                f,
                "idle timeout {token} is out of range {}..={} s (10 s to 7 days)",
                IdleTimeout::RANGE.start(),
                IdleTimeout::RANGE.end()
            ),
            KeepUnderErrorKind::Layer7Proxy(proxy) => write!(
                f,
                "{} ({}) is a layer-7 proxy: its idle timeout ({} s by default) counts only data, and \
                 keepalive probes carry none, so no keepalive setting keeps a connection open through \
                 it; raise its idle timeout, or have the application send data (pings, HTTP keep-alive \
                 requests)",
                proxy.name, proxy.what, proxy.idle_timeout_secs
            ),
        }
    }
}

/// Names separated by commas, for a message.
pub(crate) fn write_names<'a>(
    f: &mut fmt::Formatter<'_>,
    names: impl Iterator<Item = &'a str>,
) -> fmt::Result {
    for (index, name) in names.enumerate() {
        let separator = if index == 0 { "" } else { ", " };
        write!(f, "{separator}{name}")?;
    }
    Ok(())
}

impl fmt::Display for KeepUnderError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keep-under {}: {}", Quoted(self.input), self.kind)
    }
}

impl core::error::Error for KeepUnderError<'_> {}
