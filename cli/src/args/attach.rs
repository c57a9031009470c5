//! `kawrap attach`.
/// `kawrap attach`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct AttachArgs {
    /// The profile to give the sockets: a built-in name or IDLE/INTVL/CNT[/UT]
    #[arg(short, long, value_name = "PROFILE", default_value = "recommended")]
    pub profile: String,

    /// Who wins where a program set keepalive options itself: `respect` (the program) or
    /// `force` (the profile), as for `kawrap COMMAND`
    ///
    /// Under `respect` an option whose value differs from what the kernel gives a socket
    /// nobody configured (the sysctls net.ipv4.tcp_keepalive_* of the socket's network
    /// namespace; no user timeout) was set by the program, and is left as it is; the others
    /// get the profile's. SO_KEEPALIVE is always turned on: a program's SO_KEEPALIVE=0
    /// cannot be told apart from never having turned it on.
    #[arg(long, value_name = "POLICY", default_value = "respect", value_parser = crate::settings::PolicyParser)]
    pub policy: String,

    /// Also the processes each PID started, and theirs (a shell running a pipeline, a
    /// service's `sh -c`)
    #[arg(long)]
    pub children: bool,

    /// Show each TCP socket and what would change, and change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,

    /// The running processes whose TCP sockets get the profile
    #[arg(value_name = "PID", required = true, num_args = 1..)]
    pub pids: Vec<u32>,
}

/// The long help's opening (set on the subcommand in `Subcommand`).
pub const LONG_ABOUT: &str = "\
Give the TCP sockets of running processes a keepalive profile, without restarting them.

Each socket is copied out of the process with pidfd_getfd(2) and set with setsockopt: \
SO_KEEPALIVE=1, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, and TCP_USER_TIMEOUT when the profile \
has one. Under the default policy `respect`, values the program set itself are kept, as under \
`kawrap COMMAND`; `--policy force` replaces them. Each socket is printed as it is changed, so \
what was done is on record even if kawrap stops halfway (the process ends meanwhile).

A listening socket that is changed passes its new values on to every connection it accepts \
afterwards (the kernel copies a listener's options). Sockets the program opens itself later \
keep the kernel's defaults: to cover those, start the program under kawrap, or attach the eBPF \
mode to its cgroup (`kawrap bpf attach`).

Needs Linux ≥ 5.6 and ptrace permission over the process: root, CAP_SYS_PTRACE, or its own user \
when kernel.yama.ptrace_scope allows.";

const AFTER_LONG_HELP: &str = "\
Examples:
  kawrap attach --dry-run 1234               what would change
  kawrap attach --profile firewall 1234 1240
  kawrap attach --profile 60/10/6 $(pgrep -o mysqldump)
  kawrap attach --children $(systemctl show -p MainPID --value backup)
                                             a service's shell and what it runs

Then `kawrap check --pid 1234` or `ss -tno` shows the keepalive timer counting down from the new
idle time.

Exit status: 0; 125 when kawrap failed (bad option, no such process, a socket the kernel
refused): what was changed before is printed all the same.";
