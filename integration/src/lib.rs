//! The harness for kawrap's end-to-end tests: where the built artifacts
//! are, how to skip (or, in CI, fail) when a prerequisite is missing, and
//! how to read a socket's keepalive timer back from the kernel.
//!
//! The tests run the release artifacts (`make` builds them): the shim is
//! only meaningful as the stripped, LTO, `panic = "abort"` library users get.
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub mod cgroup;
pub mod cli;
pub mod clients;
pub mod debian;
pub mod dist;
pub mod netns;
pub mod probe;
pub mod process;
pub mod servers;
pub mod ss;

/// `<target>/release`, found from this test binary's own path
/// (`<target>/debug/deps/NAME`), so `CARGO_TARGET_DIR` is honoured.
pub fn release_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let target = exe.ancestors().nth(3).expect("test binary lives in <target>/<profile>/deps").to_path_buf();
    target.join("release")
}

fn artifact(name: &str) -> PathBuf {
    let path = release_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the release artifacts first (`make`, or `cargo build --release`)",
        path.display()
    );
    path
}

/// The release `libkawrap.so`.
pub fn shim_path() -> PathBuf {
    artifact("libkawrap.so")
}

/// The release `kawrap` launcher.
pub fn kawrap_bin() -> PathBuf {
    artifact("kawrap")
}

/// True when running under CI (`CI=true`), where every prerequisite is
/// provided and a missing one is a failure rather than a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Returns `true` (skip the test) when `available` is false, after
/// printing why; under CI a missing prerequisite panics instead.
pub fn skip_unless(available: bool, reason: &str) -> bool {
    if available {
        return false;
    }
    if in_ci() {
        panic!("prerequisite missing under CI: {reason}");
    }
    eprintln!("SKIP: {reason}");
    true
}

/// A new private (mode 0700) directory `kawrap-<label>-XXXXXX` under the
/// system's temporary directory, removed with its contents on drop — also
/// when the test panics.
pub fn temp_dir(label: &str) -> tempfile::TempDir {
    temp_dir_in(&std::env::temp_dir(), label).unwrap_or_else(|e| panic!("temp dir for {label}: {e}"))
}

/// [`temp_dir`] under `base`.
pub fn temp_dir_in(base: &std::path::Path, label: &str) -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix(&format!("kawrap-{label}-")).tempdir_in(base)
}

/// Removes LD_PRELOAD and every `KAWRAP_*` variable the shim reads from
/// `cmd`'s environment, so the test's own environment cannot leak into a run.
pub fn without_kawrap_env(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("LD_PRELOAD");
    for name in kawrap_core::env::ALL {
        if let Ok(name) = name.to_str() {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// A listener on a free port of 127.0.0.1 for programs to connect to, and its `addr:port`.
pub fn loopback_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr").to_string();
    (listener, addr)
}

/// True when running as root (namespaces, nftables, servers as other users).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Polls `check` every 20 ms until it returns `Some`, or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
