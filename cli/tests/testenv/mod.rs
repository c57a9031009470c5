//! A temporary directory to run the real `kawrap` binary in, and readers
//! for what it prints: tests say what they run and what they expect.
#![allow(dead_code)] // Each test binary uses a different part.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// The binary under test.
pub fn kawrap_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kawrap"))
}

/// The real libkawrap.so, if it has been built into this target directory
/// (`cargo build --release -p kawrap-shim`, which `make test` does first).
pub fn real_shim() -> Option<PathBuf> {
    let bin = kawrap_bin();
    let profile_dir = bin.parent()?;
    let candidates = [profile_dir.join("libkawrap.so"), profile_dir.parent()?.join("release/libkawrap.so")];
    candidates.into_iter().find(|path| path.is_file())
}

/// Whether a test can go ahead: prints why not, and fails instead under CI,
/// where everything a test needs must be there.
pub fn skip_unless(condition: bool, reason: &str) -> bool {
    if !condition {
        assert!(std::env::var_os("CI").is_none_or(|ci| ci != "true"), "required under CI: {reason}");
        eprintln!("SKIP: {reason}");
    }
    condition
}

/// Whether the tests run as root (the effective user).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `tool` is in PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The C library this very process runs on: a real shared object that can
/// be preloaded without effect, for tests that need the program to run but
/// not the shim (ld.so would complain on stderr about a fake one).
pub fn harmless_preload() -> PathBuf {
    let maps = fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| Path::new(path).file_name() == Some(OsStr::new("libc.so.6")))
        .map(|path| fs::canonicalize(path).expect("canonicalize libc"))
        .expect("this process maps libc.so.6")
}

/// A scratch directory with a fake libkawrap.so (a regular file that is
/// not a library: enough for everything but actually running a program).
pub struct TestEnv {
    root: TempDir,
}

impl TestEnv {
    pub fn new() -> Self {
        // Inside the target directory, so hard links to the binary work.
        let root = tempfile::Builder::new()
            .prefix("kawrap-cli-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("create a temporary directory");
        let env = TestEnv { root };
        env.write_file("fake/libkawrap.so", "not a library", 0o644);
        env
    }

    /// The directory, canonical.
    pub fn root(&self) -> PathBuf {
        fs::canonicalize(self.root.path()).expect("canonical root")
    }

    /// The fake library's canonical path.
    pub fn fake_lib(&self) -> PathBuf {
        self.root().join("fake/libkawrap.so")
    }

    /// Writes a file (and its directories) with the given mode.
    pub fn write_file(&self, relative: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.root().join(relative);
        fs::create_dir_all(path.parent().expect("a parent")).expect("create directories");
        fs::write(&path, contents).expect("write file");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    /// A copy of the kawrap binary at `relative` (a hard link when possible).
    pub fn install_kawrap(&self, relative: &str) -> PathBuf {
        let path = self.root().join(relative);
        fs::create_dir_all(path.parent().expect("a parent")).expect("create directories");
        if fs::hard_link(kawrap_bin(), &path).is_err() {
            fs::copy(kawrap_bin(), &path).expect("copy kawrap");
        }
        path
    }

    /// The kawrap binary under test, run in this directory.
    pub fn kawrap(&self) -> Run {
        self.run_binary(&kawrap_bin())
    }

    /// Another copy of kawrap, run in this directory.
    pub fn run_binary(&self, binary: &Path) -> Run {
        let mut command = Command::new(binary);
        command.current_dir(self.root());
        // Start from an environment without kawrap's variables, so what the
        // test sees comes from its own arguments.
        command.env_remove("LD_PRELOAD").env_remove("KAWRAP_LIB");
        for var in kawrap_core::env::ALL {
            command.env_remove(var.to_str().expect("kawrap-core's names are ASCII"));
        }
        Run { command }
    }
}

/// One invocation being put together.
pub struct Run {
    command: Command,
}

impl Run {
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, var: &str, value: impl AsRef<OsStr>) -> Self {
        self.command.env(var, value);
        self
    }

    /// `--lib LIB`: the libkawrap.so to preload.
    pub fn lib(self, lib: &Path) -> Self {
        self.args(["--lib".as_ref(), lib.as_os_str()])
    }

    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.command.current_dir(dir);
        self
    }

    /// `--dry-run ARGS... true`: everything checked, nothing run.
    pub fn dry_run(self, args: &[&str]) -> Self {
        self.args(["--dry-run"]).args(args).args(["true"])
    }

    /// Runs it to completion.
    pub fn run(mut self) -> Outcome {
        let output = self.command.output().expect("run kawrap");
        Outcome { output }
    }
}

/// What one run did.
pub struct Outcome {
    output: Output,
}

impl Outcome {
    /// Asserts the exit status, showing everything printed when it differs.
    pub fn code(self, expected: i32) -> Self {
        assert_eq!(
            self.output.status.code(),
            Some(expected),
            "exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stdout_bytes(&self) -> &[u8] {
        &self.output.stdout
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Asserts that stderr starts with these lines.
    pub fn stderr_starts_with(self, lines: &[&str]) -> Self {
        let stderr = self.stderr();
        let actual: Vec<&str> = stderr.lines().take(lines.len()).collect();
        assert_eq!(actual, lines, "stderr:\n{stderr}");
        self
    }

    pub fn stderr_contains(self, needle: &str) -> Self {
        assert!(self.stderr().contains(needle), "{needle:?} not in stderr:\n{}", self.stderr());
        self
    }

    /// The value `--dry-run` exports for `var`, as written (shell-quoted).
    pub fn exported(&self, var: &str) -> Option<String> {
        let prefix = format!("export {var}=");
        self.stdout().lines().find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
    }

    /// The variables `--dry-run` unsets.
    pub fn unset(&self) -> Vec<String> {
        let stdout = self.stdout();
        let line = stdout.lines().find_map(|line| line.strip_prefix("unset "));
        line.map(|vars| vars.split(' ').map(str::to_owned).collect()).unwrap_or_default()
    }
}
