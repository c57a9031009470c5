//! `kawrap bpf attach|detach|pin|unpin|systemd|status`.
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::settings::Keepalive;
use crate::systemd::SYSTEM_UNIT_DIR;

/// `kawrap bpf …`.
#[derive(Debug, Args)]
pub struct BpfArgs {
    #[command(subcommand)]
    pub action: BpfAction,
}

/// What `detach` removes.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct DetachTarget {
    /// The cgroup v2 directory
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::DirPath)]
    pub cgroup: Option<PathBuf>,
    /// Everything: kawrap's programs leave every cgroup they were attached to with `attach`
    /// or through a pinned copy, and every pin goes (running `kawrap --bpf` commands keep
    /// theirs until they end)
    #[arg(long)]
    pub all: bool,
}

/// What `unpin` removes.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct UnpinTarget {
    /// The copy pinned with `kawrap bpf pin --name NAME`; services it is attached to keep it
    /// until they restart
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The programs pinned for reuse by `kawrap --bpf` and `kawrap bpf attach`; the next run
    /// loads them again
    #[arg(long)]
    pub cache: bool,
}

/// What to do with the eBPF programs.
#[derive(Debug, Subcommand)]
pub enum BpfAction {
    /// Attach to an existing cgroup: every TCP connection made in it from now on gets the
    /// profile, until the cgroup is removed (a service's restart); again to change the values
    /// live. For a service, `kawrap bpf systemd` lasts across restarts
    Attach {
        /// The cgroup v2 directory
        #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::DirPath)]
        cgroup: PathBuf,
        #[command(flatten)]
        keepalive: Keepalive,
    },
    /// Detach from a cgroup, or everything (--all); existing connections keep their settings
    Detach {
        #[command(flatten)]
        target: DetachTarget,
    },
    /// Pin a copy of the programs with the values built in, at
    /// /sys/fs/bpf/kawrap/pinned/NAME/{sock_ops,setsockopt}, for systemd's BPFProgram= (or
    /// anyone) to attach; again to change the values live
    Pin {
        /// What to pin it as (letters, digits, `_@-:`; the BPF filesystem refuses dots)
        #[arg(long, value_name = "NAME")]
        name: String,
        #[command(flatten)]
        keepalive: Keepalive,
    },
    /// Remove a pinned copy (--name), or the programs pinned for reuse (--cache)
    Unpin {
        #[command(flatten)]
        target: UnpinTarget,
    },
    /// Make systemd attach kawrap to a service at every start, across restarts and reboots:
    /// a drop-in with BPFProgram= lines, and a unit that pins the programs at boot
    #[command(after_long_help = SYSTEMD_AFTER_HELP)]
    Systemd {
        /// The service (`backup` or `backup.service`)
        #[arg(long, value_name = "NAME")]
        unit: String,
        #[command(flatten)]
        keepalive: Keepalive,
        /// Write the two files into UNIT-DIR instead of printing them; existing different files
        /// are kept unless --force
        #[arg(long, help_heading = "Output")]
        write: bool,
        /// With --write, replace existing files that differ
        #[arg(long, requires = "write", help_heading = "Output")]
        force: bool,
        /// Where system units go
        #[arg(
            long,
            value_name = "DIR",
            default_value = SYSTEM_UNIT_DIR,
            value_hint = clap::ValueHint::DirPath,
            help_heading = "Output"
        )]
        unit_dir: PathBuf,
    },
    /// List every cgroup kawrap's programs are attached to, with values and counters, and
    /// what is pinned
    Status {
        /// Print JSON instead of lines
        #[arg(long)]
        json: bool,
    },
}

const SYSTEMD_AFTER_HELP: &str = "\
Example:
  kawrap bpf systemd --unit backup --profile firewall --write
  systemctl daemon-reload && systemctl restart backup.service

writes /etc/systemd/system/kawrap-pin-backup.service, which runs `kawrap bpf pin` before \
the service starts (once per boot), and /etc/systemd/system/backup.service.d/50-kawrap-bpf.conf, \
whose BPFProgram= lines make systemd attach the pinned programs to the service's cgroup at every \
start (systemd 249 or newer). To change the values: run it again and restart the pin unit.";

pub const LONG_ABOUT: &str = "\
The eBPF mode, for programs LD_PRELOAD cannot reach: Go and statically linked programs, \
programs making raw system calls, setuid programs, anything started through sudo.

A cgroup v2 sock_ops program sets SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (and \
TCP_USER_TIMEOUT when the profile has it) on every TCP connection made or accepted by a process \
in the cgroup, with the same profiles, rules and policy as the shim. It needs root, or the \
capabilities CAP_BPF, CAP_NET_ADMIN and CAP_DAC_OVERRIDE (`status` and `detach`: CAP_SYS_ADMIN and \
CAP_DAC_OVERRIDE).

  kawrap --bpf --profile 300/30/5 -- ./static-backup-tool     one command, cgroup removed after
  kawrap bpf systemd --unit backup --profile firewall --write  a service, at every start
  kawrap bpf attach --cgroup /sys/fs/cgroup/system.slice/backup.service --profile firewall
  kawrap bpf status
  kawrap bpf detach --cgroup /sys/fs/cgroup/system.slice/backup.service

The programs are loaded and verified once and pinned under /sys/fs/bpf/kawrap/programs/ for \
every later run (`status` shows them, `unpin --cache` removes them). `attach` lasts as long as the \
cgroup; existing connections are not changed (use `kawrap attach PID` for those).";
