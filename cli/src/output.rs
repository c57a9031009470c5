//! Writing what kawrap prints: on stdout, in columns, shell-quoted, and what
//! -v says on stderr; in the Prometheus text format ([`prometheus`]).
use std::borrow::Cow;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;

use kawrap_core::Config;

use crate::error::Error;

pub mod prometheus;

/// Writes `bytes` to stdout. A reader that went away (`kawrap profiles |
/// head -1`) is not an error: there is nobody left to tell.
pub fn write_stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
            Err(Error::io("cannot write to stdout", error))
        }
        _ => Ok(()),
    }
}

/// `profile 300/30/5 (idle 300 s, every 30 s, 5 probes) notices a dead peer
/// in 7 min 30 s; 1 rule; policy respect`: what -v says is about to be
/// applied, in either mode.
pub fn describe_config(config: &Config) -> String {
    let profile = &config.profile;
    let mut text = format!(
        "profile {profile} (idle {} s, every {} s, {} probes) notices a dead peer in {}",
        profile.idle_secs(),
        profile.interval_secs(),
        profile.count(),
        profile.detection_time()
    );
    if let Some(ms) = profile.user_timeout_ms() {
        let _ = write!(text, ", user timeout {ms} ms");
    }
    let rules = config.rules.as_slice().len();
    if rules > 0 {
        let _ = write!(text, "; {rules} rule{}", if rules == 1 { "" } else { "s" });
    }
    let _ = write!(text, "; policy {}", config.policy);
    text
}

/// Prints warnings for a person on stderr: things kawrap does as told but
/// that are probably not what was meant.
pub fn warn(warnings: &[String]) {
    for warning in warnings {
        eprintln!("kawrap: warning: {warning}");
    }
}

/// `text` with every control character (C0, DEL and C1) shown as `?`, as
/// ps(1) shows a process name: a name another user chose (`/proc/PID/comm`,
/// a cgroup) cannot move the cursor, hide the rest of the output or start a
/// line of its own. JSON output needs none of this: its encoder escapes.
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(text.chars().map(|c| if c.is_control() { '?' } else { c }).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// Left-aligned columns, two spaces apart, no trailing spaces.
pub fn columns(cells: &[Vec<String>]) -> String {
    let count = cells.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|i| cells.iter().filter_map(|row| row.get(i)).map(|c| c.chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in cells {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:width$}  ");
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `value` as one word for a POSIX shell: unchanged when it has nothing the
/// shell would interpret, else in single quotes. Bytes that are not UTF-8
/// are kept as they are, so the word means the same value.
pub fn shell_quote(value: &OsStr) -> Vec<u8> {
    let bytes = value.as_bytes();
    let plain = |byte: &u8| byte.is_ascii_alphanumeric() || b"%+,-./:=@_".contains(byte);
    if !bytes.is_empty() && bytes.iter().all(plain) {
        return bytes.to_vec();
    }
    let mut quoted = Vec::with_capacity(bytes.len() + 2);
    quoted.push(b'\'');
    for &byte in bytes {
        if byte == b'\'' {
            // Close the quote, add an escaped quote, reopen.
            quoted.extend_from_slice(b"'\\''");
        } else {
            quoted.push(byte);
        }
    }
    quoted.push(b'\'');
    quoted
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    fn quote(text: &str) -> String {
        String::from_utf8(shell_quote(OsStr::new(text))).unwrap()
    }

    #[test]
    fn plain_words_stay_plain() {
        assert_eq!(quote("300/30/5"), "300/30/5");
        assert_eq!(
            quote(":3306=60/10/6,[2001:db8::]/32:5432=ssh"),
            "':3306=60/10/6,[2001:db8::]/32:5432=ssh'"
        );
        assert_eq!(quote("/usr/lib/libkawrap.so:/opt/x.so"), "/usr/lib/libkawrap.so:/opt/x.so");
    }

    #[test]
    fn anything_else_is_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("exit 7"), "'exit 7'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("~"), "'~'");
    }

    #[test]
    fn columns_are_aligned_without_trailing_spaces() {
        let cells = vec![vec!["A".to_owned(), "BB".to_owned()], vec!["CCC".to_owned(), "D".to_owned()]];
        assert_eq!(columns(&cells), "A    BB\nCCC  D\n");
    }

    #[test]
    fn control_characters_are_shown_as_question_marks() {
        assert_eq!(printable("postgres"), "postgres");
        assert_eq!(printable("\x1b[8mhide\nESTAB\t\u{7f}\u{9b}é"), "?[8mhide?ESTAB???é");
    }

    #[test]
    fn non_utf8_bytes_survive() {
        let value = OsStr::from_bytes(b"a\xffb");
        assert_eq!(shell_quote(value), b"'a\xffb'");
    }
}
