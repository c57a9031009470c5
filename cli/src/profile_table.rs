//! The table rows a person reads for a profile: name, numbers, how soon it
//! notices a dead peer, purpose. `kawrap profiles` and `kawrap --help` list
//! the built-ins from the same rows, so the two can never disagree.
use kawrap_core::{BUILTIN_PROFILES, KeepaliveProfile};

/// One row per built-in profile, in kawrap-core's order.
pub fn builtin_rows() -> Vec<Vec<String>> {
    BUILTIN_PROFILES.iter().map(|named| row(named.name, &named.profile, named.purpose.to_owned())).collect()
}

/// One profile's row: name, IDLE/INTVL/CNT[/UT], detection time, purpose.
pub fn row(name: &str, profile: &KeepaliveProfile, purpose: String) -> Vec<String> {
    vec![name.to_owned(), profile.to_string(), profile.detection_time().to_string(), purpose]
}
