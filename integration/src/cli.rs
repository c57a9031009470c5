//! Running the release `kawrap` the way an operator does, and reading what
//! it prints.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `kawrap ARGS…`, run to completion, without the test's own LD_PRELOAD.
pub fn kawrap(args: &[&str]) -> Output {
    Command::new(crate::kawrap_bin()).args(args).env_remove("LD_PRELOAD").output().expect("run kawrap")
}

/// The arguments of setpriv(1) that run what follows as the user nobody:
/// uid and gid 65534, no supplementary groups.
pub const SETPRIV_NOBODY: [&str; 4] = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];

/// A copy of the release `kawrap`, with `libkawrap.so` beside it where it
/// looks first, in `dir` (made 0755): a kawrap other users may run, where
/// the checkout may be under /root. Returns the copy of kawrap.
///
/// Copied by cp, not in-process: a parallel test's fork could otherwise
/// inherit our write descriptor and make the exec fail with ETXTBSY.
pub fn copy_for_other_users(dir: &Path) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod 0755");
    for artifact in [crate::kawrap_bin(), crate::shim_path()] {
        let copied = Command::new("cp").arg(&artifact).arg(dir).status().expect("run cp");
        assert!(copied.success(), "cp {} {}", artifact.display(), dir.display());
    }
    dir.join("kawrap")
}

/// `kawrap ARGS…` run as nobody (setpriv), from a [`copy_for_other_users`]
/// in `dir`, to completion, without the test's own LD_PRELOAD.
pub fn kawrap_as_nobody(dir: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(SETPRIV_NOBODY)
        .arg(copy_for_other_users(dir))
        .args(args)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run kawrap as nobody with setpriv")
}

/// Its standard output, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Everything a run printed and how it ended, for an assertion's message.
pub fn describe(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}stderr:\n{}",
        output.status,
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Its standard output as JSON (`--json`); panics with the output if it is not.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(output)))
}

/// Whether kawrap may take copies of another process's sockets
/// (pidfd_getfd): as root, or as the same user without Yama's restriction.
pub fn may_copy_sockets() -> bool {
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").unwrap_or_default();
    crate::is_root() || scope.trim().is_empty() || scope.trim() == "0"
}
