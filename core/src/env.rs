//! Names of the environment variables the launcher sets and the shim reads.
//!
//! They are C string literals because the shim looks them up with
//! `secure_getenv(3)`; the launcher uses [`core::ffi::CStr::to_str`].
use core::ffi::CStr;

/// The keepalive profile: a built-in name or `IDLE/INTVL/CNT[/UT]`.
/// Unset means `recommended`.
pub const PROFILE: &CStr = c"KAWRAP_PROFILE";
/// Per-destination rules, `DEST=PROFILE` separated by commas.
pub const RULES: &CStr = c"KAWRAP_RULES";
/// `respect` (default) or `force`.
pub const POLICY: &CStr = c"KAWRAP_POLICY";
/// Path of an append-only log file: one line per socket the shim touched.
pub const LOG: &CStr = c"KAWRAP_LOG";
/// Any non-empty value other than `0` makes the shim do nothing at all.
pub const DISABLE: &CStr = c"KAWRAP_DISABLE";

/// Every variable the launcher may set, in the order it prints them.
pub const ALL: [&CStr; 5] = [PROFILE, RULES, POLICY, LOG, DISABLE];

/// `KAWRAP_DISABLE`'s meaning: set and neither empty nor `0`.
pub fn is_disabled(value: Option<&[u8]>) -> bool {
    matches!(value, Some(v) if !v.is_empty() && v != b"0")
}
