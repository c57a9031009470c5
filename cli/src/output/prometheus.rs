//! The Prometheus text exposition format, version 0.0.4: what
//! node_exporter's textfile collector reads from `*.prom` files.
//!
//! Each metric family is a `# HELP name text` line, a `# TYPE name kind`
//! line, then its samples, `name{label="value",…} number`, one per line, all
//! together. Help text escapes `\` and newlines; label values also `"`. Any
//! other line starting with `#` is a comment. No timestamps: the collector
//! refuses them.
use std::fmt::Write as _;

/// What a family's numbers mean over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A value that goes up and down (how many sockets now).
    Gauge,
    /// A count that only grows, until its source restarts (`…_total`).
    Counter,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// One metric family: a name, its help, and its samples.
#[derive(Clone, Debug)]
pub struct Family {
    name: &'static str,
    kind: Kind,
    help: String,
    samples: Vec<(String, u64)>,
}

impl Family {
    /// An empty family. `name` must be a valid metric name
    /// (`[a-zA-Z_:][a-zA-Z0-9_:]*`); counters' names end in `_total`.
    pub fn new(name: &'static str, kind: Kind, help: impl Into<String>) -> Family {
        debug_assert!(is_metric_name(name), "{name:?} is not a metric name");
        debug_assert!(kind != Kind::Counter || name.ends_with("_total"), "{name}");
        Family { name, kind, help: help.into(), samples: Vec::new() }
    }

    /// Adds a sample with these labels (names must be valid label names).
    pub fn sample(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Family {
        let mut line = String::from(self.name);
        if !labels.is_empty() {
            line.push('{');
            for (index, (name, value)) in labels.iter().enumerate() {
                debug_assert!(is_metric_name(name) && !name.contains(':'), "{name:?} is not a label name");
                let separator = if index == 0 { "" } else { "," };
                let _ = write!(line, "{separator}{name}=\"{}\"", escape_label_value(value));
            }
            line.push('}');
        }
        self.samples.push((line, value));
        self
    }
}

/// A whole exposition, built family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// A comment line (`# …`); line breaks in `text` start new comment lines.
    pub fn comment(&mut self, text: &str) {
        for line in text.lines() {
            let _ = writeln!(self.text, "# {line}");
        }
    }

    /// A family with its HELP and TYPE lines and samples.
    pub fn push(&mut self, family: &Family) {
        let _ = writeln!(self.text, "# HELP {} {}", family.name, escape_help(&family.help));
        let _ = writeln!(self.text, "# TYPE {} {}", family.name, family.kind.name());
        for (series, value) in &family.samples {
            let _ = writeln!(self.text, "{series} {value}");
        }
    }

    /// The text, ready for a `.prom` file.
    pub fn into_text(self) -> String {
        self.text
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// A label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
fn escape_label_value(value: &str) -> String {
    escape(value, true)
}

/// Help text: `\` → `\\`, newline → `\n`.
fn escape_help(text: &str) -> String {
    escape(text, false)
}

fn escape(text: &str, quotes: bool) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '"' if quotes => escaped.push_str("\\\""),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_is_help_type_then_samples() {
        let mut family = Family::new("kawrap_things", Kind::Gauge, "Things.");
        family.sample(&[("a", "x"), ("b", "y")], 3).sample(&[], 0);
        let mut counter = Family::new("kawrap_events_total", Kind::Counter, "Events.");
        counter.sample(&[("kind", "connect")], 18_446_744_073_709_551_615);
        let mut exposition = Exposition::default();
        exposition.comment("made by a test\nsecond line");
        exposition.push(&family);
        exposition.push(&counter);
        assert_eq!(
            exposition.into_text(),
            "# made by a test\n# second line\n\
             # HELP kawrap_things Things.\n# TYPE kawrap_things gauge\n\
             kawrap_things{a=\"x\",b=\"y\"} 3\nkawrap_things 0\n\
             # HELP kawrap_events_total Events.\n# TYPE kawrap_events_total counter\n\
             kawrap_events_total{kind=\"connect\"} 18446744073709551615\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("two\nlines"), r"two\nlines");
        assert_eq!(escape_label_value("plain-name_1 ü"), "plain-name_1 ü");
        assert_eq!(escape_help("say \"hi\"\\\nnow"), r#"say "hi"\\\nnow"#);
        let mut family = Family::new("kawrap_x", Kind::Gauge, "x");
        family.sample(&[("comm", "k\"a\\w\nr")], 1);
        let mut exposition = Exposition::default();
        exposition.push(&family);
        assert!(exposition.into_text().ends_with("kawrap_x{comm=\"k\\\"a\\\\w\\nr\"} 1\n"));
    }

    #[test]
    fn metric_names() {
        assert!(is_metric_name("kawrap_tcp_established_sockets"));
        assert!(is_metric_name("a:b_c9"));
        assert!(!is_metric_name("9a"));
        assert!(!is_metric_name("a-b"));
        assert!(!is_metric_name(""));
    }
}
