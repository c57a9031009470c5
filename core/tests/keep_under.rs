//! Keeping connections under a middlebox's idle timeout: the formula's
//! promises checked over its whole accepted range, every spelling of a
//! timeout, the named middleboxes, and the refusals.
use kawrap_core::{
    BUILTIN_PROFILES, Config, IdleTimeout, KeepUnderErrorKind, KeepaliveProfile, LAYER7_PROXIES, MIDDLEBOXES,
    Middlebox, NamedProfile, ProfileErrorKind, Rules,
};
use proptest::prelude::*;

const LOWEST: u64 = 10;
const HIGHEST: u64 = 604_800;

fn timeout(secs: u64) -> IdleTimeout {
    IdleTimeout::from_secs(secs).unwrap_or_else(|| panic!("{secs} s should be accepted"))
}

fn numbers(profile: &KeepaliveProfile) -> (u16, u16, u8, Option<u32>) {
    (profile.idle_secs(), profile.interval_secs(), profile.count(), profile.user_timeout_ms())
}

/// The formula's promises, written as inequalities over whole numbers
/// (milliseconds) so that no rounding can hide a violation:
/// - the first probe leaves before the box forgets the flow, even when the
///   kernel's timer wheel fires it 1/8 late (plus one 10 ms jiffy);
/// - so does the second, should the first be lost;
/// - idle leaves at least a quarter of the timeout as margin;
/// - detection is never slower than the recommended profile's 7 min 30 s.
fn assert_keeps_under(secs: u64) {
    let profile = KeepaliveProfile::keeping_under(timeout(secs));
    let (idle, interval, count, user_timeout) = numbers(&profile);
    let (idle, interval, t_ms) = (u64::from(idle), u64::from(interval), secs * 1000);
    assert!(idle >= 1 && interval >= 1 && count >= 1, "{secs}: {profile}");
    assert!(idle < secs, "{secs}: idle {idle} is not below the timeout");
    assert!(idle <= secs - secs.div_ceil(4), "{secs}: idle {idle} leaves less than a quarter");
    let late = |ms: u64| ms + ms / 8 + 10;
    assert!(late(idle * 1000) < t_ms, "{secs}: a late first probe misses the box");
    assert!(late((idle + interval) * 1000) < t_ms, "{secs}: a late second probe misses the box");
    assert!(profile.detection_secs() <= 450, "{secs}: detection {} s", profile.detection_secs());
    assert_eq!(user_timeout, None);
    assert_eq!(KeepaliveProfile::parse(&profile.to_string()), Ok(profile), "{secs}: canonical form");
}

#[test]
fn every_accepted_timeout_gets_a_profile_that_keeps_under_it() {
    let mut previous = (0, 0);
    for secs in LOWEST..=HIGHEST {
        assert_keeps_under(secs);
        // A longer timeout never gets a shorter idle or interval.
        let profile = KeepaliveProfile::keeping_under(timeout(secs));
        let now = (profile.idle_secs(), profile.interval_secs());
        assert!(now.0 >= previous.0 && now.1 >= previous.1, "{secs}: {now:?} after {previous:?}");
        previous = now;
    }
}

#[test]
fn the_documented_examples() {
    let under = |secs| numbers(&KeepaliveProfile::keeping_under(timeout(secs)));
    assert_eq!(under(240), (180, 24, 5, None));
    assert_eq!(under(350), (262, 30, 5, None));
    assert_eq!(under(400), (300, 30, 5, None));
    assert_eq!(under(1200), (300, 30, 5, None));
    assert_eq!(under(10), (7, 1, 5, None));
    assert_eq!(under(HIGHEST), (300, 30, 5, None));
    // The recommended profile itself would send its first probe after the
    // 240 s of Azure's load balancer: the reason for all this.
    assert!(NamedProfile::RECOMMENDED.profile.idle_secs() >= 240);
}

#[test]
fn outside_the_range_is_refused_naming_value_and_range() {
    for secs in [0, 1, 9, HIGHEST + 1, u64::MAX] {
        assert_eq!(IdleTimeout::from_secs(secs), None, "{secs}");
    }
    for text in ["0", "9", "9s", "9999ms", "604801", "168h1s", "99999999999999999999", "5124095576030431h"] {
        let error = IdleTimeout::parse(text).unwrap_err();
        assert_eq!(error.kind, KeepUnderErrorKind::OutOfRange { token: text }, "{text:?}");
        assert_eq!(
            error.to_string(),
            format!(
                "keep-under {text:?}: idle timeout {text} is out of range 10..=604800 s (10 s to 7 days)"
            )
        );
    }
    let error = KeepaliveProfile::parse("under:5s").unwrap_err();
    assert_eq!(error.kind, ProfileErrorKind::KeepUnder(KeepUnderErrorKind::OutOfRange { token: "5s" }));
    assert_eq!(
        error.to_string(),
        "profile \"under:5s\": idle timeout 5s is out of range 10..=604800 s (10 s to 7 days)"
    );
}

#[test]
fn what_is_not_a_timeout_says_what_is() {
    for text in ["soon", "4 min", "-240", "240 s", "1d", "240S", "recommended", "aws"] {
        let error = IdleTimeout::parse(text).unwrap_err();
        assert_eq!(error.kind, KeepUnderErrorKind::NotADuration { token: text.trim() }, "{text:?}");
        let message = error.to_string();
        assert!(message.contains("240s, 4m") && message.contains("aws-nlb, aws-nat, azure-lb"), "{message}");
    }
    assert_eq!(IdleTimeout::parse(" ").unwrap_err().kind, KeepUnderErrorKind::Empty);
    assert_eq!(
        KeepaliveProfile::parse("under:").unwrap_err().kind,
        ProfileErrorKind::KeepUnder(KeepUnderErrorKind::Empty)
    );
}

#[test]
fn middleboxes_are_builtin_profiles_with_their_vendors_timeouts() {
    let documented = [
        ("aws-nlb", 350),
        ("aws-nat", 350),
        ("azure-lb", 240),
        ("azure-nat", 240),
        ("gcp-firewall", 600),
        ("gcp-nat", 1200),
        ("ipvs", 900),
    ];
    let listed: Vec<(&str, u32)> = MIDDLEBOXES.iter().map(|b| (b.name, b.idle_timeout.as_secs())).collect();
    assert_eq!(listed, documented);
    for (name, secs) in documented {
        let named = NamedProfile::find(name).unwrap();
        assert_eq!(named.idle_timeout, Some(timeout(secs.into())), "{name}");
        assert_eq!(named.profile, KeepaliveProfile::keeping_under(timeout(secs.into())), "{name}");
        assert_eq!(named.purpose, Middlebox::find(name).unwrap().what);
        // As a profile, as `under:NAME`, as a timeout, in any case.
        assert_eq!(KeepaliveProfile::parse(&name.to_uppercase()), Ok(named.profile));
        assert_eq!(KeepaliveProfile::parse(&format!("under:{name}")), Ok(named.profile));
        assert_eq!(IdleTimeout::parse(&format!(" {name} ")), Ok(timeout(secs.into())));
    }
    // They come after the general profiles, which have no timeout.
    let general: Vec<&str> =
        BUILTIN_PROFILES.iter().filter(|p| p.idle_timeout.is_none()).map(|p| p.name).collect();
    assert_eq!(general, ["recommended", "firewall", "ssh", "satellite", "linux-default"]);
    assert_eq!(&BUILTIN_PROFILES[..5].iter().map(|p| p.name).collect::<Vec<_>>(), &general);
}

#[test]
fn layer7_proxies_are_refused_with_the_reason() {
    assert_eq!(LAYER7_PROXIES.map(|p| p.name), ["aws-alb"]);
    for text in ["aws-alb", "AWS-ALB", "under:aws-alb", " under:aws-alb "] {
        let error = KeepaliveProfile::parse(text).unwrap_err();
        let ProfileErrorKind::KeepUnder(KeepUnderErrorKind::Layer7Proxy(proxy)) = error.kind else {
            panic!("{text:?}: {error:?}");
        };
        assert_eq!(proxy.name, "aws-alb");
        let message = error.to_string();
        assert!(
            message.contains("layer-7 proxy")
                && message.contains("60 s")
                && message.contains("counts only data")
                && message.contains("keepalive probes carry none"),
            "{message}"
        );
    }
    assert!(matches!(IdleTimeout::parse("aws-alb").unwrap_err().kind, KeepUnderErrorKind::Layer7Proxy(_)));
    assert_eq!(NamedProfile::find("aws-alb"), None);
}

#[test]
fn the_shim_and_rules_read_under_as_the_launcher_does() {
    let config =
        Config::from_values(Some("under:240s"), Some(":3306=under:350s,10.0.0.0/8=azure-lb"), None).unwrap();
    assert_eq!(config.profile.to_string(), "180/24/5");
    let rules = config.rules.as_slice();
    assert_eq!(rules[0].profile().to_string(), "262/30/5");
    assert_eq!(rules[1].profile().to_string(), "180/24/5");
    assert_eq!(Rules::parse(":3306=under:350s").unwrap().to_string(), ":3306=262/30/5");
}

proptest! {
    #[test]
    fn every_spelling_of_a_timeout_means_the_same(
        secs in LOWEST..=HIGHEST,
        style in 0..6u8,
        extra_ms in 0..1000u64,
        before in " {0,2}",
        after in " {0,2}",
        prefix in prop_oneof![Just("under:"), Just("UNDER:"), Just("Under:")],
    ) {
        let text = match style {
            0 => format!("{secs}"),
            1 => format!("{secs}s"),
            2 => format!("{}m{}s", secs / 60, secs % 60),
            3 => format!("{}h{}min{}s", secs / 3600, secs % 3600 / 60, secs % 60),
            // Milliseconds round down to the whole second.
            4 => format!("{}ms", secs * 1000 + extra_ms),
            _ => format!("{}s{extra_ms}ms", secs),
        };
        let expected = timeout(secs);
        let spaced = format!("{before}{text}{after}");
        prop_assert_eq!(IdleTimeout::parse(&spaced), Ok(expected));
        let profile = KeepaliveProfile::parse(&format!("{before}{prefix}{text}{after}")).ok();
        prop_assert_eq!(profile, Some(KeepaliveProfile::keeping_under(expected)));
    }

    #[test]
    fn no_text_makes_the_timeout_parser_panic(text in "[0-9a-z: ]{0,16}|\\PC{0,16}") {
        if let Ok(found) = IdleTimeout::parse(&text) {
            prop_assert!((LOWEST..=HIGHEST).contains(&u64::from(found.as_secs())));
        }
        let _ = IdleTimeout::parse(&text).map_err(|e| e.to_string());
        let _ = KeepaliveProfile::parse(&format!("under:{text}")).map_err(|e| e.to_string());
    }
}
