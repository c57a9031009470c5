//! The profile grammar, durations, the policy and the configuration, at every boundary.
//!
//! Each expected value is written out literally: these tests say what a
//! string means to the shim and the launcher, so they must fail when that
//! meaning changes.
use kawrap_core::{
    BUILTIN_PROFILES, Config, ConfigError, Destination, Field, HumanDuration, KeepaliveProfile, NamedProfile,
    Policy, PolicyError, ProfileError, ProfileErrorKind, Rules, UserTimeout, env, parse_duration_ms,
};

/// `(idle, interval, count, user timeout)` of a parsed profile.
fn parts(p: &KeepaliveProfile) -> (u16, u16, u8, Option<u32>) {
    (p.idle_secs(), p.interval_secs(), p.count(), p.user_timeout_ms())
}

fn ok(text: &str) -> (u16, u16, u8, Option<u32>) {
    match KeepaliveProfile::parse(text) {
        Ok(profile) => parts(&profile),
        Err(e) => panic!("{text:?} should parse, got: {e}"),
    }
}

fn err(text: &str) -> ProfileError<'_> {
    match KeepaliveProfile::parse(text) {
        Ok(profile) => panic!("{text:?} should be rejected, got {profile}"),
        Err(e) => e,
    }
}

fn err_kind(text: &str) -> ProfileErrorKind<'_> {
    err(text).kind
}

fn message(text: &str) -> String {
    err(text).to_string()
}

// ---------------------------------------------------------------- names

#[test]
fn builtin_names_have_the_documented_values() {
    assert_eq!(ok("recommended"), (300, 30, 5, None));
    assert_eq!(ok("firewall"), (60, 10, 6, None));
    assert_eq!(ok("ssh"), (60, 60, 5, None));
    assert_eq!(ok("satellite"), (30, 30, 10, None));
    assert_eq!(ok("linux-default"), (7200, 75, 9, None));
}

#[test]
fn builtin_list_is_the_documented_one_in_order() {
    let names: Vec<_> = BUILTIN_PROFILES.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "recommended",
            "firewall",
            "ssh",
            "satellite",
            "linux-default",
            "aws-nlb",
            "aws-nat",
            "azure-lb",
            "azure-nat",
            "gcp-firewall",
            "gcp-nat",
            "ipvs"
        ]
    );
    assert_eq!(NamedProfile::RECOMMENDED, BUILTIN_PROFILES[0]);
    for named in BUILTIN_PROFILES {
        assert!(!named.purpose.is_empty(), "{} has no purpose", named.name);
        assert_eq!(NamedProfile::find(named.name), Some(&named));
        assert_eq!(KeepaliveProfile::parse(named.name), Ok(named.profile));
    }
}

#[test]
fn builtin_names_ignore_ascii_case_and_surrounding_spaces() {
    for text in ["FIREWALL", "Firewall", "fIrEwAlL", "  firewall", "firewall  ", "\tfirewall\n"] {
        assert_eq!(ok(text), (60, 10, 6, None), "{text:?}");
    }
    assert_eq!(ok("Linux-Default"), (7200, 75, 9, None));
    assert_eq!(ok("RECOMMENDED"), (300, 30, 5, None));
    assert_eq!(NamedProfile::find("SSH").map(|p| p.name), Some("ssh"));
}

#[test]
fn names_that_are_not_builtin_are_unknown() {
    for text in ["fire wall", "firewall2", "linux_default", "default", "300", "recommended!", "ſsh"] {
        assert_eq!(err_kind(text), ProfileErrorKind::Unknown, "{text:?}");
    }
    assert_eq!(NamedProfile::find("fire"), None);
    // A name cannot carry a user timeout: only the shorthand can.
    assert!(matches!(err_kind("firewall/auto"), ProfileErrorKind::NotANumber { field: Field::Idle, .. }));
}

#[test]
fn unknown_message_lists_every_builtin_name() {
    let text = message("warp");
    assert!(text.starts_with(r#"profile "warp": not a profile name ("#), "{text}");
    for named in BUILTIN_PROFILES {
        assert!(text.contains(named.name), "{text} lacks {}", named.name);
    }
    assert!(text.ends_with("nor IDLE/INTVL/CNT[/UT] nor under:TIMEOUT"), "{text}");
}

#[test]
fn empty_and_blank_profiles_are_rejected() {
    for text in ["", " ", "   ", "\t", " \n "] {
        assert_eq!(err_kind(text), ProfileErrorKind::Empty, "{text:?}");
    }
    assert_eq!(message(""), r#"profile "": a profile is needed; it is empty"#);
    assert_eq!(message("  "), r#"profile "  ": a profile is needed; it is empty"#);
}

// ---------------------------------------------------------------- shorthand

#[test]
fn shorthand_three_fields() {
    assert_eq!(ok("300/30/5"), (300, 30, 5, None));
    assert_eq!(ok("2/1/3"), (2, 1, 3, None));
    assert_eq!(ok("7200/75/9"), (7200, 75, 9, None));
}

#[test]
fn shorthand_spaces_around_the_whole_and_around_fields() {
    assert_eq!(ok("  300/30/5  "), (300, 30, 5, None));
    assert_eq!(ok("300 / 30 / 5"), (300, 30, 5, None));
    assert_eq!(ok(" 300 /30/ 5 / 450s "), (300, 30, 5, Some(450_000)));
    assert_eq!(ok("300/30/5/ auto"), (300, 30, 5, Some(450_000)));
}

#[test]
fn spaces_inside_a_field_are_rejected() {
    assert_eq!(err_kind("3 00/30/5"), ProfileErrorKind::NotANumber { field: Field::Idle, token: "3 00" });
    assert_eq!(err_kind("300/3 0/5"), ProfileErrorKind::NotANumber { field: Field::Interval, token: "3 0" });
    assert_eq!(message("300/30/5 5"), r#"profile "300/30/5 5": count "5 5" is not a whole number"#);
}

#[test]
fn leading_zeros_are_decimal() {
    assert_eq!(ok("0300/030/05"), (300, 30, 5, None));
    assert_eq!(ok("010/010/010"), (10, 10, 10, None));
    assert_eq!(ok("00001/01/01/0"), (1, 1, 1, Some(0)));
}

#[test]
fn idle_boundaries() {
    assert_eq!(ok("1/30/5"), (1, 30, 5, None));
    assert_eq!(ok("32767/30/5"), (32767, 30, 5, None));
    assert_eq!(err_kind("0/30/5"), ProfileErrorKind::OutOfRange { field: Field::Idle, token: "0" });
    assert_eq!(err_kind("32768/30/5"), ProfileErrorKind::OutOfRange { field: Field::Idle, token: "32768" });
    assert_eq!(message("0/30/5"), r#"profile "0/30/5": idle 0 is out of range 1..=32767 s"#);
    assert_eq!(message("32768/30/5"), r#"profile "32768/30/5": idle 32768 is out of range 1..=32767 s"#);
}

#[test]
fn interval_boundaries() {
    assert_eq!(ok("300/1/5"), (300, 1, 5, None));
    assert_eq!(ok("300/32767/5"), (300, 32767, 5, None));
    assert_eq!(message("300/0/5"), r#"profile "300/0/5": interval 0 is out of range 1..=32767 s"#);
    assert_eq!(
        message("300/32768/5"),
        r#"profile "300/32768/5": interval 32768 is out of range 1..=32767 s"#
    );
}

#[test]
fn count_boundaries() {
    assert_eq!(ok("300/30/1"), (300, 30, 1, None));
    assert_eq!(ok("300/30/127"), (300, 30, 127, None));
    assert_eq!(message("300/30/0"), r#"profile "300/30/0": count 0 is out of range 1..=127"#);
    assert_eq!(message("300/30/128"), r#"profile "300/30/128": count 128 is out of range 1..=127"#);
    assert_eq!(message("300/30/500"), r#"profile "300/30/500": count 500 is out of range 1..=127"#);
}

#[test]
fn all_maximums_at_once() {
    assert_eq!(ok("32767/32767/127"), (32767, 32767, 127, None));
    let max = KeepaliveProfile::parse("32767/32767/127").unwrap();
    assert_eq!(max.detection_secs(), 32767 + 32767 * 127);
}

#[test]
fn numbers_beyond_u64_are_out_of_range_not_a_panic() {
    assert_eq!(
        message("99999999999999999999/30/5"),
        r#"profile "99999999999999999999/30/5": idle 99999999999999999999 is out of range 1..=32767 s"#
    );
    // u64::MAX itself and one past it.
    assert_eq!(
        err_kind("300/18446744073709551615/5"),
        ProfileErrorKind::OutOfRange { field: Field::Interval, token: "18446744073709551615" }
    );
    assert_eq!(
        err_kind("300/30/18446744073709551616"),
        ProfileErrorKind::OutOfRange { field: Field::Count, token: "18446744073709551616" }
    );
    // 2^16 + 300 must not wrap into range when stored in a u16.
    assert_eq!(err_kind("65836/30/5"), ProfileErrorKind::OutOfRange { field: Field::Idle, token: "65836" });
    // 256 + 5 must not wrap into a u8.
    assert_eq!(err_kind("300/30/261"), ProfileErrorKind::OutOfRange { field: Field::Count, token: "261" });
}

#[test]
fn signs_hex_and_other_notations_are_not_numbers() {
    for (text, field, token) in [
        ("-1/30/5", Field::Idle, "-1"),
        ("+5/30/5", Field::Idle, "+5"),
        ("0x10/30/5", Field::Idle, "0x10"),
        ("300/1e2/5", Field::Interval, "1e2"),
        ("300/30/5.0", Field::Count, "5.0"),
        ("300/30/five", Field::Count, "five"),
        ("300/３０/5", Field::Interval, "３０"),
        ("300/30s/5", Field::Interval, "30s"),
    ] {
        assert_eq!(err_kind(text), ProfileErrorKind::NotANumber { field, token }, "{text:?}");
    }
    assert_eq!(message("-1/30/5"), r#"profile "-1/30/5": idle "-1" is not a whole number"#);
    assert_eq!(message("300/30/+5"), r#"profile "300/30/+5": count "+5" is not a whole number"#);
}

#[test]
fn missing_fields_are_named() {
    assert_eq!(message("300/30"), r#"profile "300/30": count is missing; expected IDLE/INTVL/CNT[/UT]"#);
    assert_eq!(message("300//5"), r#"profile "300//5": interval is missing; expected IDLE/INTVL/CNT[/UT]"#);
    assert_eq!(message("/30/5"), r#"profile "/30/5": idle is missing; expected IDLE/INTVL/CNT[/UT]"#);
    assert_eq!(message("300/"), r#"profile "300/": interval is missing; expected IDLE/INTVL/CNT[/UT]"#);
    assert_eq!(message("/"), r#"profile "/": idle is missing; expected IDLE/INTVL/CNT[/UT]"#);
    assert_eq!(err_kind("300/ /5"), ProfileErrorKind::NotANumber { field: Field::Interval, token: "" });
}

#[test]
fn too_many_fields() {
    assert_eq!(
        message("300/30/5/450s/1"),
        r#"profile "300/30/5/450s/1": too many fields; expected IDLE/INTVL/CNT or IDLE/INTVL/CNT/UT"#
    );
    assert_eq!(err_kind("300/30/5/auto/"), ProfileErrorKind::TooManyFields);
    assert_eq!(err_kind("1/1/1/1/1/1/1"), ProfileErrorKind::TooManyFields);
}

#[test]
fn first_bad_field_is_reported() {
    assert_eq!(err_kind("0/0/0"), ProfileErrorKind::OutOfRange { field: Field::Idle, token: "0" });
    assert_eq!(err_kind("1/x/0"), ProfileErrorKind::NotANumber { field: Field::Interval, token: "x" });
    // Fields are checked before their number is counted.
    assert_eq!(err_kind("0/30/5/1/2"), ProfileErrorKind::OutOfRange { field: Field::Idle, token: "0" });
}

#[test]
fn error_keeps_the_input_as_given() {
    let error = err("  300/30/0 ");
    assert_eq!(error.input, "  300/30/0 ");
    assert_eq!(error.kind, ProfileErrorKind::OutOfRange { field: Field::Count, token: "0" });
    let _: &dyn core::error::Error = &error;
}

// ---------------------------------------------------------------- user timeout

#[test]
fn user_timeout_auto_is_detection_time_in_ms() {
    assert_eq!(ok("300/30/5/auto"), (300, 30, 5, Some((300 + 30 * 5) * 1000)));
    assert_eq!(ok("60/10/6/AUTO"), (60, 10, 6, Some(120_000)));
    assert_eq!(ok("2/1/3/Auto"), (2, 1, 3, Some(5_000)));
    assert_eq!(ok("1/1/1/auto"), (1, 1, 1, Some(2_000)));
}

#[test]
fn user_timeout_auto_at_the_i32_limit() {
    // (I + V*C) * 1000 <= 2147483647  <=>  I + V*C <= 2147483 s.
    // 32767 + 16909*127 = 2_180_210 is too much; 32767 + 16651*127 = 2_147_444 fits.
    assert_eq!(ok("32767/16651/127/auto"), (32767, 16651, 127, Some(2_147_444_000)));
    assert_eq!(
        err_kind("32767/16652/127/auto"),
        ProfileErrorKind::AutoUserTimeoutTooLong { ms: (32767 + 16652 * 127) * 1000 }
    );
    assert_eq!(
        message("32767/32767/127/auto"),
        r#"profile "32767/32767/127/auto": user timeout auto = 4194176000 ms is out of range 0..=2147483647 ms; give it explicitly"#
    );
}

#[test]
fn user_timeout_plain_milliseconds() {
    assert_eq!(ok("300/30/5/0"), (300, 30, 5, Some(0)));
    assert_eq!(ok("300/30/5/1"), (300, 30, 5, Some(1)));
    assert_eq!(ok("300/30/5/4500"), (300, 30, 5, Some(4500)));
    assert_eq!(ok("300/30/5/2147483647"), (300, 30, 5, Some(2_147_483_647)));
    assert_eq!(
        message("300/30/5/2147483648"),
        r#"profile "300/30/5/2147483648": user timeout 2147483648 is out of range 0..=2147483647 ms"#
    );
    assert_eq!(
        err_kind("300/30/5/99999999999999999999"),
        ProfileErrorKind::OutOfRange { field: Field::UserTimeout, token: "99999999999999999999" }
    );
}

#[test]
fn user_timeout_with_units() {
    assert_eq!(ok("300/30/5/450s"), (300, 30, 5, Some(450_000)));
    assert_eq!(ok("300/30/5/7m30s"), (300, 30, 5, Some(450_000)));
    assert_eq!(ok("300/30/5/7min30s"), (300, 30, 5, Some(450_000)));
    assert_eq!(ok("300/30/5/500ms"), (300, 30, 5, Some(500)));
    assert_eq!(ok("300/30/5/1h"), (300, 30, 5, Some(3_600_000)));
    assert_eq!(ok("300/30/5/1m30s500ms"), (300, 30, 5, Some(90_500)));
    assert_eq!(ok("300/30/5/0s"), (300, 30, 5, Some(0)));
    assert_eq!(ok("300/30/5/2147483647ms"), (300, 30, 5, Some(2_147_483_647)));
    // 596 h = 2_145_600_000 ms fits, 597 h does not.
    assert_eq!(ok("300/30/5/596h"), (300, 30, 5, Some(2_145_600_000)));
    assert_eq!(
        message("300/30/5/597h"),
        r#"profile "300/30/5/597h": user timeout 597h is out of range 0..=2147483647 ms"#
    );
    assert_eq!(
        err_kind("300/30/5/2147483648ms"),
        ProfileErrorKind::OutOfRange { field: Field::UserTimeout, token: "2147483648ms" }
    );
    // Overflowing a u64 while multiplying or adding is out of range, not a wrap.
    assert_eq!(
        err_kind("300/30/5/18446744073709551615h"),
        ProfileErrorKind::OutOfRange { field: Field::UserTimeout, token: "18446744073709551615h" }
    );
}

#[test]
fn user_timeout_bad_units() {
    for token in
        ["5x", "s", "5 s", "5S", "5sec", "5mins", "ms", "5s5", "-5s", "+5s", "5.5s", "auto5", "0x10", "5d"]
    {
        let text = format!("300/30/5/{token}");
        let kind = KeepaliveProfile::parse(&text).map(|p| p.to_string());
        assert!(
            matches!(kind, Err(ProfileError { kind: ProfileErrorKind::BadUserTimeout { .. }, .. })),
            "{text:?} gave {kind:?}"
        );
    }
    assert_eq!(
        message("300/30/5/5x"),
        r#"profile "300/30/5/5x": user timeout "5x" is not `auto`, milliseconds, nor a duration like 450s, 7m30s, 500ms"#
    );
    // A trailing slash leaves an empty user timeout, which is not one.
    assert_eq!(err_kind("300/30/5/"), ProfileErrorKind::BadUserTimeout { token: "" });
}

#[test]
fn user_timeout_parse_alone() {
    assert_eq!(UserTimeout::parse("auto"), Ok(UserTimeout::Auto));
    assert_eq!(UserTimeout::parse(" AuTo "), Ok(UserTimeout::Auto));
    assert_eq!(UserTimeout::parse("0"), Ok(UserTimeout::Millis(0)));
    assert_eq!(UserTimeout::parse("7m30s"), Ok(UserTimeout::Millis(450_000)));
    assert_eq!(UserTimeout::parse("2147483647"), Ok(UserTimeout::Millis(i32::MAX as u32)));
    assert!(UserTimeout::parse("2147483648").is_err());
    assert!(UserTimeout::parse("").is_err());
}

#[test]
fn with_and_without_user_timeout() {
    let base = KeepaliveProfile::parse("300/30/5").unwrap();
    let auto = base.with_user_timeout(UserTimeout::Auto).unwrap();
    assert_eq!(auto.user_timeout_ms(), Some(450_000));
    let replaced = auto.with_user_timeout(UserTimeout::Millis(5000)).unwrap();
    assert_eq!(parts(&replaced), (300, 30, 5, Some(5000)));
    assert_eq!(replaced.without_user_timeout(), base);
    assert_eq!(
        base.with_user_timeout(UserTimeout::Millis(i32::MAX as u32)).unwrap().user_timeout_ms(),
        Some(i32::MAX as u32)
    );
    // `Millis` beyond the kernel's range is refused even when built by hand.
    assert!(base.with_user_timeout(UserTimeout::Millis(i32::MAX as u32 + 1)).is_err());
    assert!(base.with_user_timeout(UserTimeout::Millis(u32::MAX)).is_err());
    let max = KeepaliveProfile::parse("32767/32767/127").unwrap();
    assert_eq!(
        max.with_user_timeout(UserTimeout::Auto),
        Err(ProfileErrorKind::AutoUserTimeoutTooLong { ms: 4_194_176_000 })
    );
}

// ---------------------------------------------------------------- new, Display, fields

#[test]
fn new_checks_every_field() {
    assert_eq!(parts(&KeepaliveProfile::new(1, 1, 1, None).unwrap()), (1, 1, 1, None));
    assert_eq!(
        parts(&KeepaliveProfile::new(32767, 32767, 127, Some(2_147_483_647)).unwrap()),
        (32767, 32767, 127, Some(2_147_483_647))
    );
    assert_eq!(KeepaliveProfile::new(1, 1, 1, Some(0)).unwrap().user_timeout_ms(), Some(0));
    assert_eq!(KeepaliveProfile::new(0, 1, 1, None), Err((Field::Idle, 0)));
    assert_eq!(KeepaliveProfile::new(32768, 1, 1, None), Err((Field::Idle, 32768)));
    assert_eq!(KeepaliveProfile::new(65537, 1, 1, None), Err((Field::Idle, 65537)));
    assert_eq!(KeepaliveProfile::new(1, 0, 1, None), Err((Field::Interval, 0)));
    assert_eq!(KeepaliveProfile::new(1, 32768, 1, None), Err((Field::Interval, 32768)));
    assert_eq!(KeepaliveProfile::new(1, 1, 0, None), Err((Field::Count, 0)));
    assert_eq!(KeepaliveProfile::new(1, 1, 128, None), Err((Field::Count, 128)));
    assert_eq!(KeepaliveProfile::new(1, 1, 257, None), Err((Field::Count, 257)));
    assert_eq!(KeepaliveProfile::new(1, 1, 1, Some(2_147_483_648)), Err((Field::UserTimeout, 2_147_483_648)));
    assert_eq!(KeepaliveProfile::new(1, 1, 1, Some(u64::MAX)), Err((Field::UserTimeout, u64::MAX)));
    assert_eq!(KeepaliveProfile::new(u64::MAX, u64::MAX, u64::MAX, None), Err((Field::Idle, u64::MAX)));
}

#[test]
fn field_ranges_and_names_are_the_kernels() {
    assert_eq!(Field::Idle.range(), 1..=32767);
    assert_eq!(Field::Interval.range(), 1..=32767);
    assert_eq!(Field::Count.range(), 1..=127);
    assert_eq!(Field::UserTimeout.range(), 0..=2_147_483_647);
    let names = [Field::Idle, Field::Interval, Field::Count, Field::UserTimeout].map(Field::name);
    assert_eq!(names, ["idle", "interval", "count", "user timeout"]);
}

#[test]
fn display_is_the_numeric_form_and_parses_back() {
    for (text, shown) in [
        ("recommended", "300/30/5"),
        ("linux-default", "7200/75/9"),
        ("300/30/5/auto", "300/30/5/450000"),
        ("300/30/5/7m30s", "300/30/5/450000"),
        (" 0300 / 030 / 05 / 0 ", "300/30/5/0"),
        ("32767/32767/127/2147483647", "32767/32767/127/2147483647"),
    ] {
        let profile = KeepaliveProfile::parse(text).unwrap();
        assert_eq!(profile.to_string(), shown, "{text:?}");
        assert_eq!(KeepaliveProfile::parse(shown), Ok(profile));
    }
}

// ---------------------------------------------------------------- durations

#[test]
fn human_duration_shows_two_largest_units_truncated() {
    for (secs, shown) in [
        (0, "0 s"),
        (1, "1 s"),
        (59, "59 s"),
        (60, "1 min"),
        (61, "1 min 1 s"),
        (119, "1 min 59 s"),
        (120, "2 min"),
        (330, "5 min 30 s"),
        (360, "6 min"),
        (450, "7 min 30 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h"),
        (3601, "1 h"),
        (3605, "1 h"),
        (3660, "1 h 1 min"),
        (3661, "1 h 1 min"),
        (7875, "2 h 11 min"),
        (86_399, "23 h 59 min"),
        (86_400, "1 d"),
        (86_401, "1 d"),
        (90_000, "1 d 1 h"),
        (90_061, "1 d 1 h"),
        (3 * 86_400 + 4 * 3600 + 5 * 60 + 6, "3 d 4 h"),
        (3 * 86_400 + 59 * 60, "3 d"),
        (u64::MAX, "213503982334601 d 7 h"),
    ] {
        let duration = HumanDuration::from_secs(secs);
        assert_eq!(duration.as_secs(), secs);
        assert_eq!(duration.to_string(), shown, "{secs} s");
    }
}

#[test]
fn detection_time_of_builtins_matches_the_design_table() {
    let expected = [
        ("recommended", 450, "7 min 30 s"),
        ("firewall", 120, "2 min"),
        ("ssh", 360, "6 min"),
        ("satellite", 330, "5 min 30 s"),
        ("linux-default", 7875, "2 h 11 min"),
        ("aws-nlb", 412, "6 min 52 s"),
        ("aws-nat", 412, "6 min 52 s"),
        ("azure-lb", 300, "5 min"),
        ("azure-nat", 300, "5 min"),
        ("gcp-firewall", 450, "7 min 30 s"),
        ("gcp-nat", 450, "7 min 30 s"),
        ("ipvs", 450, "7 min 30 s"),
    ];
    for (name, secs, shown) in expected {
        let profile = NamedProfile::find(name).unwrap().profile;
        assert_eq!(profile.detection_secs(), secs, "{name}");
        assert_eq!(profile.detection_time().to_string(), shown, "{name}");
    }
    assert_eq!(expected.len(), BUILTIN_PROFILES.len());
}

#[test]
fn parse_duration_ms_units_and_overflow() {
    assert_eq!(parse_duration_ms("450s"), Ok(Some(450_000)));
    assert_eq!(parse_duration_ms("7m30s"), Ok(Some(450_000)));
    assert_eq!(parse_duration_ms("7min30s"), Ok(Some(450_000)));
    assert_eq!(parse_duration_ms("500ms"), Ok(Some(500)));
    assert_eq!(parse_duration_ms("1h"), Ok(Some(3_600_000)));
    assert_eq!(parse_duration_ms("1h1m1s1ms"), Ok(Some(3_661_001)));
    assert_eq!(parse_duration_ms("1m30s500ms"), Ok(Some(90_500)));
    assert_eq!(parse_duration_ms("0ms"), Ok(Some(0)));
    assert_eq!(parse_duration_ms("18446744073709551615ms"), Ok(Some(u64::MAX)));
    assert_eq!(parse_duration_ms("18446744073709551616ms"), Ok(None));
    assert_eq!(parse_duration_ms("18446744073709551615ms1ms"), Ok(None));
    assert_eq!(parse_duration_ms("5124095576030432h"), Ok(None));
    for text in ["", "5", "s", "5x", "5 s", " 5s", "5s ", "5S", "m5", "5m-3s", "5é", "5ms5"] {
        assert_eq!(parse_duration_ms(text), Err(()), "{text:?}");
    }
}

// ---------------------------------------------------------------- policy

#[test]
fn policy_names() {
    assert_eq!(Policy::default(), Policy::Respect);
    for (text, policy) in [
        ("respect", Policy::Respect),
        ("RESPECT", Policy::Respect),
        (" Respect ", Policy::Respect),
        ("force", Policy::Force),
        ("Force", Policy::Force),
        ("\tFORCE\n", Policy::Force),
    ] {
        assert_eq!(Policy::parse(text), Ok(policy), "{text:?}");
    }
    for policy in [Policy::Respect, Policy::Force] {
        assert_eq!(Policy::parse(policy.name()), Ok(policy));
        assert_eq!(policy.to_string(), policy.name());
    }
    assert_eq!(Policy::Force.name(), "force");
}

#[test]
fn policy_errors() {
    for text in ["", " ", "forced", "respect force", "off", "0", "force,"] {
        assert_eq!(Policy::parse(text), Err(PolicyError { input: text }), "{text:?}");
    }
    assert_eq!(
        Policy::parse("always").unwrap_err().to_string(),
        r#"policy "always": expected `respect` (default) or `force`"#
    );
}

// ---------------------------------------------------------------- config

#[test]
fn config_unset_is_the_default() {
    let config = Config::from_values(None, None, None).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.profile, NamedProfile::RECOMMENDED.profile);
    assert!(config.rules.is_empty());
    assert_eq!(config.policy, Policy::Respect);
}

#[test]
fn config_empty_rules_are_none_but_empty_profile_and_policy_are_errors() {
    for rules in ["", " ", ",", " , ,"] {
        assert!(Config::from_values(None, Some(rules), None).unwrap().rules.is_empty(), "{rules:?}");
    }
    assert!(matches!(
        Config::from_values(Some(""), None, None),
        Err(ConfigError::Profile(ProfileError { kind: ProfileErrorKind::Empty, .. }))
    ));
    assert_eq!(
        Config::from_values(None, None, Some("")),
        Err(ConfigError::Policy(PolicyError { input: "" }))
    );
}

#[test]
fn config_reads_every_value() {
    let config = Config::from_values(Some("firewall"), Some(":22=ssh"), Some("force")).unwrap();
    assert_eq!(parts(&config.profile), (60, 10, 6, None));
    assert_eq!(config.rules.as_slice().len(), 1);
    assert_eq!(config.policy, Policy::Force);
}

#[test]
fn config_errors_say_which_variable_and_why() {
    let e = Config::from_values(Some("300/30/500"), Some(":22=ssh"), Some("force")).unwrap_err();
    assert_eq!(e.to_string(), r#"profile "300/30/500": count 500 is out of range 1..=127"#);
    let e = Config::from_values(Some("ssh"), Some(":22=ssh,db=ssh"), None).unwrap_err();
    assert!(matches!(e, ConfigError::Rule(_)), "{e:?}");
    assert!(e.to_string().starts_with(r#"rule "db=ssh": "db" is not an IP address"#), "{e}");
    let e = Config::from_values(Some("ssh"), None, Some("maybe")).unwrap_err();
    assert_eq!(e.to_string(), r#"policy "maybe": expected `respect` (default) or `force`"#);
    let _: &dyn core::error::Error = &e;
    // The profile is checked first.
    let e = Config::from_values(Some("x"), Some("y"), Some("z")).unwrap_err();
    assert!(matches!(e, ConfigError::Profile(_)), "{e:?}");
}

#[test]
fn profile_for_uses_rules_only_when_the_destination_is_known() {
    let config = Config::from_values(Some("300/30/5"), Some(":3306=firewall,10.0.0.0/8=ssh"), None).unwrap();
    let mysql = Destination { ip: "192.0.2.1".parse().unwrap(), port: 3306 };
    let internal = Destination { ip: "10.9.9.9".parse().unwrap(), port: 3306 };
    let internal_pg = Destination { ip: "10.9.9.9".parse().unwrap(), port: 5432 };
    let other = Destination { ip: "192.0.2.1".parse().unwrap(), port: 5432 };
    assert_eq!(config.profile_for(None), (None, &config.profile));
    assert_eq!(config.profile_for(Some(&mysql)).0, Some(0));
    assert_eq!(parts(config.profile_for(Some(&mysql)).1), (60, 10, 6, None));
    // First match wins: 10.9.9.9:3306 is covered by both rules.
    assert_eq!(config.profile_for(Some(&internal)).0, Some(0));
    assert_eq!(config.profile_for(Some(&internal_pg)).0, Some(1));
    assert_eq!(parts(config.profile_for(Some(&internal_pg)).1), (60, 60, 5, None));
    assert_eq!(config.profile_for(Some(&other)), (None, &config.profile));

    let no_rules = Config::from_values(Some("ssh"), None, None).unwrap();
    assert_eq!(no_rules.profile_for(Some(&mysql)), (None, &no_rules.profile));
    assert_eq!(Rules::default(), Rules::EMPTY);
}

// ---------------------------------------------------------------- environment

#[test]
fn environment_variable_names() {
    let names: Vec<_> = env::ALL.iter().map(|name| name.to_str().unwrap()).collect();
    assert_eq!(names, ["KAWRAP_PROFILE", "KAWRAP_RULES", "KAWRAP_POLICY", "KAWRAP_LOG", "KAWRAP_DISABLE"]);
}

#[test]
fn disable_is_any_non_empty_value_but_zero() {
    assert!(!env::is_disabled(None));
    assert!(!env::is_disabled(Some(b"")));
    assert!(!env::is_disabled(Some(b"0")));
    assert!(env::is_disabled(Some(b"1")));
    assert!(env::is_disabled(Some(b"yes")));
    assert!(env::is_disabled(Some(b"00")));
    assert!(env::is_disabled(Some(b" ")));
    assert!(env::is_disabled(Some(b"\xff")));
}
