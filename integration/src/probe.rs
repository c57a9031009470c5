//! Running `kaprobe` (see src/bin/kaprobe.rs) with and without the shim.
use std::path::Path;
use std::process::Command;

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
