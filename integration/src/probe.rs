//! Running `kaprobe` (see src/bin/kaprobe.rs) with and without the shim.
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::Receiver;

use crate::process::{KillOnDrop, expect_line_starting_with, spawn_with_lines};

/// How to run the probe: which environment the shim sees.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Preload libkawrap.so.
    pub shim: bool,
    /// Extra environment variables (KAWRAP_*).
    pub env: Vec<(String, String)>,
}

impl Run {
    /// The probe under the shim with `KAWRAP_PROFILE=profile`.
    pub fn shim(profile: &str) -> Run {
        Run { shim: true, env: vec![("KAWRAP_PROFILE".into(), profile.into())] }
    }

    /// The probe without the shim.
    pub fn bare() -> Run {
        Run::default()
    }

    /// Adds an environment variable.
    pub fn with(mut self, key: &str, value: &str) -> Run {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs `probe` (the path of the kaprobe binary) with `steps`; returns
    /// its output lines. Panics if it does not exit 0.
    pub fn steps(&self, probe: &Path, steps: &[&str]) -> Vec<String> {
        let mut command = Command::new(probe);
        crate::without_kawrap_env(command.args(steps));
        if self.shim {
            command.env("LD_PRELOAD", crate::shim_path());
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let output = command.output().expect("run kaprobe");
        assert!(
            output.status.success(),
            "kaprobe {steps:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
    }
}

/// The lines of the probe's output that show options (`print` steps).
pub fn prints(lines: &[String]) -> Vec<&str> {
    lines.iter().filter(|l| l.starts_with("keepalive=")).map(String::as_str).collect()
}

/// The line `print` produces for these option values.
pub fn options_line(keepalive: i32, idle: i32, intvl: i32, cnt: i32, ut: i32) -> String {
    format!("keepalive={keepalive} idle={idle} intvl={intvl} cnt={cnt} ut={ut}")
}

/// What a TCP socket gets without kawrap: SO_KEEPALIVE off and the
/// namespace's sysctl defaults (7200/75/9 unless changed).
pub fn kernel_default_line() -> String {
    options_line(
        0,
        sysctl("tcp_keepalive_time"),
        sysctl("tcp_keepalive_intvl"),
        sysctl("tcp_keepalive_probes"),
        0,
    )
}

/// `/proc/sys/net/ipv4/NAME` of this network namespace (0 if unreadable).
pub fn sysctl(name: &str) -> i32 {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// A kaprobe process that keeps running (its steps end in `sleep:SECS`),
/// killed when dropped.
pub struct Running {
    /// The process.
    pub child: KillOnDrop,
    /// Its pid, as it printed it.
    pub pid: u32,
    /// What it prints from now on.
    pub lines: Receiver<String>,
}

/// `PROBE pid STEPS…` without the shim or kawrap's variables: `probe` is
/// the kaprobe binary; its first line is its pid.
pub fn command(probe: &Path, steps: &[&str]) -> Command {
    let mut command = Command::new(probe);
    crate::without_kawrap_env(&mut command).arg("pid").args(steps);
    command
}

/// `sh -c 'PROBE pid STEPS… TAIL'`: kaprobe under a shell that stays (with
/// a TAIL of `| cat`, a pipeline; of `; true`, as a service's `sh -c` runs).
/// The shell leads a process group of its own, so that
/// [`KillOnDrop`] ends what it started too.
pub fn under_shell(probe: &Path, steps: &[&str], tail: &str) -> Command {
    let mut shell = Command::new("sh");
    let script = format!("\"$PROBE\" pid {} {tail}", steps.join(" "));
    crate::without_kawrap_env(&mut shell).args(["-c", &script]).env("PROBE", probe).process_group(0);
    shell
}

/// Starts `command` (whose kaprobe begins with the `pid` step) and waits
/// until it printed its pid and then a line starting with `ready`.
pub fn start(command: Command, ready: &str) -> Running {
    let (child, lines) = spawn_with_lines(command);
    let pid = expect_line_starting_with(&lines, "pid=", "kaprobe")["pid=".len()..].parse().expect("a pid");
    expect_line_starting_with(&lines, ready, "kaprobe");
    Running { child, pid, lines }
}

/// The steps of a socket that sets keepalive `idle/intvl/cnt` itself, then
/// connects to `to`.
pub fn keepalive_socket(idle: u32, intvl: u32, cnt: u32, to: &str) -> Vec<String> {
    vec![
        "socket:inet:stream".into(),
        "set:keepalive=1".into(),
        format!("set:idle={idle}"),
        format!("set:intvl={intvl}"),
        format!("set:cnt={cnt}"),
        format!("connect:{to}"),
    ]
}
