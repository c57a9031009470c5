//! `kawrap [OPTIONS] [--] COMMAND [ARGS]...`: the launcher's arguments, and
//! kawrap's own help texts (the launcher is what `kawrap` does).
use std::ffi::OsString;
use std::fmt::Write as _;

use clap::Args;

use crate::output::columns;
use crate::profile_table;
use crate::settings::Settings;

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
    /// setuid programs, and everything COMMAND starts, for as long as any of it runs (even if
    /// kawrap is killed). kawrap behaves as if it had become COMMAND: signals sent to it are
    /// passed on, ignored ones stay ignored, its exit status is COMMAND's, and if COMMAND is
    /// killed by a signal, kawrap dies by the same one. COMMAND's environment loses
    /// libkawrap.so and the KAWRAP_* variables, so that an exported shim cannot override the
    /// profile. The cgroup is removed once no process is left in it (by a later kawrap if this
    /// one is gone).
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

/// kawrap's long help, opening.
pub const LONG_ABOUT: &str = "\
Run a program with TCP keepalive settings that notice a dead peer in minutes, not hours.

Linux waits 2 h 11 min before it gives up on a connection whose peer vanished (a rebooted \
server, a firewall that forgot the flow). kawrap preloads libkawrap.so into COMMAND: every TCP \
socket the program opens gets SO_KEEPALIVE and the profile's timings, so a backup, a database \
client or an SSH session fails in minutes instead of hanging. Nothing in the program changes; \
kawrap then becomes the program (exec), so its exit status is the program's.";

/// What `-h` shows after the options.
pub const AFTER_SHORT_HELP: &str = "\
Examples:
  kawrap mysqldump -h db --all-databases > backup.sql
  kawrap --profile firewall psql \"host=db dbname=app\"
  kawrap --profile 300/30/5 --rule :3306=60/10/6 -- ./sync.sh

`kawrap --help` shows the profiles, the rule syntax, the policies and how to check that it works.";

/// The long help's closing part: its profile list is `kawrap profiles`'s
/// own rows for the built-ins, so the two can never disagree.
pub fn after_long_help() -> String {
    let mut text = String::from("Profiles (--profile NAME, or `kawrap profiles`):\n");
    for line in columns(&profile_table::builtin_rows()).lines() {
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
  With --bpf the kernel applies the settings: libkawrap.so leaves LD_PRELOAD (other preloads
  stay), the KAWRAP_* variables are removed and KAWRAP_LIB is ignored.

A program or a subcommand?
  `kawrap profiles` lists the profiles. To run a program called `profiles`, write
  `kawrap -- profiles`; a subcommand is recognised only as the first word after kawrap.

What kawrap cannot reach (it warns once before running such a program; -q silences it):
  Go programs and statically linked programs (they do not use the C library's socket
  functions), setuid/setgid or file-capability programs and anything run through sudo or
  doas (the loader or sudo drops LD_PRELOAD; write `sudo kawrap … CMD`). For those, the eBPF
  mode applies the same profile from the kernel, whatever the program is made of (root):
  `kawrap --bpf [OPTIONS] -- COMMAND` for one command and what it starts, `kawrap bpf attach
  --cgroup DIR` for a whole service. A program already running: `kawrap attach PID`.

Exit status:
  The program's own status when it ran; 125 when kawrap itself failed (invalid option,
  libkawrap.so not found); 126 when COMMAND was found but cannot be executed; 127 when
  COMMAND was not found.";
