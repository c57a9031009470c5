//! `kawrap check`.
/// `kawrap check`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct CheckArgs {
    /// Only the sockets of this process
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,

    /// Only sockets with this port at either end
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Only sockets whose peer address is in this network: ADDR or ADDR/LEN
    /// (10.0.0.0/8, 2001:db8::/32)
    #[arg(long, value_name = "CIDR")]
    pub dst: Option<String>,

    /// Exit 0 only if every selected established socket has this profile (a built-in
    /// name or IDLE/INTVL/CNT[/UT]); exit 1 listing the ones that do not
    ///
    /// A socket matches when SO_KEEPALIVE is on and idle, interval and count (and the
    /// user timeout, if the profile sets one) are the profile's, read with getsockopt on a
    /// copy of the socket. Where no copy can be taken (not root, no ptrace rights), it
    /// matches when its keepalive timer is armed with at most the profile's idle time left.
    /// Selecting no established socket at all is also a failure: a check of nothing proves
    /// nothing.
    #[arg(long, value_name = "PROFILE")]
    pub expect: Option<String>,

    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// The long help's opening (set on the subcommand in `Subcommand`).
pub const LONG_ABOUT: &str = "\
Show live TCP sockets and whether each will notice a dead peer: its state, owning process, \
whether SO_KEEPALIVE is on, the keepalive timer the kernel has armed, and (as root, or with \
ptrace rights over the owner) the socket's exact idle/interval/count/user-timeout.

`ss -o` shows the same timer as `timer:(keepalive,4min59sec,0)`: that is the 'ka' you look \
for. It counts down from the idle time after the last packet, so under the recommended profile \
it never shows more than 5 min; without kawrap it shows 119min (the kernel's 2 h default), or \
no timer at all when the program never enabled keepalive.";

const AFTER_LONG_HELP: &str = "\
Examples:
  kawrap check --pid 1234                    the sockets of one process
  kawrap check --port 5432 --expect recommended
  kawrap check --dst 10.0.0.0/8 --json

Columns: KEEPALIVE is SO_KEEPALIVE and IDLE/INTVL/CNT[/UT] as getsockopt reads them (`?` when
the socket cannot be copied: run as root); TIMER is the kernel's armed timer and the time left
(keepalive, or `on` = retransmit, as ss names them).

Exit status: 0; 1 when --expect found a socket without the profile (or no socket to check);
125 when kawrap itself failed (bad option, no such process).";
