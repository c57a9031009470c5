//! The eBPF mode's common ground, under `kawrap --bpf -- COMMAND`
//! (commands/run.rs) and `kawrap bpf …` (commands/bpf.rs).
//!
//! For what LD_PRELOAD can never reach (Go and static programs, raw
//! syscalls, setuid programs, sudo): a cgroup v2 sock_ops program from the
//! `kawrap-bpf` crate gives every TCP connection of a process tree the same
//! profiles and rules. It needs clang to build, so it is a cargo feature
//! (`bpf`, on in `make`); a kawrap built without it says how to get it.
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::Path;

use kawrap_core::Config;

use crate::error::Error;
use crate::exit_codes::ExitCode;

/// The machine as the eBPF mode sees it; opening it also removes the
/// transient cgroups that earlier `kawrap --bpf` runs left and no process
/// uses any more.
#[cfg(feature = "bpf")]
pub fn host() -> Result<kawrap_bpf::Host, Error> {
    kawrap_bpf::Host::open().map_err(refused)
}

/// `kawrap --bpf … -- COMMAND`: runs the found `program` (named `name` by
/// the user) in a transient cgroup, as if kawrap had become it: its exit
/// status, or, when it is killed by a signal, kawrap dies by the same
/// signal once the cgroup is cleaned up.
///
/// The command's environment loses the shim (see
/// [`crate::env_plan::without_shim`]): the kernel applies `config`, and an
/// exported LD_PRELOAD of libkawrap.so or KAWRAP_* must not override it.
#[cfg(feature = "bpf")]
pub fn launch(
    config: &Config,
    name: &OsString,
    program: &Path,
    args: &[OsString],
    verbose: bool,
) -> Result<ExitCode, Error> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::Command;

    use crate::env_plan::without_shim;
    use crate::output::describe_config;
    use crate::program::exec_error;

    let mut command = Command::new(program);
    command.arg0(name).args(args);
    let (set, unset) = without_shim();
    for (var, value) in set {
        command.env(var, value);
    }
    for var in unset {
        command.env_remove(var);
    }
    let host = host()?;
    let announce = |scope: &kawrap_bpf::Scope<'_>| {
        if verbose {
            eprintln!(
                "kawrap: {}; eBPF mode: cgroup {}, programs {}; running {}",
                describe_config(config),
                scope.display(),
                describe_origin(scope.origin()),
                program.display()
            );
        }
    };
    let outcome = match host.run(config, &mut command, announce) {
        Ok(outcome) => outcome,
        // The program was found and is executable (find_command): a
        // failure now is the exec's own, told as for the LD_PRELOAD mode.
        Err(kawrap_bpf::Error::Spawn { source, .. }) => {
            return Err(exec_error(name, source));
        }
        Err(error) => return Err(refused(error)),
    };
    let cleanup = &outcome.cleanup;
    if verbose && !cleanup.still_running.is_empty() {
        eprintln!(
            "kawrap: {} process(es) the command started still run ({:?}), covered, in {}; a later \
             kawrap removes the cgroup once they have exited",
            cleanup.still_running.len(),
            cleanup.still_running,
            outcome.cgroup
        );
    }
    if let Some(why) = &cleanup.not_removed {
        eprintln!("kawrap: {why}; a later kawrap tries again");
    }
    if cleanup.counters.failed > 0 {
        eprintln!(
            "kawrap: the kernel refused {} keepalive setting(s) of the command's connections",
            cleanup.counters.failed
        );
    }
    let status = outcome.status;
    match (status.code(), status.signal()) {
        (Some(code), _) => Ok(ExitCode::Program(code as u8)),
        (None, Some(signal)) => {
            kawrap_bpf::die_by_signal(signal);
            // A signal whose default is not to terminate: as a shell says it.
            Ok(ExitCode::Program(128u8.wrapping_add(signal as u8)))
        }
        (None, None) => Ok(ExitCode::KawrapError),
    }
}

/// `kawrap --bpf … -- COMMAND` in a kawrap built without the eBPF mode.
#[cfg(not(feature = "bpf"))]
pub fn launch(_: &Config, _: &OsString, _: &Path, _: &[OsString], _: bool) -> Result<ExitCode, Error> {
    Err(not_built())
}

/// `reused from /sys/fs/bpf/kawrap/programs/…`, or `loaded and verified in 42 ms, kept in …`.
#[cfg(feature = "bpf")]
fn describe_origin(origin: &kawrap_bpf::Origin) -> String {
    match origin {
        kawrap_bpf::Origin::Reused(dir) => format!("reused from {}", dir.display()),
        kawrap_bpf::Origin::Loaded { took, kept } => {
            let ms = took.as_millis();
            match kept {
                Ok(dir) => {
                    format!("loaded and verified in {ms} ms, pinned in {} for the next run", dir.display())
                }
                Err(why) => format!("loaded and verified in {ms} ms, not kept for reuse ({why})"),
            }
        }
    }
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

/// kawrap's eBPF attachments, asked of the kernel at most once (a walk of
/// every cgroup), however many parts of `kawrap check` want them: its
/// KAWRAP column and its metrics.
#[derive(Default)]
pub struct Attachments {
    #[cfg(feature = "bpf")]
    read: std::cell::OnceCell<Result<(kawrap_bpf::Host, kawrap_bpf::Status), String>>,
}

#[cfg(feature = "bpf")]
impl Attachments {
    /// The host and its status, or why they cannot be read (not root, no
    /// cgroup v2…).
    fn read(&self) -> Result<&(kawrap_bpf::Host, kawrap_bpf::Status), &str> {
        let read = self.read.get_or_init(|| {
            let host = kawrap_bpf::Host::open().map_err(|error| error.to_string())?;
            let status = host.status().map_err(|error| error.to_string())?;
            Ok((host, status))
        });
        read.as_ref().map_err(String::as_str)
    }

    /// Every cgroup kawrap's programs are attached to, or why that cannot
    /// be read.
    pub fn status(&self) -> Result<&kawrap_bpf::Status, &str> {
        self.read().map(|(_, status)| status)
    }

    /// Which of `pids` an eBPF attachment of kawrap covers: those whose
    /// cgroup v2 is an attached cgroup or below one (`kawrap --bpf`, `kawrap
    /// bpf attach`, a pinned copy systemd attaches), as `kawrap bpf status`
    /// finds them. `Err` says why it cannot be told (not root, a kawrap
    /// without the mode).
    pub fn covered_processes(&self, pids: &[u32]) -> Result<HashSet<u32>, String> {
        use std::os::unix::fs::MetadataExt;

        // Without cgroup v2 there can be no attachment, and nothing to mount
        // to look for one.
        let mounts =
            std::fs::read_to_string("/proc/self/mounts").map_err(|e| format!("/proc/self/mounts: {e}"))?;
        if !mounts.lines().any(|line| line.split(' ').nth(2) == Some("cgroup2")) {
            return Ok(HashSet::new());
        }
        let (host, status) = self.read()?;
        // A cgroup's id is the inode of its directory.
        let attached: HashSet<u64> = status.attachments.iter().map(|a| a.cgroup_id).collect();
        if attached.is_empty() {
            return Ok(HashSet::new());
        }
        let root = host.cgroup2_root();
        let covered = |relative: &str| {
            let mut dir = root.join(relative.trim_start_matches('/'));
            loop {
                if std::fs::metadata(&dir).is_ok_and(|meta| attached.contains(&meta.ino())) {
                    return true;
                }
                if dir == root || !dir.pop() {
                    return false;
                }
            }
        };
        Ok(pids
            .iter()
            .copied()
            .filter(|&pid| crate::processes::cgroup2(pid).is_some_and(|c| covered(&c)))
            .collect())
    }
}

#[cfg(not(feature = "bpf"))]
impl Attachments {
    /// Which of `pids` an eBPF attachment of kawrap covers: unknown to a
    /// kawrap built without the mode.
    pub fn covered_processes(&self, _: &[u32]) -> Result<HashSet<u32>, String> {
        Err(not_built().to_string())
    }
}
