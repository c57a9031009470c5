//! What every server process shares: [`Daemon`] (its own process group,
//! a log, stopped on drop), a private directory, retries on fresh ports.
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::host::free_port;
use crate::poll;

/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How many fresh ports a server start tries: a port found free can be
/// taken by another test's connection before the server binds it.
const START_ATTEMPTS: usize = 3;

/// A server process in its own process group, logging to a file; on drop
/// it gets its stop signal, then the whole group SIGKILL if it lingers.
pub(super) struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
    stop_signal: i32,
}

impl Daemon {
    pub(super) fn spawn(
        name: &'static str,
        mut cmd: Command,
        log: &Path,
        stop_signal: i32,
    ) -> Result<Daemon, String> {
        let out = fs::File::create(log).map_err(|e| format!("{name}: create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("{name}: {e}"))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("{name}: spawn {cmd:?}: {e}"))?;
        Ok(Daemon { name, child, log: log.to_path_buf(), stop_signal })
    }

    /// An error if the server has exited, with its log.
    pub(super) fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited ({status}):\n{}", self.name, self.log_tail())),
            Err(e) => Err(format!("{}: wait: {e}", self.name)),
        }
    }

    /// Polls `ready` until it holds, failing early if the server exits.
    pub(super) fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let mut died = None;
        let ok = poll(READY_TIMEOUT, || {
            if let Err(e) = self.check_alive() {
                died = Some(e);
                return Some(false);
            }
            ready().then_some(true)
        });
        match (ok, died) {
            (_, Some(e)) => Err(e),
            (Some(true), None) => Ok(()),
            _ => Err(format!("{} not ready after {READY_TIMEOUT:?}:\n{}", self.name, self.log_tail())),
        }
    }

    pub(super) fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Has the leader exited? Checked without reaping it, so its pid (the
    /// process group id) cannot be reused before the group is killed.
    fn leader_exited(&self) -> bool {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with WNOWAIT only inspects it.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid to read after a successful waitid.
        rc != 0 || unsafe { info.si_pid() } != 0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child and its process group.
        unsafe { libc::kill(pid, self.stop_signal) };
        if poll(Duration::from_secs(10), || self.leader_exited().then_some(())).is_none() {
            eprintln!("{} ignored signal {}; killing its process group", self.name, self.stop_signal);
        }
        // SAFETY: the leader is not reaped yet, so `pid` still names its group.
        unsafe { libc::killpg(pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A server's private directory (see [`crate::temp_dir`]).
pub(super) fn temp_dir(label: &str) -> Result<TempDir, String> {
    crate::temp_dir_in(&std::env::temp_dir(), label).map_err(|e| format!("temp dir: {e}"))
}

/// Tries `start` with up to [`START_ATTEMPTS`] fresh ports.
pub(super) fn start_on_free_port<T>(name: &str, mut start: impl FnMut(u16) -> Result<T, String>) -> T {
    let mut errors = Vec::new();
    for _ in 0..START_ATTEMPTS {
        match start(free_port()) {
            Ok(server) => return server,
            Err(e) => errors.push(e),
        }
    }
    panic!("could not start {name}:\n{}", errors.join("\n---\n"));
}

pub(super) fn run_checked(what: &str, cmd: &mut Command) -> Result<Output, String> {
    let output = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{what}: spawn {cmd:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output)
}
