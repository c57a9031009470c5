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
        command.args(steps).env_remove("LD_PRELOAD");
        for key in ["KAWRAP_PROFILE", "KAWRAP_RULES", "KAWRAP_POLICY", "KAWRAP_LOG", "KAWRAP_DISABLE"] {
            command.env_remove(key);
        }
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
    let read = |name: &str| -> i32 {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    options_line(0, read("tcp_keepalive_time"), read("tcp_keepalive_intvl"), read("tcp_keepalive_probes"), 0)
}
