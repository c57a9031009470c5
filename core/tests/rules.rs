//! The per-destination rule grammar and matching, at every boundary.
use std::net::IpAddr;

use kawrap_core::{
    Destination, Field, KeepaliveProfile, MAX_RULES, ProfileErrorKind, Rule, RuleError, RuleErrorKind,
    RuleWarning, Rules,
};

fn dest(ip: &str, port: u16) -> Destination {
    Destination { ip: ip.parse::<IpAddr>().unwrap(), port }
}

fn rule(text: &str) -> Rule {
    match Rule::parse(text) {
        Ok(rule) => rule,
        Err(e) => panic!("{text:?} should parse, got: {e}"),
    }
}

fn rules(text: &str) -> Rules {
    match Rules::parse(text) {
        Ok(rules) => rules,
        Err(e) => panic!("{text:?} should parse, got: {e}"),
    }
}

fn err_kind(text: &str) -> RuleErrorKind<'_> {
    match Rule::parse(text) {
        Ok(rule) => panic!("{text:?} should be rejected, got {rule}"),
        Err(e) => e.kind,
    }
}

fn message(text: &str) -> String {
    match Rules::parse(text) {
        Ok(rules) => panic!("{text:?} should be rejected, got {rules}"),
        Err(e) => e.to_string(),
    }
}

/// The canonical form of one rule.
fn canonical(text: &str) -> String {
    rule(text).to_string()
}

fn profile(text: &str) -> KeepaliveProfile {
    KeepaliveProfile::parse(text).unwrap()
}

// ---------------------------------------------------------------- accepted forms

#[test]
fn port_only() {
    let r = rule(":3306=firewall");
    assert_eq!(r.to_string(), ":3306=60/10/6");
    assert_eq!(r.profile(), &profile("firewall"));
    assert!(r.matches(&dest("192.0.2.1", 3306)));
    assert!(r.matches(&dest("2001:db8::1", 3306)));
    assert!(r.matches(&dest("::ffff:10.1.2.3", 3306)));
    assert!(!r.matches(&dest("192.0.2.1", 3307)));
}

#[test]
fn ipv4_network_any_port() {
    let r = rule("10.0.0.0/8=60/10/6");
    assert_eq!(r.to_string(), "10.0.0.0/8=60/10/6");
    assert!(r.matches(&dest("10.0.0.0", 1)));
    assert!(r.matches(&dest("10.255.255.255", 65535)));
    assert!(!r.matches(&dest("11.0.0.0", 80)));
    assert!(!r.matches(&dest("9.255.255.255", 80)));
}

#[test]
fn ipv4_network_and_port() {
    let r = rule("10.0.0.0/8:5432=ssh");
    assert_eq!(r.to_string(), "10.0.0.0/8:5432=60/60/5");
    assert!(r.matches(&dest("10.1.2.3", 5432)));
    assert!(!r.matches(&dest("10.1.2.3", 5433)));
    assert!(!r.matches(&dest("192.0.2.1", 5432)));
}

#[test]
fn ipv6_bracketed_forms() {
    // Prefix outside or inside the brackets: the same rule.
    let outside = rule("[2001:db8::]/32:5432=ssh");
    let inside = rule("[2001:db8::/32]:5432=ssh");
    assert_eq!(outside, inside);
    assert_eq!(outside.to_string(), "[2001:db8::]/32:5432=60/60/5");
    assert!(outside.matches(&dest("2001:db8:ffff::1", 5432)));
    assert!(!outside.matches(&dest("2001:db9::1", 5432)));
    assert!(!outside.matches(&dest("2001:db8::1", 22)));

    let host = rule("[::1]:22=ssh");
    assert_eq!(host.to_string(), "[::1]/128:22=60/60/5");
    assert!(host.matches(&dest("::1", 22)));
    assert!(!host.matches(&dest("::2", 22)));
    assert!(!host.matches(&dest("127.0.0.1", 22)));

    assert_eq!(canonical("[::1]=ssh"), "[::1]/128=60/60/5");
    assert_eq!(canonical("[2001:db8::]/32=ssh"), "[2001:db8::]/32=60/60/5");
    assert_eq!(canonical("[2001:db8::/32]=ssh"), "[2001:db8::]/32=60/60/5");
}

#[test]
fn ipv6_without_brackets_has_no_port() {
    let r = rule("2001:db8::/32=ssh");
    assert_eq!(r.to_string(), "[2001:db8::]/32=60/60/5");
    assert!(r.matches(&dest("2001:db8::5432", 1)));
    // A last group of hex digits, or one that cannot be a port, is the address's.
    assert_eq!(canonical("2001:db8::1:ab=ssh"), "[2001:db8::1:ab]/128=60/60/5");
    assert_eq!(canonical("2001:db8::1:0=ssh"), "[2001:db8::1:0]/128=60/60/5");
    assert_eq!(canonical("2001:db8::5432=ssh"), "[2001:db8::5432]/128=60/60/5");
    assert_eq!(canonical("::=ssh"), "[::]/128=60/60/5");
    assert_eq!(canonical("::/0=ssh"), "[::]/0=60/60/5");
}

#[test]
fn a_bare_address_is_a_host() {
    let r = rule("192.0.2.7=ssh");
    assert_eq!(r.to_string(), "192.0.2.7/32=60/60/5");
    assert!(r.matches(&dest("192.0.2.7", 1)));
    assert!(!r.matches(&dest("192.0.2.6", 1)));
    assert!(!r.matches(&dest("192.0.2.8", 1)));
    assert_eq!(canonical("192.0.2.7:22=ssh"), "192.0.2.7/32:22=60/60/5");
}

#[test]
fn spaces_around_destination_and_profile() {
    assert_eq!(rule("  :22  =  ssh  "), rule(":22=ssh"));
    assert_eq!(rule(" 10.0.0.0/8 = 60 / 10 / 6 "), rule("10.0.0.0/8=60/10/6"));
    assert_eq!(rules(" :22=ssh , 10.0.0.0/8=firewall ,"), rules(":22=ssh,10.0.0.0/8=firewall"));
}

#[test]
fn profile_of_a_rule_may_carry_a_user_timeout() {
    let r = rule(":5432=300/30/5/auto");
    assert_eq!(r.profile().user_timeout_ms(), Some(450_000));
    assert_eq!(r.to_string(), ":5432=300/30/5/450000");
}

// ---------------------------------------------------------------- prefix lengths

#[test]
fn ipv4_prefix_boundaries() {
    let all = rule("0.0.0.0/0=ssh");
    assert_eq!(all.to_string(), "0.0.0.0/0=60/60/5");
    assert!(all.matches(&dest("0.0.0.0", 1)));
    assert!(all.matches(&dest("255.255.255.255", 1)));
    assert!(!all.matches(&dest("::1", 1)));
    assert_eq!(canonical("192.0.2.7/32=ssh"), "192.0.2.7/32=60/60/5");
    assert_eq!(canonical("192.0.2.7/1=ssh"), "128.0.0.0/1=60/60/5");
    assert_eq!(canonical("192.0.2.7/31=ssh"), "192.0.2.6/31=60/60/5");
    assert_eq!(err_kind("10.0.0.0/33=ssh"), RuleErrorKind::PrefixOutOfRange { token: "33", max: 32 });
    assert_eq!(err_kind("10.0.0.0/128=ssh"), RuleErrorKind::PrefixOutOfRange { token: "128", max: 32 });
    assert_eq!(
        err_kind("10.0.0.0/99999999999999999999=ssh"),
        RuleErrorKind::PrefixOutOfRange { token: "99999999999999999999", max: 32 }
    );
    for token in ["", "-1", "+8", "0x8", " 8", "8.0", "8/8"] {
        let text = format!("10.0.0.0/{token}=ssh");
        assert!(
            matches!(
                Rule::parse(&text),
                Err(RuleError { kind: RuleErrorKind::PrefixOutOfRange { max: 32, .. }, .. })
            ),
            "{text:?}"
        );
    }
    assert_eq!(
        message("10.0.0.0/33=ssh"),
        r#"rule "10.0.0.0/33=ssh": prefix length 33 is out of range 0..=32"#
    );
}

#[test]
fn ipv6_prefix_boundaries() {
    assert_eq!(canonical("[::]/0=ssh"), "[::]/0=60/60/5");
    assert_eq!(canonical("[2001:db8::1]/128=ssh"), "[2001:db8::1]/128=60/60/5");
    assert_eq!(canonical("[2001:db8::1]/127=ssh"), "[2001:db8::]/127=60/60/5");
    assert_eq!(canonical("[ffff::]/1=ssh"), "[8000::]/1=60/60/5");
    assert_eq!(canonical("2001:db8::1/32=ssh"), "[2001:db8::]/32=60/60/5");
    assert_eq!(err_kind("[::1]/129=ssh"), RuleErrorKind::PrefixOutOfRange { token: "129", max: 128 });
    assert_eq!(err_kind("[::1/129]=ssh"), RuleErrorKind::PrefixOutOfRange { token: "129", max: 128 });
    assert_eq!(err_kind("::1/129=ssh"), RuleErrorKind::PrefixOutOfRange { token: "129", max: 128 });
    assert_eq!(err_kind("[::1]/=ssh"), RuleErrorKind::PrefixOutOfRange { token: "", max: 128 });
    assert_eq!(
        message("[::1]/129:22=ssh"),
        r#"rule "[::1]/129:22=ssh": prefix length 129 is out of range 0..=128"#
    );
    let all = rule("[::]/0=ssh");
    assert!(all.matches(&dest("::", 1)));
    assert!(all.matches(&dest("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1)));
    assert!(!all.matches(&dest("0.0.0.0", 1)));
}

#[test]
fn host_bits_are_masked() {
    let r = rule("10.1.2.3/8=ssh");
    assert_eq!(r, rule("10.0.0.0/8=ssh"));
    assert_eq!(r.to_string(), "10.0.0.0/8=60/60/5");
    assert!(r.matches(&dest("10.200.0.1", 9)));
    let r = rule("[2001:db8:1234:5678::9]/32:443=ssh");
    assert_eq!(r, rule("[2001:db8::]/32:443=ssh"));
    assert!(r.matches(&dest("2001:db8:ffff::", 443)));
    assert_eq!(canonical("255.255.255.255/0=ssh"), "0.0.0.0/0=60/60/5");
    assert_eq!(canonical("[ffff::ffff]/0=ssh"), "[::]/0=60/60/5");
}

// ---------------------------------------------------------------- ports

#[test]
fn port_boundaries() {
    assert_eq!(canonical(":1=ssh"), ":1=60/60/5");
    assert_eq!(canonical(":65535=ssh"), ":65535=60/60/5");
    assert_eq!(canonical(":022=ssh"), ":22=60/60/5");
    assert_eq!(canonical("10.0.0.1:65535=ssh"), "10.0.0.1/32:65535=60/60/5");
    assert_eq!(canonical("[::1]:1=ssh"), "[::1]/128:1=60/60/5");
    for (text, token) in [
        (":0=ssh", "0"),
        (":65536=ssh", "65536"),
        (":99999999999999999999=ssh", "99999999999999999999"),
        (":=ssh", ""),
        (":-1=ssh", "-1"),
        (":+22=ssh", "+22"),
        (":0x16=ssh", "0x16"),
        (": 22=ssh", " 22"),
        (":ssh=ssh", "ssh"),
        ("10.0.0.1:0=ssh", "0"),
        ("10.0.0.1:=ssh", ""),
        ("[::1]:65536=ssh", "65536"),
        ("[::1]:=ssh", ""),
        ("[::1]:22:23=ssh", "22:23"),
    ] {
        assert_eq!(err_kind(text), RuleErrorKind::BadPort { token }, "{text:?}");
    }
    assert_eq!(message(":0=ssh"), r#"rule ":0=ssh": port "0" is out of range 1..=65535"#);
    assert_eq!(message(":65536=ssh"), r#"rule ":65536=ssh": port "65536" is out of range 1..=65535"#);
}

// ---------------------------------------------------------------- bad destinations

#[test]
fn names_are_never_resolved() {
    for (text, token) in [
        ("db=ssh", "db"),
        ("db.example.com=ssh", "db.example.com"),
        ("localhost:5432=ssh", "localhost"),
        ("db.example.com/24=ssh", "db.example.com"),
    ] {
        assert_eq!(err_kind(text), RuleErrorKind::BadAddress { token }, "{text:?}");
    }
    assert_eq!(
        message("db.example.com:5432=ssh"),
        r#"rule "db.example.com:5432=ssh": "db.example.com" is not an IP address or network (names are not resolved; write IPv6 with a port as [ADDR]/LEN:PORT)"#
    );
}

#[test]
fn bad_addresses() {
    for (text, token) in [
        ("10.0.0=ssh", "10.0.0"),
        ("10.0.0.256=ssh", "10.0.0.256"),
        ("10.0.0.1.2=ssh", "10.0.0.1.2"),
        ("010.0.0.1=ssh", "010.0.0.1"),
        ("0x0a.0.0.1=ssh", "0x0a.0.0.1"),
        ("-1.0.0.0=ssh", "-1.0.0.0"),
        ("2001:db8:::1=ssh", "2001:db8:::1"),
        ("fe80::1%eth0=ssh", "fe80::1%eth0"),
        ("/8=ssh", ""),
        ("[]=ssh", ""),
        ("[]:22=ssh", ""),
        ("[=ssh", "["),
        ("[::1=ssh", "[::1"),
        ("]=ssh", "]"),
        ("[::1]x=ssh", "[::1]x"),
        ("[::1]22=ssh", "[::1]22"),
        // IPv4 inside brackets is refused: brackets are for IPv6.
        ("[10.0.0.1]:22=ssh", "10.0.0.1"),
        // A prefix both inside and outside the brackets.
        ("[::1/64]/64=ssh", "::1/64"),
        ("[::1]:22/64=ssh", "22/64"),
    ] {
        let kind = Rule::parse(text).map_err(|e| e.kind);
        let expected = if token == "22/64" {
            // The text after `:` is the port.
            RuleErrorKind::BadPort { token }
        } else {
            RuleErrorKind::BadAddress { token }
        };
        assert_eq!(kind, Err(expected), "{text:?}");
    }
}

#[test]
fn an_ipv6_address_then_a_port_without_brackets_is_refused() {
    // `::1:22` is the host ::1:22 and also ::1 port 22: neither is guessed.
    assert_eq!(
        err_kind("::1:22=ssh"),
        RuleErrorKind::Ipv6PortWithoutBrackets {
            address: "::1",
            prefix: None,
            port: "22",
            also_an_address: true
        }
    );
    assert_eq!(
        message("::1:22=ssh"),
        r#"rule "::1:22=ssh": "::1:22" is ambiguous: write [::1]:22 for port 22 of ::1, or [::1:22] for the host ::1:22 (any port)"#
    );
    assert_eq!(
        message("2001:db8::10:5432=ssh"),
        r#"rule "2001:db8::10:5432=ssh": "2001:db8::10:5432" is ambiguous: write [2001:db8::10]:5432 for port 5432 of 2001:db8::10, or [2001:db8::10:5432] for the host 2001:db8::10:5432 (any port)"#
    );
    // Eight groups and a port: only the port reading makes an address.
    assert_eq!(
        message("1:2:3:4:5:6:7:8:22=ssh"),
        r#"rule "1:2:3:4:5:6:7:8:22=ssh": an IPv6 address with a port needs brackets: write [1:2:3:4:5:6:7:8]:22"#
    );
    // A network and a port.
    assert_eq!(
        message("2001:db8::/32:5432=ssh"),
        r#"rule "2001:db8::/32:5432=ssh": an IPv6 address with a port needs brackets: write [2001:db8::]/32:5432"#
    );
    // What the message suggests is accepted.
    assert_eq!(canonical("[::1]:22=ssh"), "[::1]/128:22=60/60/5");
    assert_eq!(canonical("[::1:22]=ssh"), "[::1:22]/128=60/60/5");
    assert_eq!(canonical("[2001:db8::]/32:5432=ssh"), "[2001:db8::]/32:5432=60/60/5");
}

#[test]
fn missing_pieces() {
    assert_eq!(err_kind(":22"), RuleErrorKind::MissingEquals);
    assert_eq!(err_kind("10.0.0.0/8 ssh"), RuleErrorKind::MissingEquals);
    assert_eq!(err_kind("=ssh"), RuleErrorKind::MissingDestination);
    assert_eq!(err_kind("   =ssh"), RuleErrorKind::MissingDestination);
    assert_eq!(err_kind(":22="), RuleErrorKind::Profile(ProfileErrorKind::Empty));
    assert_eq!(err_kind(":22= "), RuleErrorKind::Profile(ProfileErrorKind::Empty));
    assert_eq!(err_kind(":22=ssh=ssh"), RuleErrorKind::Profile(ProfileErrorKind::Unknown));
    assert_eq!(
        err_kind(":22=300/30/0"),
        RuleErrorKind::Profile(ProfileErrorKind::OutOfRange { field: Field::Count, token: "0" })
    );
    assert_eq!(
        message(":22"),
        r#"rule ":22": expected DEST=PROFILE, e.g. :3306=firewall, 10.0.0.0/8=60/10/6, [2001:db8::]/32:5432=ssh"#
    );
    assert_eq!(
        message("=ssh"),
        r#"rule "=ssh": the destination before `=` is empty; use :PORT, ADDR[/LEN] or ADDR[/LEN]:PORT"#
    );
    assert_eq!(message(":22=300/30/0"), r#"rule ":22=300/30/0": count 0 is out of range 1..=127"#);
    assert_eq!(message(":22=warp"), {
        let profile_message = KeepaliveProfile::parse("warp").unwrap_err().kind.to_string();
        format!(r#"rule ":22=warp": {profile_message}"#)
    });
}

// ---------------------------------------------------------------- lists

#[test]
fn empty_entries_are_ignored() {
    for text in ["", " ", ",", ",,,", " , , ", "\t"] {
        let parsed = rules(text);
        assert!(parsed.is_empty(), "{text:?}");
        assert_eq!(parsed, Rules::EMPTY);
        assert_eq!(parsed.to_string(), "");
        assert_eq!(parsed.first_match(&dest("10.0.0.1", 22)), None);
    }
    let parsed = rules(",:22=ssh,,10.0.0.0/8=firewall,");
    assert_eq!(parsed.as_slice().len(), 2);
    assert_eq!(parsed.to_string(), ":22=60/60/5,10.0.0.0/8=60/10/6");
}

#[test]
fn the_failing_entry_is_named() {
    let error = Rules::parse(":22=ssh, 10.0.0.0/33=ssh ,:80=ssh").unwrap_err();
    assert_eq!(error.input, "10.0.0.0/33=ssh");
    assert_eq!(error.kind, RuleErrorKind::PrefixOutOfRange { token: "33", max: 32 });
    let _: &dyn core::error::Error = &error;
}

#[test]
fn at_most_max_rules() {
    assert_eq!(MAX_RULES, 32);
    let entries: Vec<String> = (1..=MAX_RULES + 1).map(|port| format!(":{port}=ssh")).collect();
    let full = rules(&entries[..MAX_RULES].join(","));
    assert_eq!(full.as_slice().len(), MAX_RULES);
    assert_eq!(Rules::parse(&full.to_string()), Ok(full));
    // Empty entries do not count.
    let with_blanks = format!("{},,,", entries[..MAX_RULES].join(",,"));
    assert_eq!(rules(&with_blanks), full);

    let too_many = entries.join(",");
    let error = Rules::parse(&too_many).unwrap_err();
    assert_eq!(error.input, ":33=ssh");
    assert_eq!(error.kind, RuleErrorKind::TooMany);
    assert_eq!(error.to_string(), r#"rule ":33=ssh": too many rules; at most 32 are supported"#);
}

#[test]
fn first_match_wins() {
    let list = rules("10.0.0.0/8:5432=firewall, 10.0.0.0/8=ssh, :5432=satellite, 0.0.0.0/0=linux-default");
    let check = |ip: &str, port: u16, index: usize, profile_name: &str| {
        let (found, rule) = list.first_match(&dest(ip, port)).unwrap();
        assert_eq!(found, index, "{ip} {port}");
        assert_eq!(rule.profile(), &profile(profile_name), "{ip} {port}");
    };
    check("10.1.1.1", 5432, 0, "firewall");
    check("10.1.1.1", 22, 1, "ssh");
    check("192.0.2.1", 5432, 2, "satellite");
    check("192.0.2.1", 22, 3, "linux-default");
    assert_eq!(list.first_match(&dest("2001:db8::1", 22)), None);
    check("2001:db8::1", 5432, 2, "satellite");
}

#[test]
fn ipv4_mapped_destinations_match_ipv4_rules() {
    let list = rules("10.0.0.0/8=ssh,192.0.2.7:22=firewall");
    assert_eq!(list.first_match(&dest("::ffff:10.1.2.3", 80)).map(|m| m.0), Some(0));
    assert_eq!(list.first_match(&dest("::ffff:192.0.2.7", 22)).map(|m| m.0), Some(1));
    assert_eq!(list.first_match(&dest("::ffff:192.0.2.7", 23)), None);
    assert_eq!(list.first_match(&dest("::ffff:11.1.2.3", 80)), None);
    // IPv4-compatible (deprecated) and NAT64 addresses are IPv6 peers, not IPv4.
    assert_eq!(list.first_match(&dest("::10.1.2.3", 80)), None);
    assert_eq!(list.first_match(&dest("64:ff9b::10.1.2.3", 80)), None);
}

#[test]
fn ipv4_mapped_rules_are_ipv4_rules() {
    // A rule written as an IPv4-mapped network means those IPv4 peers,
    // however the program reaches them.
    let r = rule("[::ffff:10.0.0.0]/104:5432=ssh");
    assert_eq!(r, rule("10.0.0.0/8:5432=ssh"));
    assert_eq!(r.to_string(), "10.0.0.0/8:5432=60/60/5");
    assert!(r.matches(&dest("::ffff:10.1.2.3", 5432)));
    assert!(r.matches(&dest("10.1.2.3", 5432)));
    assert!(!r.matches(&dest("::ffff:11.1.2.3", 5432)));
    let all_v4 = rule("::ffff:0.0.0.0/96=ssh");
    assert_eq!(all_v4.to_string(), "0.0.0.0/0=60/60/5");
    assert!(all_v4.matches(&dest("192.0.2.1", 1)));
    assert!(!all_v4.matches(&dest("2001:db8::1", 1)));
    assert_eq!(canonical("::ffff:192.0.2.7=ssh"), "192.0.2.7/32=60/60/5");
    // Shorter prefixes cover more than the mapped range: they stay IPv6
    // networks and cover IPv6 peers only.
    let wide = rule("::ffff:0:0/95=ssh");
    assert_eq!(wide.to_string(), "[::fffe:0:0]/95=60/60/5");
    assert!(!wide.matches(&dest("::ffff:10.1.2.3", 1)));
    assert!(wide.matches(&dest("::fffe:1:2", 1)));
}

#[test]
fn ipv4_rules_never_match_ipv6_destinations_nor_the_reverse() {
    let v4 = rule("0.0.0.0/0=ssh");
    for ip in ["::", "::1", "2001:db8::1", "::10.0.0.1", "64:ff9b::1.2.3.4"] {
        assert!(!v4.matches(&dest(ip, 1)), "{ip}");
    }
    let v6 = rule("::/0=ssh");
    for ip in ["0.0.0.0", "10.0.0.1", "255.255.255.255", "::ffff:10.0.0.1"] {
        assert!(!v6.matches(&dest(ip, 1)), "{ip}");
    }
}

#[test]
fn display_parses_back_for_every_form() {
    let text = ":3306=firewall,10.0.0.0/8=60/10/6,10.0.0.0/8:5432=ssh,[2001:db8::]/32:5432=ssh,\
                [2001:db8::/32]:5432=ssh,2001:db8::/32=ssh,[::1]:22=ssh,192.0.2.7=300/30/5/auto";
    let list = rules(text);
    assert_eq!(list.as_slice().len(), 8);
    let shown = list.to_string();
    assert_eq!(
        shown,
        ":3306=60/10/6,10.0.0.0/8=60/10/6,10.0.0.0/8:5432=60/60/5,[2001:db8::]/32:5432=60/60/5,\
         [2001:db8::]/32:5432=60/60/5,[2001:db8::]/32=60/60/5,[::1]/128:22=60/60/5,192.0.2.7/32=300/30/5/450000"
    );
    assert_eq!(Rules::parse(&shown), Ok(list));
}

// ---------------------------------------------------------------- warnings

/// The warnings parsing `text` gives, as text.
fn warnings(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let parsed = Rules::parse_with_warnings(text, |warning: RuleWarning<'_>| found.push(warning.to_string()));
    assert_eq!(parsed, Rules::parse(text), "{text:?}: warnings change nothing");
    found
}

#[test]
fn host_bits_past_the_prefix_are_a_warning() {
    assert_eq!(
        warnings("10.1.2.3/8=ssh"),
        [
            r#"rule "10.1.2.3/8=ssh": 10.1.2.3/8 has bits set past the prefix: it covers 10.0.0.0/8; write 10.0.0.0/8 for the network, or 10.1.2.3 for the one host"#
        ]
    );
    assert_eq!(
        warnings("[2001:db8::1]/32:443=ssh"),
        [
            r#"rule "[2001:db8::1]/32:443=ssh": 2001:db8::1/32 has bits set past the prefix: it covers [2001:db8::]/32; write [2001:db8::]/32 for the network, or [2001:db8::1] for the one host"#
        ]
    );
    assert_eq!(warnings("::ffff:10.1.2.3/104=ssh").len(), 1);
    for clean in [
        "10.0.0.0/8=ssh",
        "10.1.2.3=ssh",
        "10.1.2.3/32:22=ssh",
        "0.0.0.0/0=ssh",
        "[2001:db8::]/32=ssh",
        ":22=ssh",
        "",
    ] {
        assert_eq!(warnings(clean), Vec::<String>::new(), "{clean:?}");
    }
}

#[test]
fn a_rule_that_earlier_rules_cover_is_dead() {
    assert_eq!(
        warnings(":22=ssh, 10.0.0.0/8:22=firewall"),
        [
            r#"rule 2 "10.0.0.0/8:22=firewall" never applies: rule 1 ":22=ssh" comes first and matches every connection it would"#
        ]
    );
    assert_eq!(
        warnings("10.0.0.0/8=ssh,10.1.0.0/16:5432=firewall,192.0.2.0/24=ssh,10.0.0.0/8=satellite").len(),
        2
    );
    // Together: IPv4 everywhere and IPv6 everywhere leave nothing for a port rule.
    assert_eq!(
        warnings("0.0.0.0/0=ssh,::/0=firewall,:22=satellite"),
        [
            r#"rule 3 ":22=satellite" never applies: rule 1 "0.0.0.0/0=ssh" and rule 2 "::/0=firewall" come first and match every connection it would"#
        ]
    );
    // An IPv4-mapped rule is an IPv4 rule.
    assert_eq!(warnings("10.0.0.0/8=ssh,::ffff:10.1.2.0/120=firewall").len(), 1);
    // Overlapping is not covering: each of these still matches something.
    for live in [
        "10.0.0.0/8:22=ssh,10.0.0.0/8=firewall",
        "10.1.0.0/16=ssh,10.0.0.0/8=firewall",
        ":22=ssh,:23=ssh",
        "0.0.0.0/0=ssh,:22=firewall",
        "::/0=ssh,0.0.0.0/1=ssh,:22=firewall",
        "[::1]:22=ssh,127.0.0.1:22=ssh",
    ] {
        assert_eq!(warnings(live), Vec::<String>::new(), "{live:?}");
    }
}
