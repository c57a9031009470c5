//! The man pages: kawrap.1 and one per subcommand, from the clap definition
//! (name, synopsis, options and subcommands as clap_mangen renders them)
//! and the help texts, turned into the sections a man page has.
//!
//! A help text is written for a terminal: `Heading:` lines over indented
//! blocks, prose wrapped by hand, tables and examples aligned with spaces.
//! Here a heading becomes a section (`Environment:` becomes ENVIRONMENT,
//! `Exit status:` EXIT STATUS, `Examples:` EXAMPLES), wrapped prose a
//! paragraph that man fills to the reader's width, and aligned lines stay
//! lines (`.nf`), so the profile table stays a table. ENVIRONMENT (every
//! variable kawrap-core names), FILES and SEE ALSO are added.
use std::io;

use clap::Command;
use clap_mangen::Man;
use roff::{Roff, bold, roman};

use crate::library::LIB_NAME;
use crate::user_profiles::SYSTEM_FILE;

/// One man page: its file name (`kawrap-check.1`) and its roff text.
pub struct Page {
    pub file_name: String,
    pub text: String,
}

/// kawrap's pages, the subcommands' first.
pub fn pages(command: Command) -> io::Result<Vec<Page>> {
    let mut command = command.disable_help_subcommand(true).subcommand_help_heading("SUBCOMMANDS");
    command.build();
    let mut names = Vec::new();
    page_names(&command, &mut names);
    let mut pages = Vec::new();
    collect(&command, &names, &mut pages)?;
    Ok(pages)
}

fn page_names(command: &Command, names: &mut Vec<String>) {
    names.push(display_name(command).to_owned());
    for sub in visible_subcommands(command) {
        page_names(sub, names);
    }
}

fn collect(command: &Command, names: &[String], pages: &mut Vec<Page>) -> io::Result<()> {
    for sub in visible_subcommands(command) {
        collect(sub, names, pages)?;
    }
    pages.push(page(command, names)?);
    Ok(())
}

fn visible_subcommands(command: &Command) -> impl Iterator<Item = &Command> {
    command.get_subcommands().filter(|sub| !sub.is_hide_set())
}

fn display_name(command: &Command) -> &str {
    command.get_display_name().unwrap_or_else(|| command.get_name())
}

/// One page, every section in man-pages(7) order.
fn page(command: &Command, names: &[String]) -> io::Result<Page> {
    let name = display_name(command);
    let man = Man::new(command.clone());
    let mut title = Vec::new();
    man.render_title(&mut title)?;
    let mut text = String::from_utf8_lossy(&title).into_owned();
    // No hyphenation: `--ex-pect` split over two lines cannot be copied.
    text.push_str(".nh\n");
    let mut rendered = Vec::new();
    man.render_name_section(&mut rendered)?;
    man.render_synopsis_section(&mut rendered)?;
    append_rendered(&mut text, &rendered);
    let about = command.get_long_about().or_else(|| command.get_about()).map(ToString::to_string);
    let description = sections(&about.unwrap_or_default());
    let mut roff = Roff::new();
    roff.control("SH", ["DESCRIPTION"]);
    for section in &description {
        render_section(&mut roff, section);
    }
    append(&mut text, &roff);
    let mut rendered = Vec::new();
    if command.get_arguments().any(|arg| !arg.is_hide_set()) {
        man.render_options_section(&mut rendered)?;
    }
    if visible_subcommands(command).next().is_some() {
        man.render_subcommands_section(&mut rendered)?;
    }
    append_rendered(&mut text, &rendered);

    let after = command.get_after_long_help().or_else(|| command.get_after_help()).map(ToString::to_string);
    let mut help = sections(&after.unwrap_or_default());
    // What comes under no heading there is notes, not options.
    for section in help.iter_mut().filter(|section| section.title.is_none()) {
        section.title = Some("NOTES".to_owned());
    }
    let mut take =
        |title: &str| help.iter().position(|s| s.title.as_deref() == Some(title)).map(|i| help.remove(i));
    // The long help leaves the examples to the short one, when that has them.
    let short = command.get_after_help().map(ToString::to_string).unwrap_or_default();
    let examples = take("EXAMPLES")
        .or_else(|| sections(&short).into_iter().find(|s| s.title.as_deref() == Some("EXAMPLES")));
    let exit_status = take("EXIT STATUS");
    let environment = take("ENVIRONMENT");
    let mut roff = Roff::new();
    for section in &help {
        render_section(&mut roff, section);
    }
    if let Some(examples) = &examples {
        render_section(&mut roff, examples);
    }
    roff.control("SH", ["EXIT STATUS"]);
    match &exit_status {
        Some(section) => render_blocks(&mut roff, &section.blocks),
        None => {
            roff.text([roman(DEFAULT_EXIT_STATUS)]);
        }
    }
    if name == "kawrap" || name == "kawrap-env" {
        roff.control("SH", ["ENVIRONMENT"]);
        if let Some(section) = &environment {
            render_blocks(&mut roff, &section.blocks);
        }
        variables(&mut roff)?;
    }
    files(&mut roff);
    see_also(&mut roff, name, names);
    append(&mut text, &roff);
    let mut rendered = Vec::new();
    if command.get_version().is_some() {
        man.render_version_section(&mut rendered)?;
    }
    append_rendered(&mut text, &rendered);
    Ok(Page { file_name: format!("{name}.1"), text })
}

const DEFAULT_EXIT_STATUS: &str = "0 on success; 125 when kawrap itself failed (an invalid option, or \
                                   something the system refused), with the reason on stderr.";

/// Appends roff text, leaving out the preamble every rendering starts
/// with (the page's first part has it already).
fn append(text: &mut String, roff: &Roff) {
    append_rendered(text, roff.render().as_bytes());
}

fn append_rendered(text: &mut String, rendered: &[u8]) {
    let preamble = Roff::new().render();
    let rendered = String::from_utf8_lossy(rendered);
    text.push_str(rendered.strip_prefix(&preamble).unwrap_or(&rendered));
}

/// ENVIRONMENT's entries: every variable the shim reads (kawrap-core's
/// list), then the launcher's own.
fn variables(roff: &mut Roff) -> io::Result<()> {
    let core_names = kawrap_core::env::ALL.iter().map(|name| name.to_str().unwrap_or_default());
    for name in core_names.chain(["KAWRAP_LIB", "LD_PRELOAD"]) {
        let meaning = variable_meaning(name).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("no man page text for the variable {name}"))
        })?;
        roff.control("TP", []).text([bold(name)]).text([roman(meaning)]);
    }
    Ok(())
}

/// What each variable means, for ENVIRONMENT.
fn variable_meaning(name: &str) -> Option<&'static str> {
    Some(match name {
        "KAWRAP_PROFILE" => {
            "The profile libkawrap.so gives every TCP socket: a built-in name or IDLE/INTVL/CNT[/UT]; \
             unset, recommended (300/30/5). kawrap writes it in numbers."
        }
        "KAWRAP_RULES" => "Per-destination profiles, DEST=PROFILE separated by commas, as --rule takes them.",
        "KAWRAP_POLICY" => {
            "respect (default) or force: whether a keepalive option the program sets itself stands."
        }
        "KAWRAP_LOG" => {
            "A file libkawrap.so appends one line per socket to: pid, descriptor, destination, the values set \
             or the error. Only a regular file is written; ignored in setuid and setgid programs."
        }
        "KAWRAP_DISABLE" => "Any value other than empty or 0: libkawrap.so does nothing. kawrap removes it.",
        "KAWRAP_LIB" => "The libkawrap.so to preload, as --lib PATH (read by kawrap, not by the library).",
        "LD_PRELOAD" => {
            "kawrap puts the absolute path of libkawrap.so first and keeps the entries already there \
             (see ld.so(8))."
        }
        _ => return None,
    })
}

/// FILES: where profiles, the library and the eBPF mode's pins live.
fn files(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    let entries = [
        (
            SYSTEM_FILE.to_owned(),
            "Profile names for the whole system ([profiles.NAME] keepalive = \"I/V/C\").",
        ),
        (
            "$XDG_CONFIG_HOME/kawrap/profiles.toml".to_owned(),
            "Your own profile names (~/.config/kawrap/profiles.toml when XDG_CONFIG_HOME is unset); a name \
             defined in both files is this one's. As root, kawrap refuses either file when others than its \
             owner and root may write it.",
        ),
        (
            format!("PREFIX/lib/kawrap/{LIB_NAME}"),
            "The library kawrap preloads: next to the kawrap binary, else ../lib/kawrap/ from it (PREFIX is \
             where kawrap is installed, /usr/local by default). systemd drop-ins and `kawrap env` output hold \
             its absolute path.",
        ),
        (
            "/sys/fs/bpf/kawrap/".to_owned(),
            "The eBPF mode's pinned programs: programs/ (loaded and verified once, reused by every run; `kawrap \
             bpf unpin --cache` removes them) and pinned/NAME/ (`kawrap bpf pin`, for systemd's BPFProgram=). \
             `kawrap bpf status` lists them; `kawrap bpf detach --all` removes everything kawrap pinned.",
        ),
    ];
    for (path, meaning) in entries {
        roff.control("TP", []).text([bold(path)]).text([roman(meaning)]);
    }
}

/// SEE ALSO: kawrap's other pages, then the system's that explain it.
fn see_also(roff: &mut Roff, name: &str, names: &[String]) {
    roff.control("SH", ["SEE ALSO"]);
    let mut pages: Vec<String> =
        names.iter().filter(|page| *page != name).map(|page| format!("{page}(1)")).collect();
    pages.extend(SYSTEM_PAGES.iter().map(|page| page.to_string()));
    roff.text([roman(pages.join(", "))]);
}

const SYSTEM_PAGES: [&str; 7] =
    ["ss(8)", "tcp(7)", "socket(7)", "ld.so(8)", "systemd.exec(5)", "systemd.unit(5)", "pidfd_getfd(2)"];

/// A part of a help text: a heading's section (`None`: the text before
/// the first heading), made of blocks.
#[derive(Debug, PartialEq, Eq)]
struct Section {
    title: Option<String>,
    blocks: Vec<Block>,
}

#[derive(Debug, PartialEq, Eq)]
enum Block {
    /// Prose: man fills it to the reader's width.
    Paragraph(String),
    /// Lines kept as they are (tables, examples), without their common
    /// indentation.
    Lines(Vec<String>),
}

/// Prose lines wrapped by hand are at least this long (but the last).
const WRAPPED: usize = 60;

/// A help text's sections.
fn sections(text: &str) -> Vec<Section> {
    let lines: Vec<&str> = text.lines().collect();
    let mut sections = vec![Section { title: None, blocks: Vec::new() }];
    let mut chunk: Vec<&str> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let next_indented = lines.get(index + 1).is_some_and(|next| next.starts_with(' '));
        if let Some(title) = heading(line).filter(|_| next_indented) {
            flush(&mut chunk, &mut sections);
            let (title, aside) = man_title(title);
            let blocks = aside.into_iter().map(Block::Paragraph).collect();
            sections.push(Section { title: Some(title), blocks });
        } else if line.trim().is_empty() {
            flush(&mut chunk, &mut sections);
        } else {
            chunk.push(line);
        }
    }
    flush(&mut chunk, &mut sections);
    // `Exit status: …` as a paragraph of its own is that section too.
    let mut found = Vec::new();
    for section in &mut sections {
        section.blocks.retain(|block| match block {
            Block::Paragraph(text) if text.starts_with("Exit status: ") => {
                found.push(Block::Paragraph(text["Exit status: ".len()..].to_owned()));
                false
            }
            _ => true,
        });
    }
    if !found.is_empty() {
        sections.push(Section { title: Some("EXIT STATUS".to_owned()), blocks: found });
    }
    sections.retain(|section| section.title.is_some() || !section.blocks.is_empty());
    sections
}

/// A heading line's text: unindented, ending in `:` or `?`, short.
fn heading(line: &str) -> Option<&str> {
    let short = line.len() < 100 && !line.starts_with(' ');
    (short && (line.ends_with(':') || line.ends_with('?'))).then(|| line.trim_end_matches(':'))
}

/// `Rules (--rule DEST=PROFILE, first match wins)` → `RULES`, and the
/// parenthesis as a sentence of its own.
fn man_title(heading: &str) -> (String, Option<String>) {
    let (title, aside) = match heading.split_once(" (") {
        Some((title, rest)) if rest.ends_with(')') => (title, Some(&rest[..rest.len() - 1])),
        _ => (heading, None),
    };
    // `(--policy)` says no more than the section does.
    let aside = aside.filter(|aside| aside.contains(' ')).map(|aside| {
        let mut chars = aside.chars();
        let first: String = chars.next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
        format!("{first}{}.", chars.as_str())
    });
    (title.to_uppercase(), aside)
}

/// Turns the lines of one blank-separated chunk into blocks: unindented
/// text, and runs of hand-wrapped prose at the chunk's own indentation,
/// become paragraphs; deeper lines, lines aligned with runs of spaces, and
/// short indented lines that end no paragraph stay lines, as does all of
/// an EXAMPLES section.
fn flush(chunk: &mut Vec<&str>, sections: &mut [Section]) {
    if chunk.is_empty() {
        return;
    }
    let indent = |line: &str| line.len() - line.trim_start().len();
    let base = chunk.iter().map(|line| indent(line)).min().unwrap_or(0);
    // Examples are commands, however long: they stay as typed.
    let examples =
        base > 0 && sections.last().is_some_and(|section| section.title.as_deref() == Some("EXAMPLES"));
    let mut blocks = Vec::new();
    let mut prose: Vec<&str> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    for line in chunk.drain(..) {
        let text = line.trim();
        let aligned = indent(line) > base || text.contains("  ") || examples;
        // Unindented text is prose whatever its length; examples are indented.
        if !aligned && (base == 0 || text.len() >= WRAPPED || !prose.is_empty()) {
            if !kept.is_empty() {
                blocks.push(Block::Lines(std::mem::take(&mut kept)));
            }
            prose.push(text);
            if text.len() < WRAPPED {
                blocks.push(Block::Paragraph(prose.join(" ")));
                prose.clear();
            }
        } else {
            if !prose.is_empty() {
                blocks.push(Block::Paragraph(prose.join(" ")));
                prose.clear();
            }
            kept.push(line[base..].trim_end().to_owned());
        }
    }
    if !prose.is_empty() {
        blocks.push(Block::Paragraph(prose.join(" ")));
    }
    if !kept.is_empty() {
        blocks.push(Block::Lines(kept));
    }
    // Unindented text after a heading's indented lines is not the
    // heading's: it goes with the text before the first heading.
    let section = if base == 0 { sections.first_mut() } else { sections.last_mut() };
    if let Some(section) = section {
        section.blocks.extend(blocks);
    }
}

fn render_section(roff: &mut Roff, section: &Section) {
    if let Some(title) = &section.title {
        roff.control("SH", [title.as_str()]);
    }
    render_blocks(roff, &section.blocks);
}

fn render_blocks(roff: &mut Roff, blocks: &[Block]) {
    for (index, block) in blocks.iter().enumerate() {
        if index > 0 {
            roff.control("PP", []);
        }
        match block {
            Block::Paragraph(text) => {
                roff.text([roman(text.as_str())]);
            }
            Block::Lines(lines) => {
                roff.control("nf", []);
                for line in lines {
                    roff.text([roman(line.as_str())]);
                }
                roff.control("fi", []);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_prose_and_aligned_lines() {
        let text = "Intro paragraph that is long enough to have been wrapped by hand at the\nend.\n\n\
                    Rules (--rule DEST=PROFILE, first match wins):\n  :3306=firewall       any address\n  \
                    Several at once: --rule ':3306=firewall,10.0.0.0/8=60/10/6'. Addresses are matched\n  \
                    as written.\n\nExamples:\n  kawrap a\n  kawrap b\n\nExit status: 0; 1 when it fails.";
        let sections = sections(text);
        assert_eq!(
            sections,
            [
                Section {
                    title: None,
                    blocks: vec![Block::Paragraph(
                        "Intro paragraph that is long enough to have been wrapped by hand at the end.".into()
                    )]
                },
                Section {
                    title: Some("RULES".into()),
                    blocks: vec![
                        Block::Paragraph("--rule DEST=PROFILE, first match wins.".into()),
                        Block::Lines(vec![":3306=firewall       any address".into()]),
                        Block::Paragraph(
                            "Several at once: --rule ':3306=firewall,10.0.0.0/8=60/10/6'. Addresses are matched \
                             as written."
                                .into()
                        ),
                    ]
                },
                Section {
                    title: Some("EXAMPLES".into()),
                    blocks: vec![Block::Lines(vec!["kawrap a".into(), "kawrap b".into()])]
                },
                Section {
                    title: Some("EXIT STATUS".into()),
                    blocks: vec![Block::Paragraph("0; 1 when it fails.".into())]
                },
            ]
        );
    }

    #[test]
    fn every_variable_has_its_meaning() {
        for name in kawrap_core::env::ALL {
            assert!(variable_meaning(name.to_str().unwrap()).is_some(), "{name:?}");
        }
        let mut roff = Roff::new();
        variables(&mut roff).unwrap();
    }
}
