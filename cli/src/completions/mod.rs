//! Shell completions for bash and fish, made from the clap definition (so
//! they cannot drift from it) by kawrap's own generators: clap_complete's
//! scripts complete file names for every value and kawrap's own options
//! after COMMAND. These know what kawrap's values are:
//!
//! - a profile (`--profile`, `--expect`: value name `PROFILE`): the names
//!   `kawrap __complete profiles` prints, built-in and from profiles.toml;
//! - a process (`--pid`, `attach PID`: value name `PID`): the running PIDs;
//! - a fixed set (`--policy`, `--shell`): its possible values;
//! - a path (value hint): files or directories; anything else: nothing;
//!
//! and that COMMAND ends kawrap's part of the line: from there on the words
//! complete as they would after `timeout`, `env` or `sudo` — programs, then
//! that program's own completion, never kawrap's options.
//!
//! zsh keeps clap_complete's script.
pub mod bash;
pub mod fish;

use clap::{Arg, ArgAction, Command, ValueHint};

/// What a value completes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Values {
    /// Profile names (`kawrap __complete profiles`).
    Profiles,
    /// Process IDs.
    Pids,
    /// One of these words.
    Words(Vec<String>),
    /// File names.
    Files,
    /// Directory names.
    Dirs,
    /// Nothing: free text (a rule, a port, a duration).
    Nothing,
}

impl Values {
    /// How the scripts name this kind of value: `profiles`, `pids`,
    /// `words:A B`, `files`, `dirs`, `nothing`.
    pub fn kind(&self) -> String {
        match self {
            Values::Profiles => "profiles".to_owned(),
            Values::Pids => "pids".to_owned(),
            Values::Words(words) => format!("words:{}", words.join(" ")),
            Values::Files => "files".to_owned(),
            Values::Dirs => "dirs".to_owned(),
            Values::Nothing => "nothing".to_owned(),
        }
    }
}

/// An option: its names, what its value completes to (`None`: it takes
/// none) and its help's first line.
#[derive(Clone, Debug)]
pub struct Opt {
    pub long: Option<String>,
    pub short: Option<char>,
    pub value: Option<Values>,
    pub help: String,
}

impl Opt {
    /// `--long` and `-s`, as typed.
    pub fn spellings(&self) -> Vec<String> {
        let long = self.long.iter().map(|long| format!("--{long}"));
        long.chain(self.short.iter().map(|short| format!("-{short}"))).collect()
    }
}

/// One level of the command line: `kawrap`, `kawrap check`, `kawrap bpf
/// attach`…
#[derive(Clone, Debug)]
pub struct Level {
    /// `kawrap`, `kawrap bpf`, … (names joined by spaces).
    pub path: String,
    pub options: Vec<Opt>,
    /// Its subcommands' names and first help lines.
    pub subcommands: Vec<(String, String)>,
    /// What its positional argument completes to, if it takes one.
    pub positional: Option<Values>,
    /// Its positional is a COMMAND with the command's own arguments.
    pub runs_a_command: bool,
}

/// Every level of `command`, the top first.
pub fn levels(command: &Command) -> Vec<Level> {
    let mut levels = Vec::new();
    collect(command, command.get_name().to_owned(), &mut levels);
    levels
}

fn collect(command: &Command, path: String, levels: &mut Vec<Level>) {
    let options = command
        .get_arguments()
        .filter(|arg| !arg.is_positional() && !arg.is_hide_set())
        .map(|arg| Opt {
            long: arg.get_long().map(str::to_owned),
            short: arg.get_short(),
            value: takes_value(arg).then(|| values(arg)),
            help: first_line(arg.get_help().map(ToString::to_string)),
        })
        .collect();
    let positional = command.get_positionals().find(|arg| !arg.is_hide_set());
    let runs_a_command =
        positional.is_some_and(|arg| arg.get_value_hint() == ValueHint::CommandWithArguments);
    let subcommands = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .map(|sub| (sub.get_name().to_owned(), first_line(sub.get_about().map(ToString::to_string))))
        .collect();
    levels.push(Level {
        path: path.clone(),
        options,
        subcommands,
        positional: positional.filter(|_| !runs_a_command).map(values),
        runs_a_command,
    });
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        collect(sub, format!("{path} {}", sub.get_name()), levels);
    }
}

/// The tables both scripts consult, as (key, answer) rows.
pub struct Tables {
    /// `LEVEL:--option` (each spelling) → the kind of its value, for the
    /// options that take one.
    pub option_values: Vec<(Vec<String>, String)>,
    /// `LEVEL` → its subcommands.
    pub subcommands: Vec<(String, Vec<String>)>,
    /// `LEVEL` → the kind of its positional argument (`command`: COMMAND
    /// and its arguments).
    pub positionals: Vec<(String, String)>,
}

/// The tables for these levels.
pub fn tables(levels: &[Level]) -> Tables {
    let mut option_values = Vec::new();
    for level in levels {
        for option in &level.options {
            if let Some(values) = &option.value {
                let keys =
                    option.spellings().iter().map(|spelling| format!("{}:{spelling}", level.path)).collect();
                option_values.push((keys, values.kind()));
            }
        }
    }
    let subcommands = levels
        .iter()
        .filter(|level| !level.subcommands.is_empty())
        .map(|level| (level.path.clone(), level.subcommands.iter().map(|(name, _)| name.clone()).collect()))
        .collect();
    let positionals = levels
        .iter()
        .filter_map(|level| match (&level.positional, level.runs_a_command) {
            (_, true) => Some((level.path.clone(), "command".to_owned())),
            (Some(values), false) => Some((level.path.clone(), values.kind())),
            (None, false) => None,
        })
        .collect();
    Tables { option_values, subcommands, positionals }
}

fn takes_value(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Set | ArgAction::Append)
}

/// What `arg`'s value completes to.
fn values(arg: &Arg) -> Values {
    let possible: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_owned())
        .collect();
    if !possible.is_empty() {
        return Values::Words(possible);
    }
    let value_name = arg.get_value_names().and_then(|names| names.first()).map(|name| name.as_str());
    match (value_name, arg.get_value_hint()) {
        (Some("PROFILE"), _) => Values::Profiles,
        (Some("PID"), _) => Values::Pids,
        (_, ValueHint::DirPath) => Values::Dirs,
        (_, ValueHint::FilePath | ValueHint::AnyPath | ValueHint::ExecutablePath) => Values::Files,
        _ => Values::Nothing,
    }
}

fn first_line(text: Option<String>) -> String {
    text.unwrap_or_default().lines().next().unwrap_or_default().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level<'a>(levels: &'a [Level], path: &str) -> &'a Level {
        levels.iter().find(|level| level.path == path).unwrap_or_else(|| panic!("no level {path}"))
    }

    fn option<'a>(level: &'a Level, long: &str) -> &'a Opt {
        level
            .options
            .iter()
            .find(|o| o.long.as_deref() == Some(long))
            .unwrap_or_else(|| panic!("no --{long}"))
    }

    #[test]
    fn values_are_known_from_the_definition() {
        let levels = levels(&crate::args::command());
        let top = level(&levels, "kawrap");
        assert!(top.runs_a_command);
        assert_eq!(option(top, "profile").value, Some(Values::Profiles));
        assert_eq!(option(top, "profile").short, Some('p'));
        assert_eq!(option(top, "policy").value, Some(Values::Words(vec!["respect".into(), "force".into()])));
        assert_eq!(option(top, "rule").value, Some(Values::Nothing));
        assert_eq!(option(top, "log").value, Some(Values::Files));
        assert_eq!(option(top, "dry-run").value, None);
        assert!(top.subcommands.iter().any(|(name, _)| name == "profiles"));
        let check = level(&levels, "kawrap check");
        assert_eq!(option(check, "pid").value, Some(Values::Pids));
        assert_eq!(option(check, "expect").value, Some(Values::Profiles));
        assert_eq!(level(&levels, "kawrap attach").positional, Some(Values::Pids));
        let env = level(&levels, "kawrap env");
        assert_eq!(option(env, "unit-dir").value, Some(Values::Dirs));
        assert!(
            matches!(&option(env, "shell").value, Some(Values::Words(words)) if words.contains(&"bash".into()))
        );
        assert!(level(&levels, "kawrap bpf").subcommands.iter().any(|(name, _)| name == "status"));
    }

    #[test]
    fn every_directory_option_completes_directories() {
        let levels = levels(&crate::args::command());
        for (path, long) in [
            ("kawrap check", "cgroup"),
            ("kawrap env", "unit-dir"),
            ("kawrap bpf attach", "cgroup"),
            ("kawrap bpf detach", "cgroup"),
            ("kawrap bpf systemd", "unit-dir"),
        ] {
            assert_eq!(option(level(&levels, path), long).value, Some(Values::Dirs), "{path} --{long}");
        }
    }
}
