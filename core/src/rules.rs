//! Per-destination rules: `DEST=PROFILE` entries separated by commas,
//! matched at `connect()`, first match wins.
//!
//! `DEST` is one of
//! - `:PORT` — any address, that port (`:3306`)
//! - `ADDR` or `ADDR/LEN` — an IPv4 or IPv6 address or network, any port
//!   (`10.0.0.0/8`, `2001:db8::/32`, `192.0.2.7`)
//! - `V4ADDR[/LEN]:PORT` — both (`10.0.0.0/8:5432`)
//! - `[V6ADDR][/LEN]:PORT` — both, IPv6 (`[2001:db8::]/32:5432`)
//!
//! Example: `:3306=firewall,10.0.0.0/8=60/10/6,[2001:db8::]/32:5432=ssh`.
//! Names are never resolved: rules are matched against the address the
//! program connects to. IPv4-mapped IPv6 destinations (`::ffff:10.1.2.3`,
//! what Java connects to) are IPv4 peers: they match IPv4 rules, and a rule
//! written as a mapped network (`::ffff:10.0.0.0/104`) is read as the IPv4
//! network (`10.0.0.0/8`). IPv6 rules (`::/0` included) cover IPv6 peers.
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::number::{is_digits, parse_u64};
use crate::profile::{KeepaliveProfile, NamedProfile, ProfileErrorKind};

/// At most this many rules: the shim keeps them in a fixed array.
pub const MAX_RULES: usize = 32;

/// Where a connection goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The peer's address.
    pub ip: IpAddr,
    /// The peer's port.
    pub port: u16,
}

/// One `DEST=PROFILE` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    network: Option<(IpAddr, u8)>,
    port: Option<u16>,
    profile: KeepaliveProfile,
}

impl Rule {
    /// The profile this rule gives matching connections.
    pub fn profile(&self) -> &KeepaliveProfile {
        &self.profile
    }

    /// The network this rule covers, as (masked address, prefix length);
    /// `None`: any address. The eBPF mode copies it into a kernel map.
    pub fn network(&self) -> Option<(IpAddr, u8)> {
        self.network
    }

    /// The port this rule covers; `None`: any port.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Parses one `DEST=PROFILE` entry.
    pub fn parse(input: &str) -> Result<Rule, RuleError<'_>> {
        let error = |kind| RuleError { input, kind };
        let Some((dest, profile)) = input.split_once('=') else {
            return Err(error(RuleErrorKind::MissingEquals));
        };
        let (network, port) = parse_destination(dest.trim()).map_err(error)?;
        let profile = KeepaliveProfile::parse(profile).map_err(|e| error(RuleErrorKind::Profile(e.kind)))?;
        Ok(Rule { network, port, profile })
    }

    /// True if a connection to `dest` is covered by this rule.
    pub fn matches(&self, dest: &Destination) -> bool {
        if self.port.is_some_and(|port| port != dest.port) {
            return false;
        }
        match self.network {
            None => true,
            Some((network, len)) => in_network(canonical(dest.ip), network, len),
        }
    }
}

/// `::ffff:a.b.c.d` is the IPv4 peer `a.b.c.d` reached through an IPv6 socket.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_network(ip: IpAddr, network: IpAddr, len: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => mask32(ip.to_bits(), len) == net.to_bits(),
        (IpAddr::V6(ip), IpAddr::V6(net)) => mask128(ip.to_bits(), len) == net.to_bits(),
        _ => false,
    }
}

fn mask32(bits: u32, len: u8) -> u32 {
    if len == 0 { 0 } else { bits & (u32::MAX << (32 - u32::from(len))) }
}

fn mask128(bits: u128, len: u8) -> u128 {
    if len == 0 { 0 } else { bits & (u128::MAX << (128 - u32::from(len))) }
}

type ParsedDestination = (Option<(IpAddr, u8)>, Option<u16>);

fn parse_destination(dest: &str) -> Result<ParsedDestination, RuleErrorKind<'_>> {
    if dest.is_empty() {
        return Err(RuleErrorKind::MissingDestination);
    }
    // `:PORT`, unless it is an IPv6 address starting with `::` (`::1`, `::/0`).
    if let Some(port) = dest.strip_prefix(':').filter(|rest| !rest.starts_with(':')) {
        return Ok((None, Some(parse_port(port)?)));
    }
    if let Some(rest) = dest.strip_prefix('[') {
        // [V6ADDR]/LEN:PORT, [V6ADDR/LEN]:PORT, [V6ADDR]:PORT, [V6ADDR]
        let (inside, after) = rest.split_once(']').ok_or(RuleErrorKind::BadAddress { token: dest })?;
        let (len_text, port_text) = match after.split_once(':') {
            Some((len, port)) => (len, Some(port)),
            None => (after, None),
        };
        let len = match len_text {
            "" => None,
            _ => Some(len_text.strip_prefix('/').ok_or(RuleErrorKind::BadAddress { token: dest })?),
        };
        let network = parse_network(inside, len, true)?;
        let port = port_text.map(parse_port).transpose()?;
        return Ok((Some(network), port));
    }
    let (network_text, port) = match dest.matches(':').count() {
        1 => {
            let (network, port) = dest.split_once(':').unwrap_or((dest, ""));
            (network, Some(parse_port(port)?))
        }
        _ => (dest, None),
    };
    let (address, len) = match network_text.split_once('/') {
        Some((address, len)) => (address, Some(len)),
        None => (network_text, None),
    };
    Ok((Some(parse_network(address, len, false)?), port))
}

/// An address with an optional prefix length, given either inside
/// `address` (`ADDR/LEN`) or separately (`[ADDR]/LEN`), not both.
fn parse_network<'a>(
    address: &'a str,
    len: Option<&'a str>,
    bracketed: bool,
) -> Result<(IpAddr, u8), RuleErrorKind<'a>> {
    let (address, len) = match (address.split_once('/'), len) {
        (Some((address, inner_len)), None) => (address, Some(inner_len)),
        (None, len) => (address, len),
        (Some(_), Some(_)) => return Err(RuleErrorKind::BadAddress { token: address }),
    };
    let ip: IpAddr = address.parse().map_err(|_| RuleErrorKind::BadAddress { token: address })?;
    if bracketed && ip.is_ipv4() {
        return Err(RuleErrorKind::BadAddress { token: address });
    }
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(token) => match parse_u64(token) {
            Some(len) if is_digits(token) && len <= u64::from(max) => len as u8,
            _ => return Err(RuleErrorKind::PrefixOutOfRange { token, max }),
        },
    };
    Ok(match ip {
        IpAddr::V4(v4) => (IpAddr::V4(Ipv4Addr::from_bits(mask32(v4.to_bits(), len))), len),
        IpAddr::V6(v6) => {
            let network = Ipv6Addr::from_bits(mask128(v6.to_bits(), len));
            // Destinations are matched in their IPv4 form (see `canonical`), so
            // a network inside `::ffff:0:0/96` must become that IPv4 network,
            // or it could never match anything.
            match (network.to_ipv4_mapped(), len.checked_sub(96)) {
                (Some(v4), Some(v4_len)) => (IpAddr::V4(v4), v4_len),
                _ => (IpAddr::V6(network), len),
            }
        }
    })
}

fn parse_port(token: &str) -> Result<u16, RuleErrorKind<'_>> {
    match parse_u64(token) {
        Some(port @ 1..=65535) => Ok(port as u16),
        _ => Err(RuleErrorKind::BadPort { token }),
    }
}

/// The canonical form, which parses back to the same rule.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.network, self.port) {
            (None, None) => {}
            (None, Some(port)) => write!(f, ":{port}")?,
            (Some((IpAddr::V4(ip), len)), port) => {
                write!(f, "{ip}/{len}")?;
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
            }
            (Some((IpAddr::V6(ip), len)), port) => {
                write!(f, "[{ip}]/{len}")?;
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
            }
        }
        write!(f, "={}", self.profile)
    }
}

/// A list of rules, as `KAWRAP_RULES` carries it. Fixed capacity, no
/// allocation, so the shim can hold one in a `static`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    rules: [Rule; MAX_RULES],
    len: u8,
}

const PLACEHOLDER: Rule = Rule { network: None, port: None, profile: NamedProfile::RECOMMENDED.profile };

impl Default for Rules {
    fn default() -> Self {
        Rules::EMPTY
    }
}

impl Rules {
    /// No rules: every connection gets the profile.
    pub const EMPTY: Rules = Rules { rules: [PLACEHOLDER; MAX_RULES], len: 0 };

    /// Parses comma-separated `DEST=PROFILE` entries. Empty entries (a
    /// trailing comma, or an empty string) are ignored.
    pub fn parse(text: &str) -> Result<Rules, RuleError<'_>> {
        let mut rules = Rules::EMPTY;
        for entry in text.split(',').filter(|entry| !entry.trim().is_empty()) {
            let rule = Rule::parse(entry.trim())?;
            rules.push(rule).map_err(|()| RuleError { input: entry.trim(), kind: RuleErrorKind::TooMany })?;
        }
        Ok(rules)
    }

    /// Appends a rule; `Err` when [`MAX_RULES`] are already there.
    fn push(&mut self, rule: Rule) -> Result<(), ()> {
        let slot = self.rules.get_mut(usize::from(self.len)).ok_or(())?;
        *slot = rule;
        self.len += 1;
        Ok(())
    }

    /// The rules in order.
    pub fn as_slice(&self) -> &[Rule] {
        &self.rules[..usize::from(self.len)]
    }

    /// True if there are no rules.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first rule covering `dest`, with its position.
    pub fn first_match(&self, dest: &Destination) -> Option<(usize, &Rule)> {
        self.as_slice().iter().enumerate().find(|(_, rule)| rule.matches(dest))
    }
}

/// The canonical form: canonical rules joined by commas.
impl fmt::Display for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, rule) in self.as_slice().iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{rule}")?;
        }
        Ok(())
    }
}

/// A rule that could not be used, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleError<'a> {
    /// The rule's text (one `DEST=PROFILE` entry).
    pub input: &'a str,
    /// What is wrong with it.
    pub kind: RuleErrorKind<'a>,
}

/// What is wrong with a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleErrorKind<'a> {
    /// No `=` between destination and profile.
    MissingEquals,
    /// Nothing before the `=`.
    MissingDestination,
    /// Not an IP address (names are not resolved).
    BadAddress {
        /// The text.
        token: &'a str,
    },
    /// A prefix length beyond 32 (IPv4) or 128 (IPv6).
    PrefixOutOfRange {
        /// The text.
        token: &'a str,
        /// The largest length for that family.
        max: u8,
    },
    /// A port outside 1..=65535.
    BadPort {
        /// The text.
        token: &'a str,
    },
    /// The profile after the `=` is invalid.
    Profile(ProfileErrorKind<'a>),
    /// More than [`MAX_RULES`] rules.
    TooMany,
}

impl fmt::Display for RuleError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {:?}: ", self.input)?;
        match self.kind {
            RuleErrorKind::MissingEquals => f.write_str(
                "expected DEST=PROFILE, e.g. :3306=firewall, 10.0.0.0/8=60/10/6, [2001:db8::]/32:5432=ssh",
            ),
            RuleErrorKind::MissingDestination => {
                f.write_str("the destination before `=` is empty; use :PORT, ADDR[/LEN] or ADDR[/LEN]:PORT")
            }
            RuleErrorKind::BadAddress { token } => write!(
                f,
                "{token:?} is not an IP address or network (names are not resolved; \
                 write IPv6 with a port as [ADDR]/LEN:PORT)"
            ),
            RuleErrorKind::PrefixOutOfRange { token, max } => {
                write!(f, "prefix length {token} is out of range 0..={max}")
            }
            RuleErrorKind::BadPort { token } => write!(f, "port {token:?} is out of range 1..=65535"),
            RuleErrorKind::Profile(kind) => write!(f, "{kind}"),
            RuleErrorKind::TooMany => write!(f, "too many rules; at most {MAX_RULES} are supported"),
        }
    }
}

impl core::error::Error for RuleError<'_> {}
