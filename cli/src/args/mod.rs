//! Every command-line argument kawrap accepts, with the help a person reads.
//!
//! Adding a subcommand: one variant in [`Subcommand`] with its `…Args`
//! struct below it, one module with `run(&…Args) -> Result<ExitCode, Error>`,
//! and one arm in `main`.
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser};

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
    Profiles(ProfilesArgs),
    /// Show live TCP sockets: keepalive on?, the timer, the exact options; --expect PROFILE to verify
    // A variant's doc comment replaces the subcommand's long help: set it here.
    #[command(long_about = crate::commands::check::LONG_ABOUT)]
    Check(crate::commands::check::CheckArgs),
    /// Give the TCP sockets of a running process a keepalive profile (pidfd_getfd + setsockopt)
    #[command(long_about = crate::commands::attach::LONG_ABOUT)]
    Attach(crate::commands::attach::AttachArgs),
    /// Print the environment for the current shell (eval "$(kawrap env …)"), or a systemd drop-in
    #[command(long_about = crate::commands::env::LONG_ABOUT)]
    Env(crate::commands::env::EnvArgs),
    /// The eBPF mode for a whole cgroup (e.g. a systemd service): attach, detach, status
    #[command(long_about = crate::commands::bpf::LONG_ABOUT)]
    Bpf(crate::commands::bpf::BpfArgs),
}

/// `kawrap profiles`.
#[derive(Debug, Args)]
pub struct ProfilesArgs {
    /// Print a JSON array (name, idle_secs, interval_secs, count, user_timeout_ms,
    /// detection_secs, detection_time, purpose) instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Running a program: `kawrap [OPTIONS] [--] COMMAND [ARGS]...`.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// The program to run, then its arguments; everything after COMMAND is passed to it
    /// untouched
    ///
    /// Found in PATH unless it contains a `/`. Put `--` before it when it starts with `-`
    /// or is named like a kawrap subcommand (`kawrap -- profiles`).
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        num_args = 1..,
        // Shell completions offer program names, then that program's arguments.
        value_hint = clap::ValueHint::CommandWithArguments
    )]
    pub command: Vec<OsString>,

    /// What the program's sockets get
    #[command(flatten)]
    pub settings: Settings,

    /// Use the eBPF mode instead of LD_PRELOAD (root): run COMMAND in a transient cgroup v2
    /// whose TCP connections get the profile from a sock_ops program
    ///
    /// Reaches what LD_PRELOAD cannot: Go and statically linked programs, raw system calls,
    /// setuid programs, and everything COMMAND starts. kawrap waits for COMMAND, passes
    /// SIGINT/SIGTERM/SIGHUP on to it, exits with its status and removes the cgroup.
    #[arg(long, conflicts_with_all = ["dry_run", "log", "lib"])]
    pub bpf: bool,

    /// Print the environment kawrap would set (shell-quoted) and the command, then exit
    /// without running it
    ///
    /// Everything is checked as for a real run: the profile, the rules, the library and
    /// that the command can be found. The output is a shell script with the same effect.
    #[arg(long, help_heading = "Output")]
    pub dry_run: bool,

    /// Before running the program, print one line to stderr: the profile in numbers, how
    /// long a dead peer takes to notice, and which libkawrap.so is preloaded
    #[arg(short, long, conflicts_with = "quiet", help_heading = "Output")]
    pub verbose: bool,

    /// Do not print kawrap's warnings (such as "setuid programs ignore LD_PRELOAD");
    /// errors are still printed
    #[arg(short, long, help_heading = "Output")]
    pub quiet: bool,
}

/// The keepalive settings and where the library is: what ends up in the
/// program's environment. Shared by every subcommand that sets them up.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Keepalive settings")]
pub struct Settings {
    /// What every TCP socket gets.
    #[command(flatten)]
    pub keepalive: Keepalive,

    /// Append one line per socket kawrap changes to FILE (made absolute, created if missing)
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// The libkawrap.so to preload [default: next to the kawrap binary, then
    /// ../lib/kawrap/ from it]
    #[arg(long, value_name = "PATH", env = "KAWRAP_LIB", hide_env_values = true)]
    pub lib: Option<PathBuf>,
}

/// The profile, rules, policy and user timeout: the same for the shim and
/// for the eBPF mode.
#[derive(Clone, Debug, Args)]
pub struct Keepalive {
    /// Keepalive profile for every TCP connection: a built-in name or IDLE/INTVL/CNT[/UT]
    ///
    /// Built-in names: `kawrap profiles` lists them, with your own. IDLE is the seconds of
    /// silence before the first probe, INTVL the seconds between probes, CNT the unanswered
    /// probes before the connection is dropped (IDLE and INTVL 1..=32767, CNT 1..=127).
    /// UT, optional, is TCP_USER_TIMEOUT: `auto`, milliseconds, or a duration like `450s`.
    #[arg(short, long, value_name = "PROFILE", default_value = "recommended")]
    pub profile: String,

    /// A different profile for some destinations: DEST=PROFILE, repeatable or
    /// comma-separated; the first matching rule wins
    ///
    /// DEST is `:PORT`, `ADDR[/LEN]`, `V4ADDR[/LEN]:PORT` or `[V6ADDR][/LEN]:PORT`; names are
    /// not resolved. Connections that no rule matches get --profile.
    #[arg(short, long = "rule", value_name = "DEST=PROFILE")]
    pub rules: Vec<String>,

    /// Who wins when the program sets keepalive options itself: `respect` (the program) or
    /// `force` (the profile)
    #[arg(long, value_name = "POLICY", default_value = "respect")]
    pub policy: String,

    /// Add TCP_USER_TIMEOUT to --profile, or replace the one it has: `auto`, milliseconds,
    /// or a duration (`450s`, `7m30s`)
    ///
    /// `auto` is the profile's detection time. It applies to --profile only; a rule carries
    /// its own (`:3306=300/30/5/auto`). It drops a connection whose sent data stays
    /// unacknowledged that long, which keepalive alone cannot notice; `0` leaves the
    /// kernel's default (off).
    #[arg(long, value_name = "UT")]
    pub user_timeout: Option<String>,
}

const LONG_ABOUT: &str = "\
Run a program with TCP keepalive settings that notice a dead peer in minutes, not hours.

Linux waits 2 h 11 min before it gives up on a connection whose peer vanished (a rebooted \
server, a firewall that forgot the flow). kawrap preloads libkawrap.so into COMMAND: every TCP \
socket the program opens gets SO_KEEPALIVE and the profile's timings, so a backup, a database \
client or an SSH session fails in minutes instead of hanging. Nothing in the program changes; \
kawrap then becomes the program (exec), so its exit status is the program's.";

const AFTER_SHORT_HELP: &str = "\
Examples:
  kawrap mysqldump -h db --all-databases > backup.sql
  kawrap --profile firewall psql \"host=db dbname=app\"
  kawrap --profile 300/30/5 --rule :3306=60/10/6 -- ./sync.sh

`kawrap --help` shows the profiles, the rule syntax, the policies and how to check that it works.";

/// The long help's closing part: its profile list is `kawrap profiles`'s
/// own rows for the built-ins, so the two can never disagree.
fn after_long_help() -> String {
    let mut text = String::from("Profiles (--profile NAME, or `kawrap profiles`):\n");
    for line in crate::output::columns(&crate::commands::profiles::builtin_rows()).lines() {
        let _ = writeln!(text, "  {line}");
    }
    text.push_str(AFTER_LONG_HELP);
    text
}

const AFTER_LONG_HELP: &str = "
  Or IDLE/INTVL/CNT: after IDLE seconds without a packet the kernel probes the peer every
  INTVL seconds and drops the connection after CNT unanswered probes, so a dead peer is
  noticed after IDLE + INTVL × CNT seconds. A fourth field sets TCP_USER_TIMEOUT: `auto`
  (that same time), milliseconds, or `450s`, `7m30s`. It alone notices a peer that dies while
  data is being sent, but it also drops a connection whose peer stays unreachable or stops
  reading that long, so it is opt-in: --profile 300/30/5/auto or --user-timeout auto.

Rules (--rule DEST=PROFILE, first match wins):
  :3306=firewall                any address, port 3306
  10.0.0.0/8=60/10/6            a network, any port
  192.0.2.7:5432=ssh            one IPv4 address and port
  [2001:db8::]/32:5432=ssh      an IPv6 network and port
  Several at once: --rule ':3306=firewall,10.0.0.0/8=60/10/6'. Addresses are matched as the
  program connects to them (names are not resolved; IPv4-mapped IPv6 matches IPv4 rules).
  Connections no rule matches, and listening sockets, get --profile.

Policy (--policy):
  respect  (default) kawrap replaces the kernel's defaults, but a keepalive option the program
           sets itself stands: curl's own 60 s idle is kept, mysqldump's bare SO_KEEPALIVE=1
           gets the profile's timings.
  force    the profile always wins, even over the program's own setsockopt (SO_KEEPALIVE=0
           included).

Checking that it works:
  While the program is connected, `ss -tno` shows the keepalive timer counting down from the
  profile's idle time, e.g. for the recommended profile (idle 300 s):
    ESTAB 0 0 10.0.0.5:41230 10.0.0.9:3306 timer:(keepalive,4min59sec,0)
  Without kawrap the same line says timer:(keepalive,119min,0), or has no timer at all.
  --log FILE records every socket kawrap changes; -v prints what is about to be applied.

Environment:
  kawrap sets LD_PRELOAD (libkawrap.so first, other preloads kept), KAWRAP_PROFILE (always in
  numbers) and KAWRAP_POLICY; KAWRAP_RULES and KAWRAP_LOG when given, else removes them; and
  removes KAWRAP_DISABLE: the program gets exactly what the command line says, whatever was
  exported before. Other variables are passed on untouched. KAWRAP_LIB=PATH is --lib PATH.

A program or a subcommand?
  `kawrap profiles` lists the profiles. To run a program called `profiles`, write
  `kawrap -- profiles`; a subcommand is recognised only as the first word after kawrap.

What kawrap cannot reach (it warns once before running such a program; -q silences it):
  Go programs and statically linked programs (they do not use the C library's socket
  functions), musl programs (libkawrap.so is built for glibc), setuid/setgid or
  file-capability programs and anything run through sudo or doas (the loader or sudo drops
  LD_PRELOAD; write `sudo kawrap … CMD`). For the others: `kawrap attach PID` once the
  program runs, or the system-wide sysctl net.ipv4.tcp_keepalive_*.

Exit status:
  the program's own status when it ran; 125 when kawrap itself failed (invalid option,
  libkawrap.so not found); 126 when COMMAND was found but cannot be executed; 127 when
  COMMAND was not found.";

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
    fn long_help_lists_every_builtin_profile() {
        let help = command().render_long_help().to_string();
        for named in BUILTIN_PROFILES {
            assert!(help.contains(named.name), "{} missing from --help", named.name);
        }
        assert!(help.contains("kawrap -- profiles"));
        assert!(help.contains("timer:(keepalive,4min59sec,0)"));
    }
}
