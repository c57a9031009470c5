//! Any bytes, read as UTF-8 (invalid sequences replaced), given to the rule
//! parser. It may not panic, nor may its warnings; accepted rules must have
//! profiles within the kernel's ranges, their canonical form must parse back to the same value,
//! and `first_match` must agree with a model of the matching rules, for a
//! destination taken from the input's last 19 bytes and for destinations
//! inside each rule's network; none of them may match first a rule a warning
//! said never applies.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kawrap_core::{Destination, MAX_RULES, Rule, RuleWarning, Rules};
use libfuzzer_sys::fuzz_target;

/// A rule as its canonical text describes it, read independently of the
/// grammar: `:PORT`, `A.B.C.D/LEN[:PORT]` or `[V6]/LEN[:PORT]`, then `=`.
struct Model {
    network: Option<(IpAddr, u32)>,
    port: Option<u16>,
}

impl Model {
    fn from_canonical(text: &str) -> Model {
        let (dest, _profile) = text.split_once('=').expect("canonical rule has '='");
        let (network, port) = if let Some(port) = dest.strip_prefix(':') {
            (None, Some(port))
        } else if let Some(rest) = dest.strip_prefix('[') {
            let (address, rest) = rest.split_once("]/").expect("canonical IPv6 rule is [ADDR]/LEN");
            let (len, port) = match rest.split_once(':') {
                Some((len, port)) => (len, Some(port)),
                None => (rest, None),
            };
            let address: Ipv6Addr = address.parse().expect("canonical IPv6 address");
            assert!(address.to_ipv4_mapped().is_none(), "{text:?}: mapped networks are shown as IPv4");
            (Some((IpAddr::V6(address), len)), port)
        } else {
            let (network, port) = match dest.split_once(':') {
                Some((network, port)) => (network, Some(port)),
                None => (dest, None),
            };
            let (address, len) = network.split_once('/').expect("canonical IPv4 rule is ADDR/LEN");
            let address: Ipv4Addr = address.parse().expect("canonical IPv4 address");
            (Some((IpAddr::V4(address), len)), port)
        };
        let network = network.map(|(address, len)| {
            let len: u32 = len.parse().expect("canonical prefix length");
            let max = if address.is_ipv4() { 32 } else { 128 };
            assert!(len <= max, "{text:?}");
            // The canonical address has no bits set past the prefix.
            assert_eq!(address, masked(address, len), "{text:?}");
            (address, len)
        });
        let port = port.map(|port| {
            let port: u16 = port.parse().expect("canonical port");
            assert!(port >= 1, "{text:?}");
            port
        });
        assert!(network.is_some() || port.is_some(), "{text:?}: a rule covers something");
        Model { network, port }
    }

    fn matches(&self, dest: &Destination) -> bool {
        if self.port.is_some_and(|port| port != dest.port) {
            return false;
        }
        let Some((network, len)) = self.network else { return true };
        let ip = match dest.ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(dest.ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == network.is_ipv4() && masked(ip, len) == network
    }
}

/// `ip` with the bits past `len` cleared.
fn masked(ip: IpAddr, len: u32) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask))
        }
    }
}

/// A destination from the input's last 19 bytes: family, 16 address bytes,
/// port. Shorter inputs are padded with zeros.
fn destination_from(data: &[u8]) -> Destination {
    let mut raw = [0u8; 19];
    let tail = &data[data.len().saturating_sub(19)..];
    raw[..tail.len()].copy_from_slice(tail);
    let mut address = [0u8; 16];
    address.copy_from_slice(&raw[1..17]);
    let port = u16::from_be_bytes([raw[17], raw[18]]);
    let v6 = Ipv6Addr::from(address);
    let v4 = Ipv4Addr::new(address[0], address[1], address[2], address[3]);
    let ip = match raw[0] % 3 {
        0 => IpAddr::V4(v4),
        1 => IpAddr::V6(v4.to_ipv6_mapped()),
        _ => IpAddr::V6(v6),
    };
    Destination { ip, port }
}

/// A destination inside `model`'s network (host bits from `noise`), on its port.
fn destination_inside(model: &Model, noise: &Destination) -> Vec<Destination> {
    let port = model.port.unwrap_or(noise.port);
    let host = match noise.ip {
        IpAddr::V4(v4) => u128::from(v4.to_bits()) | (u128::from(v4.to_bits()) << 96),
        IpAddr::V6(v6) => v6.to_bits(),
    };
    match model.network {
        None => vec![Destination { ip: noise.ip, port }],
        Some((IpAddr::V4(net), len)) => {
            let host = (host as u32).checked_shr(len).unwrap_or(0);
            let ip = Ipv4Addr::from_bits(net.to_bits() | host);
            vec![
                Destination { ip: IpAddr::V4(ip), port },
                Destination { ip: IpAddr::V6(ip.to_ipv6_mapped()), port },
            ]
        }
        Some((IpAddr::V6(net), len)) => {
            let host = host.checked_shr(len).unwrap_or(0);
            vec![Destination { ip: IpAddr::V6(Ipv6Addr::from_bits(net.to_bits() | host)), port }]
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();

    if let Ok(rule) = Rule::parse(text) {
        let shown = rule.to_string();
        assert_eq!(Rule::parse(&shown).ok(), Some(rule), "{text:?} -> {shown:?}");
    }

    // Looking for mistakes changes nothing, and the warnings' messages,
    // built from the input, must not panic either.
    let mut warnings = Vec::new();
    let mut never_applies = Vec::new();
    let warned = Rules::parse_with_warnings(text, |warning| {
        if let RuleWarning::Shadowed { rule, .. } = warning {
            never_applies.push(rule.index);
        }
        warnings.push(warning.to_string());
    });
    assert_eq!(warned, Rules::parse(text), "{text:?}");

    let rules = match Rules::parse(text) {
        Ok(rules) => rules,
        Err(error) => {
            // The message is built from the input: it must not panic either.
            let _ = error.to_string();
            return;
        }
    };
    assert!(rules.as_slice().len() <= MAX_RULES);
    assert_eq!(rules.is_empty(), rules.as_slice().is_empty());
    let shown = rules.to_string();
    assert_eq!(Rules::parse(&shown).ok(), Some(rules), "{text:?} -> {shown:?}");

    let mut models = Vec::new();
    for rule in rules.as_slice() {
        let profile = rule.profile();
        assert!((1..=32767).contains(&profile.idle_secs()), "{text:?}");
        assert!((1..=32767).contains(&profile.interval_secs()), "{text:?}");
        assert!((1..=127).contains(&profile.count()), "{text:?}");
        assert!(profile.user_timeout_ms().is_none_or(|ms| ms <= i32::MAX as u32), "{text:?}");
        models.push(Model::from_canonical(&rule.to_string()));
    }

    let noise = destination_from(data);
    let mut destinations = vec![noise];
    for model in &models {
        destinations.extend(destination_inside(model, &noise));
    }
    for dest in &destinations {
        let expected = models.iter().position(|model| model.matches(dest));
        let found = rules.first_match(dest);
        assert_eq!(found.map(|(index, _)| index), expected, "{text:?} {dest:?}");
        if let Some((index, rule)) = found {
            assert_eq!(Some(rule), rules.as_slice().get(index));
            assert!(rule.matches(dest));
            assert!(!never_applies.contains(&index), "{text:?} {dest:?}: rule {index} was said never to apply");
        }
    }
});
