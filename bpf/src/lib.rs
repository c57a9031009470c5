//! kawrap's eBPF mode: keepalive profiles for programs LD_PRELOAD cannot
//! reach — Go binaries, static binaries, raw `syscall(SYS_socket…)`,
//! setuid programs.
//!
//! Two small kernel programs (`src/bpf/kawrap.bpf.c`) are attached to a
//! cgroup v2: a sock_ops program sets `SO_KEEPALIVE`, `TCP_KEEPIDLE`,
//! `TCP_KEEPINTVL`, `TCP_KEEPCNT` (and `TCP_USER_TIMEOUT` when the profile
//! has one) with `bpf_setsockopt` when a TCP connection starts or is
//! accepted, and a cgroup setsockopt program makes the policy (`respect` or
//! `force`) mean what it means under the shim. Their values come from a map,
//! so they change live. Every process in the cgroup, and everything it
//! forks, is covered.
//!
//! The four operations the CLI offers:
//! - [`run`] — `kawrap --bpf --profile P -- CMD`: a transient cgroup for
//!   one command, removed when it exits ([`Scope`] is the same in pieces).
//! - [`attach`] — `kawrap bpf attach --cgroup PATH --profile P`: pinned in
//!   the BPF filesystem, stays after kawrap exits; again to change values.
//! - [`detach`] — `kawrap bpf detach --cgroup PATH`.
//! - [`status`] — `kawrap bpf status`: every attachment, with its values.
//!
//! All of them need root (or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN); the
//! errors say so, and what to use instead.

mod error;
mod fs;
mod maps;
mod pinned;
mod program;
mod run;
mod scope;
mod sys;

pub use error::Error;
pub use maps::Counters;
pub use pinned::{AttachOutcome, Attachment, attach, detach, detach_id, status};
pub use run::{RunOutcome, run};
pub use scope::{Cleanup, Scope};
