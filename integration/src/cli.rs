//! Running the release `kawrap` the way an operator does, and reading what
//! it prints.
use std::process::{Command, Output};

/// `kawrap ARGS…`, run to completion, without the test's own LD_PRELOAD.
pub fn kawrap(args: &[&str]) -> Output {
    Command::new(crate::kawrap_bin()).args(args).env_remove("LD_PRELOAD").output().expect("run kawrap")
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
