//! `kawrap env`.
use std::path::PathBuf;

use crate::settings::Settings;
use crate::systemd::SYSTEM_UNIT_DIR;

/// `kawrap env`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct EnvArgs {
    /// What programs started from this shell (or the service) get
    #[command(flatten)]
    pub settings: Settings,

    /// The shell whose syntax to print: sh, bash, zsh (and dash, ksh: all `export`) or fish
    #[arg(long, value_enum, default_value_t = Shell::Sh, conflicts_with = "systemd", help_heading = "Output")]
    pub shell: Shell,

    /// Print the lines that undo `kawrap env`: libkawrap.so leaves LD_PRELOAD (other
    /// preloads stay), the KAWRAP_* variables are unset
    #[arg(
        long,
        help_heading = "Output",
        conflicts_with_all = ["systemd", "profile", "keep_under", "rules", "policy", "user_timeout", "log"]
    )]
    pub unset: bool,

    /// Print a systemd drop-in (`[Service]` with Environment= lines) for a service instead
    #[arg(long, help_heading = "systemd")]
    pub systemd: bool,

    /// The service the drop-in is for (`backup` or `backup.service`): named in its
    /// comments, and where --write puts it
    #[arg(long, value_name = "NAME", requires = "systemd", help_heading = "systemd")]
    pub unit: Option<String>,

    /// Write the drop-in to UNIT-DIR/NAME.service.d/50-kawrap.conf (creating the directory)
    /// instead of printing it; an existing different file is kept unless --force
    #[arg(long, requires = "unit", help_heading = "systemd")]
    pub write: bool,

    /// With --write, replace an existing drop-in that differs
    #[arg(long, requires = "write", help_heading = "systemd")]
    pub force: bool,

    /// Where unit drop-ins go (~/.config/systemd/user for `systemctl --user` units)
    #[arg(
        long,
        value_name = "DIR",
        default_value = SYSTEM_UNIT_DIR,
        value_hint = clap::ValueHint::DirPath,
        help_heading = "systemd"
    )]
    pub unit_dir: PathBuf,
}

/// The shells `kawrap env` prints for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// POSIX sh, and dash and ksh
    #[value(alias = "dash", alias = "ksh")]
    Sh,
    /// bash (the same lines as sh)
    Bash,
    /// zsh (the same lines as sh)
    Zsh,
    /// fish
    Fish,
}

/// The two syntaxes those shells need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// `export VAR='value'`, `unset VAR`.
    Posix,
    /// `set -gx VAR 'value'`, `set -e VAR`.
    Fish,
}

impl Shell {
    /// The syntax this shell reads.
    pub fn syntax(self) -> Syntax {
        match self {
            Shell::Sh | Shell::Bash | Shell::Zsh => Syntax::Posix,
            Shell::Fish => Syntax::Fish,
        }
    }
}

/// The long help's opening (set on the subcommand in `Subcommand`).
pub const LONG_ABOUT: &str = "\
Print the environment kawrap gives a program, as commands for the current shell, so that every \
program started from it afterwards gets the keepalive profile:

  eval \"$(kawrap env --profile recommended)\"       # sh, bash, zsh
  kawrap env --shell fish --profile firewall | source

LD_PRELOAD gets the absolute path of libkawrap.so in front of what it already holds (without \
duplicates); KAWRAP_PROFILE is always written in numbers. `eval \"$(kawrap env --unset)\"` undoes \
it. With --systemd, the same settings are printed as a drop-in for a systemd service.";

const AFTER_LONG_HELP: &str = "\
Examples:
  eval \"$(kawrap env --profile 300/30/5 --rule :3306=firewall)\"
  eval \"$(kawrap env --unset)\"
  kawrap env --systemd --profile 300/30/5 --unit backup            print the drop-in
  kawrap env --systemd --profile 300/30/5 --unit backup --write    install it
  systemctl daemon-reload      then backup.service gets it at its next start (the drop-in says when)

A program started from the shell is covered; sudo, setuid programs and static or Go binaries are \
not (see `kawrap --help`).";
