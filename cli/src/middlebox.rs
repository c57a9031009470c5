//! `--keep-under`: a middlebox's idle timeout as a person gives it.
//!
//! A load balancer, NAT or firewall forgets a TCP flow that has carried no
//! packet for its idle timeout T; the connection is then dead for good,
//! and neither end is told. An idle socket survives only if a keepalive
//! probe crosses the box before T: keepalive on, and a first probe after
//! less than T of silence.
use kawrap_core::{IdleTimeout, MIDDLEBOXES};

use crate::error::Error;

/// The idle timeout `--keep-under` names: a duration or a middlebox name,
/// as kawrap-core reads it.
pub fn resolve(text: &str) -> Result<IdleTimeout, Error> {
    IdleTimeout::parse(text).map_err(|error| Error::Invalid { message: error.to_string(), hint: hint() })
}

fn hint() -> String {
    let names: Vec<String> =
        MIDDLEBOXES.iter().map(|named| format!("{} ({})", named.name, named.idle_timeout)).collect();
    format!(
        "accepted: the box's idle timeout from {} to {} s, as a duration (240s, 4m, 20min, 1h; a plain \
         number is seconds), or a middlebox name: {}",
        IdleTimeout::RANGE.start(),
        IdleTimeout::RANGE.end(),
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_timeouts_name_the_value_and_the_range() {
        let error = resolve("5s").unwrap_err();
        assert_eq!(
            error.to_string(),
            "keep-under \"5s\": idle timeout 5s is out of range 10..=604800 s (10 s to 7 days)"
        );
        let hint = error.hint_lines().join("\n");
        assert!(hint.contains("azure-lb (240 s)") && hint.contains("from 10 to 604800 s"), "{hint}");
        assert!(resolve("aws-alb").unwrap_err().to_string().contains("layer-7"));
        assert_eq!(resolve("azure-lb").unwrap().as_secs(), 240);
    }
}
