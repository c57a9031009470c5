//! The eBPF mode's common ground, under `kawrap --bpf -- COMMAND` (here)
//! and `kawrap bpf attach|detach|status` (commands/bpf.rs).
//!
//! For what LD_PRELOAD can never reach (Go and static programs, raw
//! syscalls, setuid programs, sudo): a cgroup v2 sock_ops program from the
//! `kawrap-bpf` crate gives every TCP connection of a process tree the same
//! profiles and rules. It needs clang to build, so it is a cargo feature
//! (`bpf`, on in `make`); a kawrap built without it says how to get it.
use std::ffi::OsString;
use std::path::Path;

use kawrap_core::Config;

use crate::error::Error;
use crate::exit_codes::ExitCode;
#[cfg(feature = "bpf")]
use crate::program::exec_error;

/// `kawrap --bpf … -- COMMAND`: runs the found `program` (named `name` by
/// the user) in a transient cgroup and returns its exit status.
#[cfg(feature = "bpf")]
pub fn launch(
    config: &Config,
    name: &OsString,
    program: &Path,
    args: &[OsString],
) -> Result<ExitCode, Error> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Command;

    let mut command = Command::new(program);
    command.arg0(name).args(args);
    let outcome = match kawrap_bpf::run(config, &mut command) {
        Ok(outcome) => outcome,
        // The program was found and is executable (find_command): a
        // failure now is the exec's own, told as for the LD_PRELOAD mode.
        Err(kawrap_bpf::Error::Spawn { source, .. }) => {
            return Err(exec_error(name, source));
        }
        Err(error) => return Err(refused(error)),
    };
    let cleanup = &outcome.cleanup;
    if !cleanup.moved_out.is_empty() {
        eprintln!(
            "kawrap: {} process(es) the command left running ({:?}) were moved out of kawrap's cgroup: \
             their existing connections keep the profile, new ones do not",
            cleanup.moved_out.len(),
            cleanup.moved_out
        );
    }
    if cleanup.counters.failed > 0 {
        eprintln!(
            "kawrap: the kernel refused {} keepalive setting(s) of the command's connections",
            cleanup.counters.failed
        );
    }
    // As a shell reports it: the code, or 128 + the signal that killed it.
    let status = outcome.status;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        (None, None) => return Ok(ExitCode::KawrapError),
    };
    Ok(ExitCode::Program(code))
}

/// `kawrap --bpf … -- COMMAND`: runs the found `program` (named `name` by
/// the user) in a transient cgroup and returns its exit status.
#[cfg(not(feature = "bpf"))]
pub fn launch(_: &Config, _: &OsString, _: &Path, _: &[OsString]) -> Result<ExitCode, Error> {
    Err(not_built())
}

/// What kawrap-bpf refused (no privilege, no cgroup v2, …), for a person.
#[cfg(feature = "bpf")]
pub fn refused(error: kawrap_bpf::Error) -> Error {
    Error::Refused { message: error.to_string(), hint: String::new() }
}

/// The answer of every eBPF action in a kawrap built without the mode.
#[cfg(not(feature = "bpf"))]
pub fn not_built() -> Error {
    Error::Refused {
        message: "this kawrap was built without the eBPF mode".to_owned(),
        hint: "rebuild with it: `make` (needs clang and libbpf-dev), or \
               `cargo build --release -p kawrap --features bpf`"
            .to_owned(),
    }
}
