//! The bash completion script: a fixed engine (`ENGINE`) walking the words
//! typed so far, over tables made from the clap definition (which options
//! take which values, each level's options, subcommands and positional).
use std::fmt::Write as _;

use super::{levels, tables};

/// The script for `command` (kawrap's clap definition).
pub fn script(command: &clap::Command) -> String {
    let levels = levels(command);
    let tables = tables(&levels);
    let mut script = String::from(HEADER);
    let rows: Vec<(String, String)> = tables
        .option_values
        .iter()
        .map(|(keys, kind)| (keys.iter().map(|key| quote(key)).collect::<Vec<_>>().join("|"), kind.clone()))
        .collect();
    let doc = "The values option $2 takes at level $1; fails for an option that takes none.";
    table(&mut script, "_kawrap_option_value", "$1:$2", doc, &rows);

    let rows: Vec<(String, String)> = levels
        .iter()
        .map(|level| {
            let words: Vec<String> = level.options.iter().flat_map(|option| option.spellings()).collect();
            (quote(&level.path), words.join(" "))
        })
        .collect();
    table(&mut script, "_kawrap_options", "$1", "The options of level $1.", &rows);

    let rows: Vec<(String, String)> =
        tables.subcommands.iter().map(|(level, names)| (quote(level), names.join(" "))).collect();
    table(&mut script, "_kawrap_subcommands", "$1", "The subcommands of level $1; fails for none.", &rows);

    let rows: Vec<(String, String)> =
        tables.positionals.iter().map(|(level, kind)| (quote(level), kind.clone())).collect();
    let doc = "What the positional argument of level $1 takes (`command`: COMMAND [ARGS]); fails for none.";
    table(&mut script, "_kawrap_positional", "$1", doc, &rows);
    script.push_str(ENGINE);
    script
}

/// A bash function `name` whose `case` on `subject` echoes the word of the
/// row whose pattern matches, and fails when none does.
fn table(script: &mut String, name: &str, subject: &str, doc: &str, rows: &[(String, String)]) {
    let _ = writeln!(script, "# {doc}\n{name}() {{\n    case \"{subject}\" in");
    for (pattern, word) in rows {
        let _ = writeln!(script, "        {pattern}) echo {} ;;", quote(word));
    }
    script.push_str("        *) return 1 ;;\n    esac\n}\n\n");
}

/// A single-quoted bash word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

const HEADER: &str = "\
# bash completion for kawrap, made by `make install` from kawrap's own
# argument definitions.

";

const ENGINE: &str = r#"# Completes the value kind $1 for the word $2.
_kawrap_values() {
    local cur=$2
    case $1 in
        profiles)
            COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" __complete profiles 2>/dev/null)" -- "$cur")) ;;
        pids)
            local pids=(/proc/[0-9]*)
            COMPREPLY=($(compgen -W "${pids[*]#/proc/}" -- "$cur")) ;;
        files)
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -f -- "$cur")) ;;
        dirs)
            compopt -o filenames 2>/dev/null
            COMPREPLY=($(compgen -d -- "$cur")) ;;
        words:*)
            COMPREPLY=($(compgen -W "${1#words:}" -- "$cur")) ;;
        *)
            COMPREPLY=() ;;
    esac
}

# Completes COMMAND and its arguments as after `timeout` or `sudo`: the
# command starts at COMP_WORDS[$1]; bash-completion's _command_offset hands
# the rest to that command's own completion.
_kawrap_command() {
    if declare -F _comp_command_offset >/dev/null; then
        _comp_command_offset "$1"
    elif declare -F _command_offset >/dev/null; then
        _command_offset "$1"
    elif (( $1 == COMP_CWORD )); then
        COMPREPLY=($(compgen -c -- "${COMP_WORDS[COMP_CWORD]}"))
    else
        compopt -o filenames 2>/dev/null
        COMPREPLY=($(compgen -f -- "${COMP_WORDS[COMP_CWORD]}"))
    fi
}

_kawrap() {
    COMPREPLY=()
    local cword=$COMP_CWORD
    # The words as kawrap will get them: bash splits COMP_WORDS at
    # COMP_WORDBREAKS too (`:3306=ssh` is three), so pieces typed without a
    # space between them are joined again; starts[] is each one's first
    # index in COMP_WORDS.
    local -a words=() starts=()
    local i rest lead pos=0
    for ((i = 0; i <= cword; i++)); do
        rest=${COMP_LINE:pos}
        lead=${rest%%[![:space:]]*}
        pos=$((pos + ${#lead}))
        if ((i > 0 && ${#lead} == 0 && ${#words[@]} > 0)); then
            words[${#words[@]} - 1]+=${COMP_WORDS[i]}
        else
            words+=("${COMP_WORDS[i]}")
            starts+=("$i")
        fi
        pos=$((pos + ${#COMP_WORDS[i]}))
    done
    local n=${#words[@]} current=${words[${#words[@]} - 1]}
    local level=kawrap first=1 expect= k word kind
    for ((k = 1; k < n - 1; k++)); do
        word=${words[k]}
        if [[ -n $expect ]]; then
            expect=
            continue
        fi
        if [[ $word == -- ]] && [[ $(_kawrap_positional "$level") == command ]]; then
            _kawrap_command "${starts[k + 1]}"
            return
        fi
        if [[ $word == -* ]]; then
            first=
            if [[ $word != *=* ]] && _kawrap_option_value "$level" "$word" >/dev/null; then
                expect=1
            fi
            continue
        fi
        # A subcommand only as the first word after its parent.
        if [[ -n $first && " $(_kawrap_subcommands "$level") " == *" $word "* ]]; then
            level="$level $word"
            continue
        fi
        first=
        if [[ $(_kawrap_positional "$level") == command ]]; then
            _kawrap_command "${starts[k]}"
            return
        fi
    done
    if [[ -n $expect ]]; then
        _kawrap_values "$(_kawrap_option_value "$level" "${words[n - 2]}")" "$current"
    elif [[ $current == --*=* ]]; then
        kind=$(_kawrap_option_value "$level" "${current%%=*}") && _kawrap_values "$kind" "${current#*=}"
    elif [[ $current == -* ]]; then
        COMPREPLY=($(compgen -W "$(_kawrap_options "$level")" -- "$current"))
    elif [[ -n $first ]] && _kawrap_subcommands "$level" >/dev/null; then
        COMPREPLY=($(compgen -W "$(_kawrap_subcommands "$level")" -- "$current"))
        if [[ $(_kawrap_positional "$level") == command ]]; then
            COMPREPLY+=($(compgen -c -- "$current"))
        fi
    elif [[ $(_kawrap_positional "$level") == command ]]; then
        _kawrap_command "${starts[n - 1]}"
    elif kind=$(_kawrap_positional "$level"); then
        _kawrap_values "$kind" "$current"
    fi
}

complete -F _kawrap kawrap
"#;
