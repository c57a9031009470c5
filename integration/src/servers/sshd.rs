//! OpenSSH ([`Sshd`]): an `ssh` client with a throwaway key.
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::client::Client;
use super::daemon::{Daemon, run_checked, start_on_free_port};
use super::host::missing_program;

/// Why sshd cannot be started here, if it cannot.
pub fn sshd_missing() -> Option<String> {
    if !crate::is_root() {
        return Some("sshd tests log in as root and create /run/sshd: run as root".into());
    }
    if !Path::new("/usr/sbin/sshd").is_file() {
        return Some("/usr/sbin/sshd missing (apt-get install openssh-server)".into());
    }
    missing_program(&["ssh", "ssh-keygen"], "openssh-client")
}

/// An OpenSSH server accepting root's throwaway key.
pub struct Sshd {
    daemon: Daemon,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    dir: TempDir,
}

/// A base directory for sshd's files where no ancestor is group- or
/// world-writable, so StrictModes accepts the key there: under the target
/// directory rather than /tmp (mode 1777). None if there is no such place.
fn strict_modes_base() -> Option<PathBuf> {
    let base = crate::release_dir().parent()?.join("kawrap-test-servers");
    fs::create_dir_all(&base).ok()?;
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).ok()?;
    // sshd's check: every directory owned by root (the user logging in) and not group/world-writable.
    let safe =
        base.ancestors().all(|dir| dir.metadata().is_ok_and(|m| m.mode() & 0o022 == 0 && m.uid() == 0));
    safe.then_some(base)
}

impl Sshd {
    /// sshd -D on a fresh config, host key and user key; panics (with the log) if it cannot start.
    pub fn start() -> Sshd {
        start_on_free_port("sshd", Sshd::start_on)
    }

    fn start_on(port: u16) -> Result<Sshd, String> {
        // sshd refuses to start without its privilege-separation directory.
        fs::create_dir_all("/run/sshd").map_err(|e| format!("mkdir /run/sshd: {e}"))?;
        let (base, strict) = match strict_modes_base() {
            Some(base) => (base, "yes"),
            None => (std::env::temp_dir(), "no"),
        };
        let dir = crate::temp_dir_in(&base, "sshd").map_err(|e| format!("temp dir: {e}"))?;
        let path = |name: &str| dir.path().join(name);
        for key in ["host_key", "user_key"] {
            run_checked(
                "ssh-keygen",
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "kawrap-test", "-f"])
                    .arg(path(key)),
            )?;
        }
        fs::copy(path("user_key.pub"), path("authorized_keys"))
            .map_err(|e| format!("authorized_keys: {e}"))?;
        let config = format!(
            "ListenAddress 127.0.0.1\n\
             Port {port}\n\
             HostKey {host_key}\n\
             AuthorizedKeysFile {authorized}\n\
             PidFile {pidfile}\n\
             StrictModes {strict}\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             PrintMotd no\n\
             LogLevel ERROR\n",
            host_key = path("host_key").display(),
            authorized = path("authorized_keys").display(),
            pidfile = path("sshd.pid").display(),
        );
        fs::write(path("sshd_config"), config).map_err(|e| format!("sshd_config: {e}"))?;
        let mut server = Command::new("/usr/sbin/sshd");
        server.arg("-D").arg("-e").arg("-f").arg(path("sshd_config")).env_remove("LD_PRELOAD");
        let mut daemon = Daemon::spawn("sshd", server, &path("server.log"), libc::SIGTERM)?;
        // sshd writes its pid file once it listens.
        let pidfile = path("sshd.pid");
        daemon.wait_ready(|| fs::metadata(&pidfile).is_ok_and(|m| m.len() > 0))?;
        let sshd = Sshd { daemon, port, dir };
        run_checked("ssh true", &mut sshd.ssh(&["true"]).plain())
            .map_err(|e| format!("{e}\nsshd log:\n{}", sshd.daemon.log_tail()))?;
        Ok(sshd)
    }

    /// `ssh … root@127.0.0.1 REMOTE_COMMAND`, non-interactive, with the throwaway key.
    pub fn ssh(&self, remote_command: &[&str]) -> Client {
        Client::new("ssh")
            .args(["-F", "/dev/null", "-T", "-p", &self.port.to_string(), "-i"])
            .arg(self.dir.path().join("user_key"))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
                "root@127.0.0.1",
            ])
            .args(remote_command)
            .env("SSH_AUTH_SOCK", "")
    }
}
