//! The fish completion script: `complete` lines per level, guarded by a
//! function that walks the tokens typed so far (`ENGINE`), over tables made
//! from the clap definition.
use std::fmt::Write as _;

use super::{Values, levels, tables};

/// The script for `command` (kawrap's clap definition).
pub fn script(command: &clap::Command) -> String {
    let levels = levels(command);
    let mut script = String::from(HEADER);

    let tables = tables(&levels);
    let cases: Vec<(String, String)> = tables
        .option_values
        .iter()
        .map(|(keys, kind)| (keys.iter().map(|key| quote(key)).collect::<Vec<_>>().join(" "), kind.clone()))
        .collect();
    table(&mut script, "__kawrap_option_value", "$argv[1]:$argv[2]", &cases);
    let cases: Vec<(String, String)> =
        tables.subcommands.iter().map(|(level, names)| (quote(level), names.join("\n"))).collect();
    table(&mut script, "__kawrap_subcommands", "$argv[1]", &cases);
    let cases: Vec<(String, String)> =
        tables.positionals.iter().map(|(level, kind)| (quote(level), kind.clone())).collect();
    table(&mut script, "__kawrap_positional", "$argv[1]", &cases);
    script.push_str(ENGINE);

    script.push_str(
        "\n# Nothing but what is listed: a file only where a file is meant.\ncomplete -c kawrap -f\n",
    );
    for level in &levels {
        let at = quote(&format!("__kawrap_at {}", quote(&level.path)));
        let _ = writeln!(script, "\n# {}", level.path);
        for option in &level.options {
            let mut line = format!("complete -c kawrap -n {at}");
            if let Some(long) = &option.long {
                let _ = write!(line, " -l {long}");
            }
            if let Some(short) = option.short {
                let _ = write!(line, " -s {short}");
            }
            if let Some(values) = &option.value {
                line.push_str(&arguments(values));
            }
            if !option.help.is_empty() {
                let _ = write!(line, " -d {}", quote(&option.help));
            }
            let _ = writeln!(script, "{line}");
        }
        let first = quote(&format!("__kawrap_first {}", quote(&level.path)));
        for (name, about) in &level.subcommands {
            let _ = writeln!(script, "complete -c kawrap -n {first} -a {} -d {}", quote(name), quote(about));
        }
        if level.runs_a_command {
            let command = quote(&format!("__kawrap_command_here {}", quote(&level.path)));
            let _ = writeln!(script, "complete -c kawrap -n {command} -a '(__kawrap_complete_command)'");
        } else if let Some(values) = &level.positional {
            let positional = quote(&format!("__kawrap_positional_here {}", quote(&level.path)));
            let _ = writeln!(script, "complete -c kawrap -n {positional}{}", arguments(values));
        }
    }
    script
}

/// The `complete` arguments for a value of this kind.
fn arguments(values: &Values) -> String {
    match values {
        Values::Profiles => " -x -a '(__kawrap_profiles)'".to_owned(),
        Values::Pids => " -x -a '(__fish_complete_pids)'".to_owned(),
        Values::Words(words) => format!(" -x -a {}", quote(&words.join(" "))),
        Values::Files => " -r -F".to_owned(),
        Values::Dirs => " -x -a '(__fish_complete_directories)'".to_owned(),
        Values::Nothing => " -x".to_owned(),
    }
}

/// A fish function `name` whose `switch` on `subject` prints the lines of
/// the case that matches, and fails when none does.
fn table(script: &mut String, name: &str, subject: &str, cases: &[(String, String)]) {
    let _ = writeln!(script, "function {name}\n    switch \"{subject}\"");
    for (pattern, lines) in cases {
        let _ = writeln!(script, "        case {pattern}");
        for line in lines.lines() {
            let _ = writeln!(script, "            echo {}", quote(line));
        }
    }
    script.push_str("        case '*'\n            return 1\n    end\nend\n\n");
}

/// A single-quoted fish word: only `\` and `'` are special inside.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', r"\\").replace('\'', r"\'"))
}

const HEADER: &str = "\
# fish completion for kawrap, made by `make install` from kawrap's own
# argument definitions.

";

const ENGINE: &str = r#"# Where the typed tokens leave the line: the level ("kawrap", "kawrap bpf",
# …) and `first` when no word has come at it yet; or `command N` once
# COMMAND started at token N (kawrap itself not counted).
function __kawrap_state
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l level kawrap
    set -l first first
    set -l expect 0
    set -l i 0
    for token in $tokens
        set i (math $i + 1)
        if test $expect = 1
            set expect 0
            continue
        end
        if test "$token" = --; and test "$(__kawrap_positional $level)" = command
            echo command (math $i + 1)
            return
        end
        if string match -q -- '-*' $token
            set first
            if not string match -q -- '*=*' $token; and __kawrap_option_value $level $token >/dev/null
                set expect 1
            end
            continue
        end
        # A subcommand only as the first word after its parent.
        if test -n "$first"; and contains -- $token (__kawrap_subcommands $level)
            set level "$level $token"
            continue
        end
        set first
        if test "$(__kawrap_positional $level)" = command
            echo command $i
            return
        end
    end
    echo $level
    echo $first
end

# At level $argv[1], COMMAND not started.
function __kawrap_at
    set -l state (__kawrap_state)
    test "$state[1]" = "$argv[1]"
end

# At level $argv[1] with no word after it yet: its subcommands.
function __kawrap_first
    set -l state (__kawrap_state)
    test "$state[1]" = "$argv[1]"; and test "$state[2]" = first
end

# Where level $argv[1]'s positional goes: no option is waiting for a value.
function __kawrap_positional_here
    __kawrap_at $argv[1]; and not string match -q -- '-*' (commandline -ct)
end

# Where COMMAND or its arguments go.
function __kawrap_command_here
    set -l state (__kawrap_state)
    string match -q 'command *' -- "$state[1]"; or __kawrap_positional_here $argv[1]
end

# COMMAND and its arguments, completed as after `sudo` or `timeout`.
function __kawrap_complete_command
    set -l state (__kawrap_state)
    set -l tokens (commandline -opc) (commandline -ct)
    set -e tokens[1]
    if string match -q 'command *' -- "$state[1]"
        set tokens $tokens[(string split ' ' -- $state[1])[2]..-1]
    else
        set tokens (commandline -ct)
    end
    __fish_complete_subcommand --commandline $tokens
end

# The profile names: built-in and from profiles.toml.
function __kawrap_profiles
    set -l kawrap (commandline -opc)[1]
    command $kawrap __complete profiles 2>/dev/null
end
"#;
