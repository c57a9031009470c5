//! Any bytes, read as UTF-8 (invalid sequences replaced), given to every
//! parser of the profile grammar. None may panic; an accepted profile must
//! be within the kernel's ranges and its canonical form must parse back to
//! the same value.
#![no_main]

use kawrap_core::{IdleTimeout, KeepaliveProfile, Policy, UserTimeout, parse_duration_ms};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();

    match KeepaliveProfile::parse(text) {
        Ok(profile) => {
            assert!((1..=32767).contains(&profile.idle_secs()), "{text:?} -> {profile:?}");
            assert!((1..=32767).contains(&profile.interval_secs()), "{text:?} -> {profile:?}");
            assert!((1..=127).contains(&profile.count()), "{text:?} -> {profile:?}");
            if let Some(ms) = profile.user_timeout_ms() {
                assert!(ms <= i32::MAX as u32, "{text:?} -> {profile:?}");
            }
            let shown = profile.to_string();
            assert_eq!(KeepaliveProfile::parse(&shown).ok(), Some(profile), "{text:?} -> {shown:?}");
            let rebuilt = KeepaliveProfile::new(
                profile.idle_secs().into(),
                profile.interval_secs().into(),
                profile.count().into(),
                profile.user_timeout_ms().map(u64::from),
            );
            assert_eq!(rebuilt, Ok(profile));
            let _ = profile.detection_time().to_string();
        }
        Err(error) => {
            // The message is built from the input: it must not panic either.
            let _ = error.to_string();
        }
    }

    match UserTimeout::parse(text) {
        Ok(UserTimeout::Millis(ms)) => assert!(ms <= i32::MAX as u32, "{text:?} -> {ms}"),
        Ok(UserTimeout::Auto) => assert!(text.trim().eq_ignore_ascii_case("auto"), "{text:?}"),
        Err(kind) => {
            let _ = kind.to_string();
        }
    }
    if let Ok(Some(ms)) = parse_duration_ms(text) {
        // Only digits and unit letters are accepted.
        assert!(text.bytes().all(|b| b.is_ascii_digit() || b"hmins".contains(&b)), "{text:?} -> {ms}");
    }
    match IdleTimeout::parse(text) {
        Ok(timeout) => {
            assert!(IdleTimeout::RANGE.contains(&timeout.as_secs().into()), "{text:?} -> {timeout}");
            let profile = KeepaliveProfile::keeping_under(timeout);
            assert!(u32::from(profile.idle_secs()) < timeout.as_secs(), "{text:?} -> {profile}");
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    if let Ok(policy) = Policy::parse(text) {
        assert!(text.trim().eq_ignore_ascii_case(policy.name()), "{text:?}");
    }
});
