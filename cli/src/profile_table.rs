//! The table rows a person reads for a profile: name, numbers, how soon it
//! notices a dead peer, purpose. `kawrap profiles` and `kawrap --help` list
//! the built-ins from the same rows, so the two can never disagree.
use kawrap_core::{BUILTIN_PROFILES, IdleTimeout, KeepaliveProfile};

/// One row per built-in profile, in kawrap-core's order.
pub fn builtin_rows() -> Vec<Vec<String>> {
    BUILTIN_PROFILES
        .iter()
        .map(|named| row(named.name, &named.profile, purpose(named.purpose, named.idle_timeout)))
        .collect()
}

/// What a profile is for, with the middlebox idle timeout it keeps
/// connections under, if it was made for one.
pub fn purpose(text: &str, idle_timeout: Option<IdleTimeout>) -> String {
    match (text, idle_timeout) {
        (_, None) => text.to_owned(),
        ("", Some(timeout)) => format!("idle timeout {timeout}"),
        (_, Some(timeout)) => format!("{text}: idle timeout {timeout}"),
    }
}

/// One profile's row: name, IDLE/INTVL/CNT[/UT], detection time, purpose.
pub fn row(name: &str, profile: &KeepaliveProfile, purpose: String) -> Vec<String> {
    vec![name.to_owned(), profile.to_string(), profile.detection_time().to_string(), purpose]
}
