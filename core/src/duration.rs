//! Durations as people read and write them.
use core::fmt;

use crate::number::parse_u64;

/// A number of seconds shown with its two largest non-zero units,
/// truncated: `7 min 30 s`, `2 h 11 min`, `6 min`, `3 d 4 h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(u64);

impl HumanDuration {
    /// Wraps a number of seconds.
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(secs)
    }

    /// The number of seconds.
    pub const fn as_secs(self) -> u64 {
        self.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "min"), (1, "s")];
        // The largest unit that fits, then the next smaller one if non-zero
        // (`1 h`, never `1 h 0 min 5 s`).
        let Some(first) = UNITS.iter().position(|&(size, _)| self.0 >= size) else {
            return f.write_str("0 s");
        };
        let (size, unit) = UNITS[first];
        write!(f, "{} {unit}", self.0 / size)?;
        if let Some(&(next_size, next_unit)) = UNITS.get(first + 1) {
            let amount = self.0 % size / next_size;
            if amount > 0 {
                write!(f, " {amount} {next_unit}")?;
            }
        }
        Ok(())
    }
}

/// Parses a duration written with units into milliseconds: one or more
/// `<digits><unit>` parts, unit one of `h`, `m`, `min`, `s`, `ms`
/// (`7m30s`, `450s`, `500ms`, `1h`). `Ok(None)` when it overflows a `u64`,
/// `Err(())` when it is not written that way.
#[allow(clippy::result_unit_err)] // the one failure, "not written that way", is mapped by callers to an error naming the token
pub fn parse_duration_ms(text: &str) -> Result<Option<u64>, ()> {
    if text.is_empty() {
        return Err(());
    }
    let mut total: Option<u64> = Some(0);
    let mut rest = text;
    while !rest.is_empty() {
        let digits_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(());
        }
        let (digits, after) = rest.split_at(digits_end);
        let unit_end = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let scale: u64 = match unit {
            "h" => 3_600_000,
            "m" | "min" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            _ => return Err(()),
        };
        let part = parse_u64(digits).and_then(|n| n.checked_mul(scale));
        total = match (total, part) {
            (Some(total), Some(part)) => total.checked_add(part),
            _ => None,
        };
        rest = next;
    }
    Ok(total)
}
