//! Decimal numbers without allocation, overflow or sign surprises.

/// Parses a non-empty run of ASCII digits. `None` for anything else
/// (signs, spaces, hex) and for values that do not fit in a `u64`.
pub(crate) fn parse_u64(token: &str) -> Option<u64> {
    if token.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for byte in token.bytes() {
        let digit = match byte {
            b'0'..=b'9' => u64::from(byte - b'0'),
            _ => return None,
        };
        value = value.checked_mul(10)?.checked_add(digit)?;
    }
    Some(value)
}

/// True if `token` is all ASCII digits (possibly too many for a `u64`).
pub(crate) fn is_digits(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit())
}
