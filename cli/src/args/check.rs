//! `kawrap check`.
use std::path::PathBuf;

/// `kawrap check`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct CheckArgs {
    /// Only the sockets of this process (repeatable), in whatever network namespace each
    /// socket lives
    #[arg(long, value_name = "PID")]
    pub pid: Vec<u32>,

    /// With --pid, --unit or --cgroup: also the processes they started, and theirs
    ///
    /// For a service whose main process is a shell (`ExecStart=sh -c 'pg_dump …'`) or a
    /// pipeline: the sockets belong to the programs under it.
    #[arg(long)]
    pub children: bool,

    /// Only the sockets of the processes of this systemd unit (`backup` means
    /// `backup.service`): those in a cgroup of that name, or below it
    #[arg(long, value_name = "UNIT")]
    pub unit: Option<String>,

    /// Only the sockets of the processes in this cgroup directory and below it
    /// (/sys/fs/cgroup/system.slice/backup.service)
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub cgroup: Option<PathBuf>,

    /// Only sockets with this port at either end
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Only sockets whose peer address is in this network: ADDR or ADDR/LEN
    /// (10.0.0.0/8, 2001:db8::/32; ::ffff:10.1.2.3 as ss prints it means 10.1.2.3)
    #[arg(long, value_name = "CIDR")]
    pub dst: Option<String>,

    /// Exit 0 only if every selected established socket has this profile (a built-in
    /// name or IDLE/INTVL/CNT[/UT]); exit 1 listing the ones that do not
    ///
    /// A socket matches when SO_KEEPALIVE is on and idle, interval and count (and the
    /// user timeout, if the profile sets one) are the profile's, read with getsockopt on a
    /// copy of the socket. Where no copy may be taken (not root, no ptrace rights), it
    /// matches when its keepalive timer is armed with at most the profile's idle time left.
    /// A socket of the selected processes that cannot be judged at all (its options could
    /// not be read for another reason, or it lives in a network namespace kawrap cannot
    /// list) fails the check, and so does selecting no established socket: a check of
    /// nothing proves nothing.
    #[arg(long, value_name = "PROFILE")]
    pub expect: Option<String>,

    /// Flag every established socket that a load balancer, NAT or firewall forgetting flows
    /// idle TIMEOUT would silently drop; exit 1 if there is one. TIMEOUT: a duration (240s, 4m)
    /// or a middlebox name (azure-lb, aws-nlb, gcp-nat, ipvs, …)
    ///
    /// Such a box drops an idle connection unless a keepalive probe crosses it in time: a
    /// socket is flagged when SO_KEEPALIVE is off, or its idle time (TCP_KEEPIDLE) is TIMEOUT
    /// or more, read with getsockopt on a copy of the socket. Where no copy can be taken (not
    /// root, no ptrace rights) only the kernel's timer is known: no timer means keepalive is
    /// off, and a timer with TIMEOUT or more left is also too late; any other socket cannot be
    /// judged, which also exits 1, saying so. A profile that keeps connections under TIMEOUT:
    /// `kawrap --keep-under TIMEOUT COMMAND`.
    #[arg(long, value_name = "TIMEOUT", conflicts_with = "expect")]
    pub keep_under: Option<String>,

    /// How to print: `table` for people, `json`, or `prometheus`: the text format of
    /// node_exporter's textfile collector
    ///
    /// prometheus: established sockets by keepalive on/off/unknown, the same by process name,
    /// with --keep-under how many such a box would drop (in all and by process), and kawrap's
    /// eBPF attachments with their counters. Write it with --output into the collector's
    /// directory (--collector.textfile.directory), e.g. from a systemd timer.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Table)]
    pub format: Format,

    /// Print JSON instead of a table: the same as --format json
    #[arg(long, conflicts_with = "format")]
    pub json: bool,

    /// Write to FILE instead of stdout, replacing it atomically (a temporary file in the same
    /// directory, then renamed), with mode 0644, so that a reader never sees half of it
    #[arg(short, long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub output: Option<PathBuf>,
}

/// `kawrap check --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Columns for people, with notes and a verdict.
    Table,
    /// One JSON object: the sockets, and the verdicts.
    Json,
    /// The Prometheus text exposition format (0.0.4).
    Prometheus,
}

impl CheckArgs {
    /// The format asked for, `--json` included.
    pub fn format(&self) -> Format {
        if self.json { Format::Json } else { self.format }
    }
}

/// The long help's opening (set on the subcommand in `Subcommand`).
pub const LONG_ABOUT: &str = "\
Show live TCP sockets and whether each will notice a dead peer: its state, owning process, \
whether kawrap is loaded in that process, whether SO_KEEPALIVE is on, the keepalive timer the \
kernel has armed, and (as root, or with ptrace rights over the owner) the socket's exact \
idle/interval/count/user-timeout.

Without a selection it lists the sockets of kawrap's own network namespace, as ss does. With \
--pid, --unit or --cgroup it finds every socket those processes hold, by the descriptors they \
have open, in whatever network namespace each socket lives.

`ss -o` shows the same timer as `timer:(keepalive,4min59sec,0)`: that is the 'ka' you look \
for. It counts down from the idle time after the last packet, so under the recommended profile \
it never shows more than 5 min; without kawrap it shows 119min (the kernel's 2 h default), or \
no timer at all when the program never enabled keepalive.";

const AFTER_LONG_HELP: &str = "\
Examples:
  kawrap check --pid 1234                    the sockets of one process
  kawrap check --unit backup --expect 300/30/5
                                             a service: every process in its cgroup
  kawrap check --pid 1234 --children         a shell and the programs it started
  kawrap check --port 5432 --expect recommended
  kawrap check --dst 10.0.0.0/8 --json
  kawrap check --keep-under azure-lb         what Azure's load balancer (240 s) would drop
  kawrap check --format prometheus --keep-under 350s \
      --output /var/lib/prometheus/node-exporter/kawrap.prom

Columns: KAWRAP says whether kawrap reaches the owning process: `preload` (libkawrap.so is
mapped into it), `bpf` (its cgroup is covered by `kawrap bpf attach` or `kawrap --bpf`), `no`,
or `?` when that cannot be read (run as root). KEEPALIVE is SO_KEEPALIVE and
IDLE/INTVL/CNT[/UT] as getsockopt reads them (`?` when the socket cannot be copied: run as
root); TIMER is the kernel's armed timer and the time left, written as ss writes it
(keepalive, or `on` = retransmit, as ss names them). Process names are shown as ps shows them:
control characters as `?` (--json keeps them exact).

Keepalive cannot keep a connection open through a layer-7 proxy (AWS Application Load
Balancer: 60 s): its idle timeout counts only data, and probes carry none.

Exit status: 0; 1 when --expect found a socket without the profile, one it could not judge,
or no socket to check, or --keep-under found a socket the box would drop or one it could not
judge; 125 when kawrap itself failed (bad option, no such process, --output not writable).";
