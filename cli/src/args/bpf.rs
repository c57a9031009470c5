//! `kawrap bpf attach|detach|status`.
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::settings::Keepalive;

/// `kawrap bpf …`.
#[derive(Debug, Args)]
pub struct BpfArgs {
    #[command(subcommand)]
    pub action: BpfAction,
}

/// Which attachment `detach` removes.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct DetachTarget {
    /// The cgroup v2 directory
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// The cgroup's id, as `kawrap bpf status` shows it: for an attachment whose cgroup
    /// directory was removed while it stayed pinned ("(cgroup removed)")
    #[arg(long, value_name = "ID")]
    pub cgroup_id: Option<u64>,
}

/// What to do with the eBPF program.
#[derive(Debug, Subcommand)]
pub enum BpfAction {
    /// Attach to an existing cgroup (e.g. /sys/fs/cgroup/system.slice/NAME.service): every
    /// TCP connection made in it from now on gets the profile; again to change the values live
    Attach {
        /// The cgroup v2 directory
        #[arg(long, value_name = "PATH")]
        cgroup: PathBuf,
        #[command(flatten)]
        keepalive: Keepalive,
    },
    /// Detach from a cgroup; existing connections keep their settings
    Detach {
        #[command(flatten)]
        target: DetachTarget,
    },
    /// List every cgroup kawrap's eBPF program is attached to, with its values and counters
    Status {
        /// Print a JSON array instead of lines
        #[arg(long)]
        json: bool,
    },
}

pub const LONG_ABOUT: &str = "\
The eBPF mode, for programs LD_PRELOAD cannot reach: Go and statically linked programs, \
programs making raw system calls, setuid programs, anything started through sudo.

A cgroup v2 sock_ops program sets SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (and \
TCP_USER_TIMEOUT when the profile has it) on every TCP connection made or accepted by a process \
in the cgroup, with the same profiles, rules and policy as the shim. It needs root (or CAP_BPF, \
CAP_NET_ADMIN and CAP_SYS_ADMIN).

  kawrap --bpf --profile 300/30/5 -- ./static-backup-tool     one command, cgroup removed after
  kawrap bpf attach --cgroup /sys/fs/cgroup/system.slice/backup.service --profile firewall
  kawrap bpf status
  kawrap bpf detach --cgroup /sys/fs/cgroup/system.slice/backup.service

`attach` outlives kawrap (pinned under /sys/fs/bpf/kawrap/) and covers a whole service, Go \
parts included, without editing its unit; existing connections are not changed (use `kawrap \
attach PID` for those).";
