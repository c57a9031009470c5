//! Properties over generated input: no string makes a parser panic, every
//! accepted profile is within the kernel's ranges, and the canonical forms
//! parse back to the same value. Rule matching is compared with a model
//! written independently of the parser.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kawrap_core::{
    BUILTIN_PROFILES, Destination, Field, HumanDuration, KeepaliveProfile, MAX_RULES, Policy,
    ProfileErrorKind, Rule, Rules, UserTimeout, parse_duration_ms,
};
use proptest::prelude::*;

const IDLE_MAX: u64 = 32767;
const COUNT_MAX: u64 = 127;
const UT_MAX: u64 = i32::MAX as u64;

fn assert_in_kernel_range(profile: &KeepaliveProfile) {
    assert!((1..=32767).contains(&profile.idle_secs()), "{profile:?}");
    assert!((1..=32767).contains(&profile.interval_secs()), "{profile:?}");
    assert!((1..=127).contains(&profile.count()), "{profile:?}");
    if let Some(ms) = profile.user_timeout_ms() {
        assert!(ms <= i32::MAX as u32, "{profile:?}");
    }
}

/// Text that looks like the grammar often enough to reach deep branches.
fn grammar_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9/ autohmsin]{0,24}",
        "[0-9a-f:.\\[\\]/=, ]{0,48}",
        "[:\\[]?[0-9a-f:.]{0,20}[\\]]?(/[0-9]{0,4})?(:[0-9]{0,6})?=[0-9/a-z]{0,16}",
    ]
}

proptest! {
    #[test]
    fn parsers_never_panic(text in grammar_like()) {
        if let Ok(profile) = KeepaliveProfile::parse(&text) {
            assert_in_kernel_range(&profile);
            prop_assert_eq!(KeepaliveProfile::parse(&profile.to_string()).ok(), Some(profile));
        }
        if let Ok(rules) = Rules::parse(&text) {
            prop_assert!(rules.as_slice().len() <= MAX_RULES);
            for rule in rules.as_slice() {
                assert_in_kernel_range(rule.profile());
            }
            prop_assert_eq!(Rules::parse(&rules.to_string()).ok(), Some(rules));
        }
        if let Ok(rule) = Rule::parse(&text) {
            prop_assert_eq!(Rule::parse(&rule.to_string()).ok(), Some(rule));
        }
        if let Ok(policy) = Policy::parse(&text) {
            prop_assert_eq!(policy.name(), text.trim().to_ascii_lowercase());
        }
        let _ = UserTimeout::parse(&text);
        let _ = parse_duration_ms(&text);
        // Error messages are built from the input: formatting them must not panic either.
        let _ = KeepaliveProfile::parse(&text).map_err(|e| e.to_string());
        let _ = Rules::parse(&text).map_err(|e| e.to_string());
    }

    #[test]
    fn valid_values_build_a_profile(
        idle in 1..=IDLE_MAX,
        interval in 1..=IDLE_MAX,
        count in 1..=COUNT_MAX,
        ut in proptest::option::of(0..=UT_MAX),
    ) {
        let profile = KeepaliveProfile::new(idle, interval, count, ut).unwrap();
        prop_assert_eq!(u64::from(profile.idle_secs()), idle);
        prop_assert_eq!(u64::from(profile.interval_secs()), interval);
        prop_assert_eq!(u64::from(profile.count()), count);
        prop_assert_eq!(profile.user_timeout_ms().map(u64::from), ut);
        prop_assert_eq!(u64::from(profile.detection_secs()), idle + interval * count);
        prop_assert_eq!(profile.detection_time().as_secs(), idle + interval * count);
        prop_assert_eq!(KeepaliveProfile::parse(&profile.to_string()).ok(), Some(profile));
    }

    #[test]
    fn out_of_range_values_are_refused(
        idle in prop_oneof![Just(0u64), IDLE_MAX + 1..=u64::MAX, 1..=IDLE_MAX],
        interval in prop_oneof![Just(0u64), IDLE_MAX + 1..=u64::MAX, 1..=IDLE_MAX],
        count in prop_oneof![Just(0u64), COUNT_MAX + 1..=u64::MAX, 1..=COUNT_MAX],
        ut in proptest::option::of(prop_oneof![UT_MAX + 1..=u64::MAX, 0..=UT_MAX]),
    ) {
        let expected = if !(1..=IDLE_MAX).contains(&idle) {
            Some((Field::Idle, idle))
        } else if !(1..=IDLE_MAX).contains(&interval) {
            Some((Field::Interval, interval))
        } else if !(1..=COUNT_MAX).contains(&count) {
            Some((Field::Count, count))
        } else {
            ut.filter(|&ms| ms > UT_MAX).map(|ms| (Field::UserTimeout, ms))
        };
        let built = KeepaliveProfile::new(idle, interval, count, ut);
        prop_assert_eq!(built.err(), expected);
        // The shorthand says the same.
        let mut text = format!("{idle}/{interval}/{count}");
        if let Some(ms) = ut {
            text += &format!("/{ms}");
        }
        let parsed = KeepaliveProfile::parse(&text);
        match expected {
            None => prop_assert_eq!(parsed.ok(), built.ok()),
            Some((field, value)) => {
                let value = value.to_string();
                prop_assert_eq!(
                    parsed.unwrap_err().kind,
                    ProfileErrorKind::OutOfRange { field, token: &value }
                );
            }
        }
    }

    #[test]
    fn shorthand_in_any_spelling_means_the_same(
        idle in 1..=IDLE_MAX,
        interval in 1..=IDLE_MAX,
        count in 1..=COUNT_MAX,
        ut_parts in proptest::option::of((0..600u64, 0..60u64, 0..60u64, 0..1000u64)),
        spaces in proptest::collection::vec(" {0,2}", 10),
        zeros in proptest::collection::vec("0{0,2}", 3),
        auto in any::<bool>(),
    ) {
        let s = |i: usize| spaces[i].as_str();
        let mut text = format!(
            "{}{}{idle}{}/{}{}{interval}{}/{}{}{count}{}",
            s(0), zeros[0], s(1), s(2), zeros[1], s(3), s(4), zeros[2], s(5)
        );
        let detection_ms = (idle + interval * count) * 1000;
        let mut expected_ut = None;
        if auto {
            text += &format!("{}/{}auto", s(6), s(7));
            expected_ut = Some(detection_ms);
        } else if let Some((h, m, sec, ms)) = ut_parts {
            text += &format!("{}/{}{h}h{m}m{sec}s{ms}ms", s(6), s(7));
            expected_ut = Some(((h * 60 + m) * 60 + sec) * 1000 + ms);
        }
        text += s(8);
        let parsed = KeepaliveProfile::parse(&text);
        match expected_ut {
            Some(ms) if ms > UT_MAX => prop_assert!(parsed.is_err(), "{text:?}"),
            _ => {
                let profile = parsed.unwrap();
                prop_assert_eq!(
                    profile,
                    KeepaliveProfile::new(idle, interval, count, expected_ut).unwrap()
                );
            }
        }
    }

    #[test]
    fn auto_user_timeout_is_ok_exactly_when_it_fits(
        idle in 1..=IDLE_MAX,
        interval in 1..=IDLE_MAX,
        count in 1..=COUNT_MAX,
    ) {
        let ms = (idle + interval * count) * 1000;
        let text = format!("{idle}/{interval}/{count}/auto");
        let parsed = KeepaliveProfile::parse(&text);
        if ms <= UT_MAX {
            prop_assert_eq!(parsed.unwrap().user_timeout_ms(), Some(ms as u32));
        } else {
            prop_assert_eq!(parsed.unwrap_err().kind, ProfileErrorKind::AutoUserTimeoutTooLong { ms });
        }
    }

    #[test]
    fn durations_with_units_add_up(parts in proptest::collection::vec((0..100_000u64, 0..5usize), 1..6)) {
        const UNITS: [(&str, u64); 5] = [("h", 3_600_000), ("m", 60_000), ("min", 60_000), ("s", 1000), ("ms", 1)];
        let text: String = parts.iter().map(|&(n, unit)| format!("{n}{}", UNITS[unit].0)).collect();
        let total: u64 = parts.iter().map(|&(n, unit)| n * UNITS[unit].1).sum();
        prop_assert_eq!(parse_duration_ms(&text), Ok(Some(total)));
    }

    #[test]
    fn human_duration_matches_its_model(secs in prop_oneof![0..200_000u64, any::<u64>()]) {
        let amounts = [secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60];
        let units = ["d", "h", "min", "s"];
        let expected = match amounts.iter().position(|&a| a > 0) {
            None => "0 s".to_string(),
            Some(i) if i + 1 < 4 && amounts[i + 1] > 0 => {
                format!("{} {} {} {}", amounts[i], units[i], amounts[i + 1], units[i + 1])
            }
            Some(i) => format!("{} {}", amounts[i], units[i]),
        };
        prop_assert_eq!(HumanDuration::from_secs(secs).to_string(), expected);
    }
}

// ---------------------------------------------------------------- rules

/// A rule as the model sees it: an optional network (already masked and
/// with IPv4-mapped networks turned into IPv4) and an optional port.
#[derive(Clone, Debug)]
struct ModelRule {
    text: String,
    network: Option<(IpAddr, u8)>,
    port: Option<u16>,
    profile: KeepaliveProfile,
}

impl ModelRule {
    fn canonical(&self) -> String {
        let mut out = String::new();
        match self.network {
            Some((IpAddr::V4(ip), len)) => out += &format!("{ip}/{len}"),
            Some((IpAddr::V6(ip), len)) => out += &format!("[{ip}]/{len}"),
            None => {}
        }
        if let Some(port) = self.port {
            out += &format!(":{port}");
        }
        format!("{out}={}", self.profile)
    }

    fn matches(&self, dest: &Destination) -> bool {
        if self.port.is_some_and(|port| port != dest.port) {
            return false;
        }
        let Some((network, len)) = self.network else { return true };
        // The IPv4 peer behind an IPv4-mapped address.
        let ip = match dest.ip {
            IpAddr::V6(v6) => match v6.octets() {
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d] => {
                    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
                }
                _ => dest.ip,
            },
            v4 => v4,
        };
        match (ip, network) {
            (IpAddr::V4(ip), IpAddr::V4(net)) => {
                (0..u32::from(len)).all(|bit| (ip.to_bits() ^ net.to_bits()) & (1 << (31 - bit)) == 0)
            }
            (IpAddr::V6(ip), IpAddr::V6(net)) => {
                (0..u32::from(len)).all(|bit| (ip.to_bits() ^ net.to_bits()) & (1 << (127 - bit)) == 0)
            }
            _ => false,
        }
    }
}

fn mask_v4(ip: u32, len: u8) -> u32 {
    (0..32).filter(|bit| *bit < u32::from(len)).map(|bit| ip & (1 << (31 - bit))).sum()
}

fn mask_v6(ip: u128, len: u8) -> u128 {
    (0..128).filter(|bit| *bit < u32::from(len)).map(|bit| ip & (1 << (127 - bit))).sum()
}

/// IPv6 addresses, often IPv4-mapped, often in 2001:db8::/32.
fn ipv6() -> impl Strategy<Value = u128> {
    prop_oneof![
        any::<u128>(),
        any::<u32>().prop_map(|v4| 0xffff_0000_0000 | u128::from(v4)),
        any::<u128>().prop_map(|low| (0x2001_0db8 << 96) | (low >> 32)),
        Just(0),
        Just(1),
    ]
}

fn profile_text() -> impl Strategy<Value = (String, KeepaliveProfile)> {
    prop_oneof![
        (0..BUILTIN_PROFILES.len())
            .prop_map(|i| { (BUILTIN_PROFILES[i].name.to_string(), BUILTIN_PROFILES[i].profile) }),
        (1..=IDLE_MAX, 1..=IDLE_MAX, 1..=COUNT_MAX, proptest::option::of(0..=UT_MAX)).prop_map(
            |(idle, interval, count, ut)| {
                let profile = KeepaliveProfile::new(idle, interval, count, ut).unwrap();
                (profile.to_string(), profile)
            }
        ),
    ]
}

fn model_rule() -> impl Strategy<Value = ModelRule> {
    let port = proptest::option::of(1..=u16::MAX);
    let v4 = (any::<u32>(), proptest::option::of(0..=32u8), port.clone()).prop_map(|(bits, len, port)| {
        let full = len.unwrap_or(32);
        let ip = Ipv4Addr::from_bits(bits);
        let mut dest = ip.to_string();
        if let Some(len) = len {
            dest += &format!("/{len}");
        }
        if let Some(port) = port {
            dest += &format!(":{port}");
        }
        (dest, Some((IpAddr::V4(Ipv4Addr::from_bits(mask_v4(bits, full))), full)), port)
    });
    let v6 = (ipv6(), proptest::option::of(0..=128u8), port.clone(), 0..3u8).prop_map(
        |(bits, len, port, style)| {
            let full = len.unwrap_or(128);
            let ip = Ipv6Addr::from_bits(bits);
            let len_text = len.map(|len| format!("/{len}")).unwrap_or_default();
            // Without brackets there is no port.
            let port = if style == 0 { None } else { port };
            let port_text = port.map(|port| format!(":{port}")).unwrap_or_default();
            let dest = match style {
                0 => format!("{ip}{len_text}"),
                1 => format!("[{ip}]{len_text}{port_text}"),
                _ => format!("[{ip}{len_text}]{port_text}"),
            };
            let masked = mask_v6(bits, full);
            let network = match Ipv6Addr::from_bits(masked).to_ipv4_mapped() {
                Some(v4) if full >= 96 => (IpAddr::V4(v4), full - 96),
                _ => (IpAddr::V6(Ipv6Addr::from_bits(masked)), full),
            };
            (dest, Some(network), port)
        },
    );
    let port_only = (1..=u16::MAX).prop_map(|port| (format!(":{port}"), None, Some(port)));
    (prop_oneof![v4, v6, port_only], profile_text(), " {0,2}", " {0,2}").prop_map(
        |((dest, network, port), (profile_text, profile), before, after)| ModelRule {
            text: format!("{before}{dest}{after}={after}{profile_text}{before}"),
            network,
            port,
            profile,
        },
    )
}

/// Destinations near the rules' networks (so that some match) or anywhere.
fn destinations(rules: &[ModelRule], picks: &[(usize, u128, u16, bool)]) -> Vec<Destination> {
    picks
        .iter()
        .map(|&(index, noise, port, near)| {
            let rule = rules.get(index % rules.len().max(1));
            let port = match rule.and_then(|r| r.port) {
                Some(rule_port) if near => rule_port,
                _ => port,
            };
            let ip = match rule.and_then(|r| r.network) {
                Some((IpAddr::V4(net), len)) if near => {
                    let host = (noise as u32).checked_shr(u32::from(len)).unwrap_or(0);
                    let v4 = Ipv4Addr::from_bits(net.to_bits() | host);
                    // Half of them as Java sees them, IPv4-mapped.
                    if noise >> 127 == 1 { IpAddr::V6(v4.to_ipv6_mapped()) } else { IpAddr::V4(v4) }
                }
                Some((IpAddr::V6(net), len)) if near => {
                    let host = noise.checked_shr(u32::from(len)).unwrap_or(0);
                    IpAddr::V6(Ipv6Addr::from_bits(net.to_bits() | host))
                }
                _ if noise & 1 == 0 => IpAddr::V4(Ipv4Addr::from_bits(noise as u32)),
                _ => IpAddr::V6(Ipv6Addr::from_bits(noise)),
            };
            Destination { ip, port }
        })
        .collect()
}

proptest! {
    #[test]
    fn a_valid_rule_parses_to_its_model(
        model in model_rule(),
        picks in proptest::collection::vec((any::<usize>(), any::<u128>(), any::<u16>(), any::<bool>()), 8),
    ) {
        let rule = Rule::parse(&model.text).map_err(|e| e.to_string());
        let rule = rule.map_err(|e| TestCaseError::fail(format!("{:?}: {e}", model.text)))?;
        prop_assert_eq!(rule.to_string(), model.canonical());
        prop_assert_eq!(rule.profile(), &model.profile);
        prop_assert_eq!(Rule::parse(&rule.to_string()).ok(), Some(rule));
        for dest in destinations(std::slice::from_ref(&model), &picks) {
            prop_assert_eq!(rule.matches(&dest), model.matches(&dest), "{} vs {:?}", model.text, dest);
        }
    }

    #[test]
    fn valid_rules_round_trip_and_first_match_wins(
        models in proptest::collection::vec(model_rule(), 0..=MAX_RULES),
        separators in proptest::collection::vec(prop_oneof![Just(","), Just(" , "), Just(",,")], MAX_RULES),
        picks in proptest::collection::vec((any::<usize>(), any::<u128>(), any::<u16>(), any::<bool>()), 16),
    ) {
        let mut text = String::new();
        for (index, model) in models.iter().enumerate() {
            if index > 0 {
                text += separators[index];
            }
            text += &model.text;
        }
        let rules = Rules::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(rules.as_slice().len(), models.len());
        prop_assert_eq!(rules.is_empty(), models.is_empty());
        let canonical: Vec<String> = models.iter().map(ModelRule::canonical).collect();
        prop_assert_eq!(rules.to_string(), canonical.join(","));
        prop_assert_eq!(Rules::parse(&rules.to_string()).ok(), Some(rules));
        for dest in destinations(&models, &picks) {
            let expected = models.iter().position(|model| model.matches(&dest));
            prop_assert_eq!(rules.first_match(&dest).map(|(index, _)| index), expected, "{:?}", dest);
            if let Some((index, rule)) = rules.first_match(&dest) {
                prop_assert_eq!(rule.profile(), &models[index].profile);
            }
        }
        // One more is too many.
        if models.len() == MAX_RULES {
            let one_more = format!("{text},:1=ssh");
            let error = Rules::parse(&one_more).unwrap_err();
            prop_assert_eq!(error.input, ":1=ssh");
        }
    }
}
