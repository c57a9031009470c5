//! Every command-line argument kawrap accepts, with the help a person reads:
//! clap definitions and help texts only. Nothing here runs a command; the
//! help's data (the built-in profiles) comes from the layers below.
//!
//! Adding a subcommand: one variant in [`Subcommand`] with its `…Args`
//! struct in a file of its own here, one module in `commands/` with
//! `run(&…Args) -> Result<ExitCode, Error>`, and one arm in `main`.
use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches, Parser};

pub mod attach;
pub mod bpf;
pub mod check;
pub mod env;
pub mod profiles;
pub mod run;

use run::{AFTER_SHORT_HELP, LONG_ABOUT, LaunchArgs, after_long_help};

/// kawrap's arguments: either a subcommand, or options and a program to run.
#[derive(Debug, Parser)]
#[command(
    name = "kawrap",
    version,
    about = "Run a program with TCP keepalive settings that notice a dead peer in minutes, not hours",
    long_about = LONG_ABOUT,
    after_help = AFTER_SHORT_HELP,
    subcommand_negates_reqs = true,
    arg_required_else_help = true,
    // `kawrap help` would shadow a program called `help`; -h/--help do the job.
    disable_help_subcommand = true,
    args_conflicts_with_subcommands = true,
    subcommand_value_name = "SUBCOMMAND",
    subcommand_help_heading = "Subcommands",
    override_usage = "kawrap [OPTIONS] [--] COMMAND [ARGS]...\n       kawrap <SUBCOMMAND>"
)]
pub struct Cli {
    /// Options and the program, when no subcommand is given.
    #[command(flatten)]
    pub launch: LaunchArgs,

    /// A subcommand instead of a program.
    #[command(subcommand)]
    pub subcommand: Option<Subcommand>,
}

/// kawrap's subcommands. The first word after `kawrap` is one of these
/// only when nothing comes before it; `kawrap -- profiles` runs a program
/// called `profiles`.
#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// List the profiles (built-in, and your own from profiles.toml): values, how fast each
    /// notices a dead peer, what it is for
    Profiles(profiles::ProfilesArgs),
    /// Show live TCP sockets: keepalive on?, the timer, the exact options; --expect PROFILE to verify
    // A variant's doc comment replaces the subcommand's long help: set it here.
    #[command(long_about = check::LONG_ABOUT)]
    Check(check::CheckArgs),
    /// Give the TCP sockets of running processes a keepalive profile (pidfd_getfd + setsockopt)
    #[command(long_about = attach::LONG_ABOUT)]
    Attach(attach::AttachArgs),
    /// Print the environment for the current shell (eval "$(kawrap env …)"), or a systemd drop-in
    #[command(long_about = env::LONG_ABOUT)]
    Env(env::EnvArgs),
    /// The eBPF mode for a whole cgroup (e.g. a systemd service): attach, detach, status
    #[command(long_about = bpf::LONG_ABOUT)]
    Bpf(bpf::BpfArgs),
}

/// The clap command with the generated parts of the help added.
pub fn command() -> clap::Command {
    Cli::command().after_long_help(after_long_help())
}

/// Parses arguments; `Err` for `--help`, `--version` and usage errors alike,
/// which clap knows how to print.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut command = command();
    let matches = command.try_get_matches_from_mut(args)?;
    Cli::from_arg_matches(&matches).map_err(|error| error.format(&mut command))
}

/// True if `name` is one of kawrap's subcommands (so `kawrap name` does not
/// run a program called `name`).
pub fn is_subcommand(name: &str) -> bool {
    Cli::command().get_subcommands().any(|sub| sub.get_name() == name)
}

/// The subcommand `name` looks like a typo of (`profile`, `chek`), if any:
/// one edit away (a letter missing, extra, changed, or two swapped), two
/// for names of five letters or more.
pub fn similar_subcommand(name: &str) -> Option<String> {
    let typed = name.to_ascii_lowercase();
    Cli::command()
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .filter(|sub| sub != name)
        .map(|sub| (edit_distance(&typed, &sub), sub))
        .filter(|(distance, sub)| *distance <= if sub.len() >= 5 { 2 } else { 1 })
        .min()
        .map(|(_, sub)| sub)
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and swaps of neighbours each count one.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1).min(rows[i][j - 1] + 1).min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use kawrap_core::BUILTIN_PROFILES;

    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn a_bare_word_is_the_subcommand_but_not_after_dashes() {
        let cli = parse_from(["kawrap", "profiles"]).unwrap();
        assert!(matches!(cli.subcommand, Some(Subcommand::Profiles(_))));

        let cli = parse_from(["kawrap", "--", "profiles"]).unwrap();
        assert!(cli.subcommand.is_none());
        assert_eq!(cli.launch.command, ["profiles"]);
    }

    #[test]
    fn everything_after_the_command_belongs_to_it() {
        let cli = parse_from(["kawrap", "-p", "ssh", "sh", "-c", "exit 7", "--profile", "x"]).unwrap();
        assert_eq!(cli.launch.settings.keepalive.profile, "ssh");
        assert_eq!(cli.launch.command, ["sh", "-c", "exit 7", "--profile", "x"]);
    }

    #[test]
    fn rules_accumulate() {
        let cli = parse_from(["kawrap", "--rule", ":1=ssh", "-r", ":2=ssh,:3=ssh", "true"]).unwrap();
        assert_eq!(cli.launch.settings.keepalive.rules, [":1=ssh", ":2=ssh,:3=ssh"]);
    }

    #[test]
    fn a_command_is_required_without_a_subcommand() {
        assert!(parse_from(["kawrap", "--profile", "ssh"]).is_err());
    }

    #[test]
    fn is_subcommand_knows_profiles() {
        assert!(is_subcommand("profiles"));
        assert!(!is_subcommand("psql"));
    }

    #[test]
    fn typos_of_subcommands() {
        for (typed, meant) in [
            ("profile", "profiles"),
            ("chek", "check"),
            ("chekc", "check"),
            ("ENV", "env"),
            ("atach", "attach"),
        ] {
            assert_eq!(similar_subcommand(typed).as_deref(), Some(meant), "{typed}");
        }
        for unlike in ["psql", "profiles", "ls", "sh", "true", "cheese", "bash"] {
            assert_eq!(similar_subcommand(unlike), None, "{unlike}");
        }
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }

    #[test]
    fn long_help_lists_every_builtin_profile() {
        let help = command().render_long_help().to_string();
        for named in BUILTIN_PROFILES {
            assert!(help.contains(named.name), "{} missing from --help", named.name);
        }
        assert!(help.contains("kawrap -- profiles"));
        assert!(help.contains("timer:(keepalive,4min59sec,0)"));
    }
}
