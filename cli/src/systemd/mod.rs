//! systemd services as kawrap writes for them: unit names, quoting, what a
//! unit's files say about the environment kawrap's drop-in joins (`unit`),
//! and putting a file in place without trusting the directory it goes into
//! (`install`). Shared by `kawrap env --systemd` and `kawrap bpf systemd`.
pub mod install;
pub mod unit;

use crate::error::Error;

/// `kawrap env --systemd`'s drop-in: after most packages' own (which use
/// 10-…), so that kawrap's Environment= lines see theirs; before
/// `override.conf`, which `systemctl edit` writes.
pub const DROP_IN_NAME: &str = "50-kawrap.conf";

/// Where system units and their drop-ins live.
pub const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// systemd's unit types.
const UNIT_TYPES: [&str; 11] = [
    "service",
    "socket",
    "timer",
    "mount",
    "automount",
    "path",
    "target",
    "slice",
    "scope",
    "device",
    "swap",
];

/// A unit's full name, as systemctl reads what it is given: `backup` means
/// `backup.service`; a name ending in a unit type keeps it
/// (`user-1000.slice`).
pub fn full_unit_name(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((_, suffix)) if UNIT_TYPES.contains(&suffix) => name.to_owned(),
        _ => format!("{name}.service"),
    }
}

/// `backup` → `backup.service`; only services have `[Service]`.
pub fn unit_name(name: &str) -> Result<String, Error> {
    let invalid = |reason: &str| Error::Invalid {
        message: format!("--unit {name:?}: {reason}"),
        hint: "give a service name such as `backup` or `backup.service` (letters, digits, `:-_.\\@`)"
            .to_owned(),
    };
    let unit = full_unit_name(name);
    if !unit.ends_with(".service") {
        return Err(invalid("only a .service has a [Service] section"));
    }
    if unit == ".service" {
        return Err(invalid("the name is empty"));
    }
    if !unit.bytes().all(|b| b.is_ascii_alphanumeric() || b":-_.\\@".contains(&b)) {
        return Err(invalid("systemd unit names contain only letters, digits and `:-_.\\@`"));
    }
    Ok(unit)
}

/// `text` as one word of a unit file, in double quotes: inside them systemd
/// reads C-style escapes, and `%` starts a specifier.
pub fn quote(text: &str) -> String {
    format!("\"{}\"", escape(text, false))
}

/// `text` for the inside of double quotes in a unit file: C-style escapes
/// for `"`, `\` and newlines, and `%%` for `%` unless `keep_specifiers`
/// (for a value taken from a unit file, its specifiers and all).
pub fn escape(text: &str, keep_specifiers: bool) -> String {
    let mut escaped = String::new();
    for ch in text.chars() {
        match ch {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '%' if !keep_specifiers => escaped.push_str("%%"),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_unit_names_default_to_services() {
        assert_eq!(full_unit_name("backup"), "backup.service");
        assert_eq!(full_unit_name("backup.service"), "backup.service");
        assert_eq!(full_unit_name("user-1000.slice"), "user-1000.slice");
        assert_eq!(full_unit_name("db.nightly"), "db.nightly.service");
    }

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("backup").unwrap(), "backup.service");
        assert_eq!(unit_name("backup.service").unwrap(), "backup.service");
        assert_eq!(unit_name("getty@tty1").unwrap(), "getty@tty1.service");
        assert!(unit_name("../etc").is_err());
        assert!(unit_name("a/b").is_err());
        assert!(unit_name("").is_err());
        assert!(unit_name(".service").is_err());
        assert!(unit_name("backup.timer").unwrap_err().to_string().contains("only a .service"));
    }

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            quote("KAWRAP_LOG=/var/log/a \"b\" 100%.log"),
            r#""KAWRAP_LOG=/var/log/a \"b\" 100%%.log""#
        );
        assert_eq!(escape("%h/x\\y", true), r"%h/x\\y");
    }
}
