//! `kawrap attach`.
/// `kawrap attach`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct AttachArgs {
    /// The profile to give the sockets: a built-in name or IDLE/INTVL/CNT[/UT]
    #[arg(short, long, value_name = "PROFILE", default_value = "recommended")]
    pub profile: String,

    /// Show each TCP socket and what would change, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,

    /// The running process whose TCP sockets get the profile
    #[arg(value_name = "PID")]
    pub pid: u32,
}

/// The long help's opening (set on the subcommand in `Subcommand`).
pub const LONG_ABOUT: &str = "\
Give the TCP sockets of a running process a keepalive profile, without restarting it.

Each socket is copied out of the process with pidfd_getfd(2) and set with setsockopt: \
SO_KEEPALIVE=1, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, and TCP_USER_TIMEOUT when the profile \
has one. The process's own settings are overwritten. Sockets it opens later keep the kernel's \
defaults: to cover those, start the program under kawrap.

Needs Linux ≥ 5.6 and ptrace permission over the process: root, CAP_SYS_PTRACE, or its own user \
when kernel.yama.ptrace_scope allows.";

const AFTER_LONG_HELP: &str = "\
Examples:
  kawrap attach --dry-run 1234               what would change
  kawrap attach --profile firewall 1234
  kawrap attach --profile 60/10/6 $(pgrep -o mysqldump)

Then `kawrap check --pid 1234` or `ss -tno` shows the keepalive timer counting down from the new
idle time.";
