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
//! An IPv6 address followed by `:PORT` without brackets is refused: in
//! `::1:22` the port cannot be told from the address's last group.
//!
//! Some rules are valid but probably not what was meant; parsing reports
//! them as [`RuleWarning`]s (a network written with host bits, a rule that
//! earlier ones leave nothing to match) through
//! [`Rules::parse_with_warnings`], for the launcher to print. They change
//! nothing: the shim, which cannot print, parses with [`Rules::parse`].
//! Names are never resolved: rules are matched against the address the
//! program connects to. IPv4-mapped IPv6 destinations (`::ffff:10.1.2.3`,
//! what Java connects to) are IPv4 peers: they match IPv4 rules, and a rule
//! written as a mapped network (`::ffff:10.0.0.0/104`) is read as the IPv4
//! network (`10.0.0.0/8`). IPv6 rules (`::/0` included) cover IPv6 peers.
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::number::{is_digits, parse_u64};
use crate::profile::{KeepaliveProfile, NamedProfile, ProfileErrorKind};
use crate::quoted::Quoted;

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
        Rule::parse_noting(input).map(|(rule, _)| rule)
    }

    /// [`Rule::parse`], and the address and prefix length as written when
    /// the address had bits set past the prefix (`10.1.2.3/8`), which
    /// parsing clears.
    fn parse_noting(input: &str) -> Result<(Rule, Option<(IpAddr, u8)>), RuleError<'_>> {
        let error = |kind| RuleError { input, kind };
        let Some((dest, profile)) = input.split_once('=') else {
            return Err(error(RuleErrorKind::MissingEquals));
        };
        let parsed = parse_destination(dest.trim()).map_err(error)?;
        let profile = KeepaliveProfile::parse(profile).map_err(|e| error(RuleErrorKind::Profile(e.kind)))?;
        let rule = Rule { network: parsed.network, port: parsed.port, profile };
        Ok((rule, parsed.host_bits_set))
    }

    /// True if every connection `later` matches is matched by this rule
    /// for the address family `v6` (false: IPv4, IPv4-mapped included),
    /// when `later` matches any connection of that family at all.
    fn covers_family(&self, later: &Rule, v6: bool) -> bool {
        if self.port.is_some() && self.port != later.port {
            return false;
        }
        match (self.network, later.network) {
            (None, _) => true,
            (Some((network, _)), _) if network.is_ipv6() != v6 => false,
            // All of the family (`0.0.0.0/0`, `::/0`) or only part of it.
            (Some((_, len)), None) => len == 0,
            (Some((network, len)), Some((inner, inner_len))) => {
                len <= inner_len && in_network(inner, network, len)
            }
        }
    }

    /// Whether this rule matches any connection of the family `v6`.
    fn has_family(&self, v6: bool) -> bool {
        self.network.is_none_or(|(network, _)| network.is_ipv6() == v6)
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

/// A network: its address with the bits past the prefix cleared, and the
/// prefix length.
type Network = (IpAddr, u8);

/// A destination as parsed.
struct ParsedDestination {
    network: Option<(IpAddr, u8)>,
    port: Option<u16>,
    /// The address and prefix length as written, when the address had bits
    /// set past the prefix (cleared in `network`).
    host_bits_set: Option<(IpAddr, u8)>,
}

fn parse_destination(dest: &str) -> Result<ParsedDestination, RuleErrorKind<'_>> {
    if dest.is_empty() {
        return Err(RuleErrorKind::MissingDestination);
    }
    let any_address = |port| ParsedDestination { network: None, port, host_bits_set: None };
    // `:PORT`, unless it is an IPv6 address starting with `::` (`::1`, `::/0`).
    if let Some(port) = dest.strip_prefix(':').filter(|rest| !rest.starts_with(':')) {
        return Ok(any_address(Some(parse_port(port)?)));
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
        let (network, host_bits_set) = parse_network(inside, len, true)?;
        let port = port_text.map(parse_port).transpose()?;
        return Ok(ParsedDestination { network: Some(network), port, host_bits_set });
    }
    let (network_text, port) = match dest.matches(':').count() {
        1 => {
            let (network, port) = dest.split_once(':').unwrap_or((dest, ""));
            (network, Some(parse_port(port)?))
        }
        _ => {
            if let Some(error) = ipv6_port_without_brackets(dest) {
                return Err(error);
            }
            (dest, None)
        }
    };
    let (address, len) = match network_text.split_once('/') {
        Some((address, len)) => (address, Some(len)),
        None => (network_text, None),
    };
    let (network, host_bits_set) = parse_network(address, len, false)?;
    Ok(ParsedDestination { network: Some(network), port, host_bits_set })
}

/// The error for an unbracketed IPv6 address followed by `:PORT`
/// (`::1:22`, `2001:db8::/32:5432`), if `dest` is one. Without brackets the
/// port cannot be told from the address's last group: `::1:22` is also the
/// host `::1:22`. Only a last group of decimal digits that is a valid port,
/// after a complete IPv6 address, reads this way; `2001:db8::1` does not.
fn ipv6_port_without_brackets(dest: &str) -> Option<RuleErrorKind<'_>> {
    let (head, port) = dest.rsplit_once(':')?;
    parse_port(port).ok()?;
    let (address, prefix) = match head.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (head, None),
    };
    // `2001:db8:::1` is a typo, not `2001:db8::` and a port.
    if head.ends_with(':') || address.parse::<Ipv6Addr>().is_err() || prefix.is_some_and(|p| !is_digits(p)) {
        return None;
    }
    let also_an_address = prefix.is_none() && dest.parse::<Ipv6Addr>().is_ok();
    Some(RuleErrorKind::Ipv6PortWithoutBrackets { address, prefix, port, also_an_address })
}

/// The network of an address with an optional prefix length, given either
/// inside `address` (`ADDR/LEN`) or separately (`[ADDR]/LEN`), not both;
/// and the address and length as written if the address had bits set past
/// the prefix (cleared in the network).
fn parse_network<'a>(
    address: &'a str,
    len: Option<&'a str>,
    bracketed: bool,
) -> Result<(Network, Option<(IpAddr, u8)>), RuleErrorKind<'a>> {
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
    let network = match ip {
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
    };
    let host_bits_set = match ip {
        IpAddr::V4(v4) => mask32(v4.to_bits(), len) != v4.to_bits(),
        IpAddr::V6(v6) => mask128(v6.to_bits(), len) != v6.to_bits(),
    };
    Ok((network, host_bits_set.then_some((ip, len))))
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
        write!(f, "{}", NetworkText(self.network))?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
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
        Rules::parse_noting(text, None::<fn(RuleWarning<'_>)>)
    }

    /// [`Rules::parse`], giving `warn` each [`RuleWarning`] as it is found:
    /// the same rules, and what about them is probably a mistake. When the
    /// text turns out to be an error, the warnings given so far are moot.
    pub fn parse_with_warnings<'a>(
        text: &'a str,
        warn: impl FnMut(RuleWarning<'a>),
    ) -> Result<Rules, RuleError<'a>> {
        Rules::parse_noting(text, Some(warn))
    }

    /// The parser; without `warn`, no time is spent looking for mistakes.
    fn parse_noting<'a>(
        text: &'a str,
        mut warn: Option<impl FnMut(RuleWarning<'a>)>,
    ) -> Result<Rules, RuleError<'a>> {
        let mut rules = Rules::EMPTY;
        for (index, input) in entries(text).enumerate() {
            let (rule, written) = Rule::parse_noting(input)?;
            rules.push(rule).map_err(|()| RuleError { input, kind: RuleErrorKind::TooMany })?;
            let Some(warn) = warn.as_mut() else { continue };
            if let Some((address, len)) = written {
                warn(RuleWarning::HostBitsSet { input, address, len, rule });
            }
            if let Some((first, second)) = rules.shadowing(index) {
                let entry =
                    |index: usize| Entry { index, input: entries(text).nth(index).unwrap_or_default() };
                warn(RuleWarning::Shadowed {
                    rule: Entry { index, input },
                    by: entry(first),
                    and_by: second.map(entry),
                });
            }
        }
        Ok(rules)
    }

    /// The earlier rules that leave rule `index` nothing to match: one that
    /// matches all it would, or one for its IPv4 and one for its IPv6
    /// connections.
    fn shadowing(&self, index: usize) -> Option<(usize, Option<usize>)> {
        let later = self.as_slice().get(index)?;
        let earlier = &self.as_slice()[..index];
        let covered_by = |v6: bool| earlier.iter().position(|rule| rule.covers_family(later, v6));
        // Per family: None when the rule matches none of it.
        let [v4, v6] = [false, true].map(|v6| later.has_family(v6).then(|| covered_by(v6)));
        match (v4, v6) {
            (Some(Some(a)), Some(Some(b))) if a == b => Some((a, None)),
            (Some(Some(a)), Some(Some(b))) => Some((a.min(b), Some(a.max(b)))),
            (Some(Some(only)), None) | (None, Some(Some(only))) => Some((only, None)),
            _ => None,
        }
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
    /// An IPv6 address followed by `:PORT` without brackets (`::1:22`,
    /// `2001:db8::/32:5432`): brackets tell the port from the address.
    Ipv6PortWithoutBrackets {
        /// The address before the last `:`.
        address: &'a str,
        /// The prefix length, if one was written (`ADDR/LEN:PORT`).
        prefix: Option<&'a str>,
        /// What looks like a port.
        port: &'a str,
        /// The whole text is an IPv6 address too (`::1:22`): ambiguous.
        also_an_address: bool,
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
        write!(f, "rule {}: ", Quoted(self.input))?;
        match self.kind {
            RuleErrorKind::MissingEquals => f.write_str(
                "expected DEST=PROFILE, e.g. :3306=firewall, 10.0.0.0/8=60/10/6, [2001:db8::]/32:5432=ssh",
            ),
            RuleErrorKind::MissingDestination => {
                f.write_str("the destination before `=` is empty; use :PORT, ADDR[/LEN] or ADDR[/LEN]:PORT")
            }
            RuleErrorKind::BadAddress { token } => write!(
                f,
                "{} is not an IP address or network (names are not resolved; \
                 write IPv6 with a port as [ADDR]/LEN:PORT)",
                Quoted(token)
            ),
            RuleErrorKind::PrefixOutOfRange { token, max } => {
                write!(f, "prefix length {token} is out of range 0..={max}")
            }
            RuleErrorKind::Ipv6PortWithoutBrackets { address, prefix: None, port, also_an_address: true } => {
                write!(
                    f,
                    "\"{address}:{port}\" is ambiguous: write [{address}]:{port} for port {port} of {address}, \
                     or [{address}:{port}] for the host {address}:{port} (any port)"
                )
            }
            RuleErrorKind::Ipv6PortWithoutBrackets { address, prefix, port, .. } => {
                write!(f, "an IPv6 address with a port needs brackets: write [{address}]")?;
                if let Some(prefix) = prefix {
                    write!(f, "/{prefix}")?;
                }
                write!(f, ":{port}")
            }
            RuleErrorKind::BadPort { token } => write!(f, "port {} is out of range 1..=65535", Quoted(token)),
            RuleErrorKind::Profile(kind) => write!(f, "{kind}"),
            RuleErrorKind::TooMany => write!(f, "too many rules; at most {MAX_RULES} are supported"),
        }
    }
}

impl core::error::Error for RuleError<'_> {}

/// The non-empty entries of a rule list, trimmed: what the rules are
/// numbered by.
fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|entry| !entry.is_empty())
}

/// One entry of a rule list, for a message: its position (from 0) among the
/// non-empty entries, and its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Its position among the non-empty entries, from 0.
    pub index: usize,
    /// Its `DEST=PROFILE` text.
    pub input: &'a str,
}

impl fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {} {}", self.index + 1, Quoted(self.input))
    }
}

/// A valid rule that is probably not what its author meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleWarning<'a> {
    /// The address has bits set past the prefix length (`10.1.2.3/8`):
    /// the rule covers the whole network (`10.0.0.0/8`), not the host.
    HostBitsSet {
        /// The rule's text.
        input: &'a str,
        /// The address as written.
        address: IpAddr,
        /// The prefix length as written.
        len: u8,
        /// The rule as parsed.
        rule: Rule,
    },
    /// Earlier rules match every connection this one would: being first
    /// match wins, it never applies.
    Shadowed {
        /// The rule that never applies.
        rule: Entry<'a>,
        /// An earlier rule that covers it (or its IPv4 or IPv6 part).
        by: Entry<'a>,
        /// The rule that covers the other address family, if it takes two.
        and_by: Option<Entry<'a>>,
    },
}

impl fmt::Display for RuleWarning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleWarning::HostBitsSet { input, address, len, rule } => {
                let network = NetworkText(rule.network);
                write!(
                    f,
                    "rule {}: {address}/{len} has bits set past the prefix: it covers {network}; ",
                    Quoted(input)
                )?;
                match address {
                    IpAddr::V4(_) => {
                        write!(f, "write {network} for the network, or {address} for the one host")
                    }
                    IpAddr::V6(_) => {
                        write!(f, "write {network} for the network, or [{address}] for the one host")
                    }
                }
            }
            RuleWarning::Shadowed { rule, by, and_by } => {
                write!(f, "{rule} never applies: {by}")?;
                match and_by {
                    Some(other) => write!(f, " and {other} come first and match every connection it would"),
                    None => write!(f, " comes first and matches every connection it would"),
                }
            }
        }
    }
}

/// A rule's network as its canonical text writes it.
struct NetworkText(Option<Network>);

impl fmt::Display for NetworkText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => Ok(()),
            Some((IpAddr::V4(ip), len)) => write!(f, "{ip}/{len}"),
            Some((IpAddr::V6(ip), len)) => write!(f, "[{ip}]/{len}"),
        }
    }
}
