//! kawrap's eBPF mode: keepalive profiles for programs LD_PRELOAD cannot
//! reach — Go binaries, static binaries, raw `syscall(SYS_socket…)`,
//! setuid programs.
//!
//! Two small kernel programs (`src/bpf/kawrap.bpf.c`) are attached to a
//! cgroup v2: a sock_ops program sets `SO_KEEPALIVE`, `TCP_KEEPIDLE`,
//! `TCP_KEEPINTVL`, `TCP_KEEPCNT` (and `TCP_USER_TIMEOUT` when the profile
//! has one) with `bpf_setsockopt` when a TCP connection starts or is
//! accepted, and a cgroup setsockopt program makes the policy (`respect` or
//! `force`) mean what it means under the shim. Their values sit in each
//! cgroup's local storage, so they change live, and one verified copy of
//! the programs serves every cgroup: kawrap pins it on the BPF filesystem
//! and later runs only attach it. Every process in the cgroup, and
//! everything it forks, is covered.
//!
//! Every operation is a method of [`Host`] (cgroup v2 and the BPF
//! filesystem as this process sees them):
//! - [`Host::run`] — `kawrap --bpf --profile P -- CMD`: a transient cgroup
//!   for one command ([`Scope`] is the same in pieces).
//! - [`Host::attach`] / [`Host::detach`] — `kawrap bpf attach|detach`: an
//!   existing cgroup, for as long as it exists.
//! - [`Host::pin`] / [`Host::unpin`] — `kawrap bpf pin|unpin`: a copy with
//!   its values built in, which systemd attaches to a service at every
//!   start (`BPFProgram=`).
//! - [`Host::status`], [`Host::detach_all`], [`Host::clear_cache`].
//!
//! They need root, or the capabilities in [`CAPABILITIES`]; the errors say
//! so, and what to use instead.

mod attach;
mod error;
mod fs;
mod host;
mod maps;
mod neighbours;
mod pins;
mod program;
mod registry;
mod run;
mod scope;
mod status;
mod sys;

pub use attach::AttachOutcome;
pub use error::{CAPABILITIES, Error};
pub use host::Host;
pub use maps::Counters;
pub use pins::{Cached, Named, Origin, PinOutcome};
pub use run::{RunOutcome, die_by_signal};
pub use scope::{Cleanup, Scope};
pub use status::{AttachedBy, Attachment, Status};

/// This build's name for what it pins: kawrap's version and a hash of its
/// BPF object.
pub const BUILD: &str = program::BUILD;
