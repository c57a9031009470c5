//! The man pages `make install` installs, rendered by `man -l` as a reader
//! sees them, compared with what they must say: standard sections in order
//! (no EXTRA holding the help), the profile table as `kawrap profiles`
//! prints it, every KAWRAP_* variable, the files, the exit statuses.
mod testenv;

use std::path::Path;
use std::process::Command;

use kawrap_core::BUILTIN_PROFILES;
use testenv::{TestEnv, have, kawrap_bin, skip_unless};

/// `man -l PAGE` at 100 columns, as plain text.
fn render(page: &Path) -> String {
    let output = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("MAN_KEEP_FORMATTING", "")
        .env("LANG", "C.UTF-8")
        .output()
        .expect("run man");
    assert!(
        output.status.success(),
        "man -l {}: {}",
        page.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    // Bold and underline as overstrikes (when a terminal is assumed) go.
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut plain = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{8}') {
            chars.next();
            continue;
        }
        plain.push(c);
    }
    plain
}

/// The section headings: the lines that start in the first column.
fn headings(text: &str) -> Vec<&str> {
    text.lines().skip(1).filter(|line| line.starts_with(|c: char| c.is_ascii_uppercase())).collect()
}

/// The lines of section `name`, without their indentation.
fn section<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = text.lines().skip_while(|line| *line != name).skip(1);
    let mut body = Vec::new();
    for line in lines.by_ref() {
        if line.starts_with(|c: char| c.is_ascii_uppercase()) {
            break;
        }
        body.push(line.trim());
    }
    body
}

/// Words of a section joined by single spaces: prose as a reader reads it,
/// whatever the line breaks and justification.
fn words(lines: &[&str]) -> String {
    lines.join(" ").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The cells of a table row: text separated by two spaces or more.
fn cells(line: &str) -> Vec<&str> {
    line.split("  ").map(str::trim).filter(|cell| !cell.is_empty()).collect()
}

fn pages() -> Option<TestEnv> {
    if !skip_unless(have("man"), "needs man (package man-db)") {
        return None;
    }
    let env = TestEnv::new();
    let status =
        Command::new(kawrap_bin()).args(["__generate", "man"]).arg(env.root().join("man")).status().unwrap();
    assert!(status.success());
    Some(env)
}

#[test]
fn kawrap_1_has_the_standard_sections_and_no_extra() {
    let Some(env) = pages() else { return };
    let text = render(&env.root().join("man/kawrap.1"));
    assert_eq!(
        headings(&text),
        [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "KEEPALIVE SETTINGS",
            "OUTPUT",
            "SUBCOMMANDS",
            "PROFILES",
            "RULES",
            "POLICY",
            "CHECKING THAT IT WORKS",
            "A PROGRAM OR A SUBCOMMAND?",
            "WHAT KAWRAP CANNOT REACH",
            "EXAMPLES",
            "EXIT STATUS",
            "ENVIRONMENT",
            "FILES",
            "SEE ALSO",
            "VERSION",
        ],
        "{text}"
    );
    assert!(!text.contains("EXTRA"), "{text}");
}

#[test]
fn the_profile_table_is_rendered_as_kawrap_profiles_prints_it() {
    let Some(env) = pages() else { return };
    let text = render(&env.root().join("man/kawrap.1"));
    let profiles = section(&text, "PROFILES");
    let table = env.kawrap().args(["profiles"]).run().code(0).stdout();
    // Each row of `kawrap profiles` (header left out) is one line, its
    // cells as they are: only the columns' widths may differ.
    let rendered: Vec<Vec<&str>> = profiles.iter().map(|line| cells(line)).collect();
    for row in table.lines().skip(1) {
        assert!(rendered.contains(&cells(row)), "{row:?} not a line of PROFILES:\n{}", profiles.join("\n"));
    }
    assert_eq!(table.lines().count(), 1 + BUILTIN_PROFILES.len());
    // The prose after it is a paragraph, filled to the page's width.
    assert!(words(&profiles).contains(
        "Or IDLE/INTVL/CNT: after IDLE seconds without a packet the kernel probes the peer every INTVL seconds"
    ));
}

#[test]
fn environment_files_exit_status_and_see_also() {
    let Some(env) = pages() else { return };
    let text = render(&env.root().join("man/kawrap.1"));
    let environment = section(&text, "ENVIRONMENT");
    for var in kawrap_core::env::ALL {
        let name = var.to_str().unwrap();
        assert!(
            environment.contains(&name),
            "{name} is not an entry of ENVIRONMENT:\n{}",
            environment.join("\n")
        );
    }
    for name in ["KAWRAP_LIB", "LD_PRELOAD"] {
        assert!(environment.contains(&name), "{name}:\n{}", environment.join("\n"));
    }
    let files = section(&text, "FILES");
    for path in [
        "/etc/kawrap/profiles.toml",
        "$XDG_CONFIG_HOME/kawrap/profiles.toml",
        "PREFIX/lib/kawrap/libkawrap.so",
        "/sys/fs/bpf/kawrap/",
    ] {
        assert!(files.contains(&path), "{path} is not an entry of FILES:\n{}", files.join("\n"));
    }
    assert_eq!(
        words(&section(&text, "EXIT STATUS")),
        "The program's own status when it ran; 125 when kawrap itself failed (invalid option, libkawrap.so \
         not found); 126 when COMMAND was found but cannot be executed; 127 when COMMAND was not found."
    );
    let see_also = words(&section(&text, "SEE ALSO"));
    for page in [
        "kawrap-check(1)",
        "kawrap-env(1)",
        "kawrap-bpf(1)",
        "ss(8)",
        "tcp(7)",
        "ld.so(8)",
        "systemd.exec(5)",
    ] {
        assert!(see_also.contains(page), "{page} not in SEE ALSO: {see_also}");
    }

    // A subcommand's page: its own exit statuses and examples, kept as typed.
    let text = render(&env.root().join("man/kawrap-check.1"));
    assert_eq!(
        words(&section(&text, "EXIT STATUS")),
        "0; 1 when --expect found a socket without the profile, one it could not judge, or no socket to check, \
         or --keep-under found a socket the box would drop or one it could not judge; 125 when kawrap itself \
         failed (bad option, no such process, --output not writable)."
    );
    let examples = section(&text, "EXAMPLES");
    assert!(
        examples.contains(&"kawrap check --pid 1234                    the sockets of one process"),
        "{examples:?}"
    );
    assert!(!text.contains("EXTRA"));
    let text = render(&env.root().join("man/kawrap-env.1"));
    assert!(headings(&text).contains(&"ENVIRONMENT") && headings(&text).contains(&"FILES"), "{text}");
    let description = section(&text, "DESCRIPTION");
    assert!(description.contains(&"kawrap env --shell fish --profile firewall | source"), "{description:?}");
}
