//! A cgroup v2 directory a test creates (as root), named like a systemd
//! unit so that `kawrap check --unit` can find it without systemd running,
//! and removed on drop.
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where cgroup v2 is mounted (`/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one).
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (fields.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(fields[1]))
    })
}

/// `ROOT/kawrap-test-PID.slice/NAME`: a slice and a unit in it, as systemd lays them out.
#[derive(Debug)]
pub struct TestCgroup {
    slice: PathBuf,
    unit: PathBuf,
}

impl TestCgroup {
    /// Creates the two directories; `None` without a cgroup v2 mount.
    pub fn new(unit_name: &str) -> Option<TestCgroup> {
        let root = cgroup2_root()?;
        let slice = root.join(format!("kawrap-test-{}.slice", std::process::id()));
        let unit = slice.join(unit_name);
        std::fs::create_dir_all(&unit).ok()?;
        Some(TestCgroup { slice, unit })
    }

    /// The unit's directory.
    pub fn path(&self) -> &Path {
        &self.unit
    }

    /// Makes `command` start inside the unit's cgroup: the child moves
    /// itself there before it execs, so everything it forks is in it too.
    pub fn enter_on_spawn(&self, command: &mut Command) {
        let procs = self.unit.join("cgroup.procs");
        // SAFETY: between fork and exec only one write(2) of "0" (the
        // writing process) to cgroup.procs.
        unsafe {
            command.pre_exec(move || std::fs::write(&procs, b"0"));
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // A cgroup can be removed only once its processes are gone: kill
        // whatever the test left in it (Linux ≥ 5.14), then wait for them
        // to finish exiting.
        let _ = std::fs::write(self.unit.join("cgroup.kill"), b"1");
        crate::poll(std::time::Duration::from_secs(5), || std::fs::remove_dir(&self.unit).ok());
        let _ = std::fs::remove_dir(&self.slice);
    }
}
