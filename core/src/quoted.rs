//! Values quoted in messages.
use core::fmt::{self, Write};

/// `text` in double quotes, as `{:?}` writes what a person types: `"` and
/// `\` backslashed, control characters as `\n`, `\r`, `\t`, `\0` or
/// `\u{1b}`, so a value holding a newline or an escape sequence can neither
/// split a message (or a line of the shim's log) nor drive a terminal.
/// Every other character is written as it is: unlike `{:?}`, this needs no
/// Unicode tables, which would cost the shim, whose size is budgeted,
/// about 2 KB.
#[derive(Clone, Copy, Debug)]
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                '\0' => f.write_str("\\0")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

#[cfg(test)]
mod tests {
    use std::format;

    use super::Quoted;

    #[test]
    fn quotes_as_debug_does_for_what_people_type() {
        for text in ["", "300/30/5", "a\"b\\c", "line\nbreak\r\t\0", "\u{1b}[8m", "\u{7f}\u{9b}", "é ß ∞"]
        {
            assert_eq!(format!("{}", Quoted(text)), format!("{text:?}"), "{text:?}");
        }
    }
}
