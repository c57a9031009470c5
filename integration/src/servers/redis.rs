//! Redis ([`Redis`]): a `redis-cli` client.
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use super::client::Client;
use super::daemon::{Daemon, start_on_free_port, temp_dir};
use super::host::missing_program;

/// Why Redis cannot be started here, if it cannot.
pub fn redis_missing() -> Option<String> {
    missing_program(&["redis-server", "redis-cli"], "redis-server redis-tools")
}

/// A Redis server without persistence.
pub struct Redis {
    /// Stopped on drop.
    _daemon: Daemon,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    _dir: TempDir,
}

impl Redis {
    /// `redis-server` on a free port; panics (with the log) if it cannot start.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// `redis-server` with extra arguments, under `wrap` (e.g. a kawrap
    /// invocation ending in `--`) if given.
    pub fn start_with(wrap: &[&OsStr]) -> Redis {
        start_on_free_port("redis-server", |port| Redis::start_on(port, wrap))
    }

    fn start_on(port: u16, wrap: &[&OsStr]) -> Result<Redis, String> {
        let dir = temp_dir("redis")?;
        let mut args: Vec<OsString> = wrap.iter().map(|a| a.to_os_string()).collect();
        args.push("redis-server".into());
        for arg in ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"] {
            args.push(arg.into());
        }
        args.extend(["--daemonize".into(), "no".into(), "--dir".into(), dir.path().into()]);
        let mut server = Command::new(&args[0]);
        server.args(&args[1..]);
        if wrap.is_empty() {
            server.env_remove("LD_PRELOAD");
        }
        let mut daemon =
            Daemon::spawn("redis-server", server, &dir.path().join("server.log"), libc::SIGTERM)?;
        daemon.wait_ready(|| redis_ping(port))?;
        Ok(Redis { _daemon: daemon, port, _dir: dir })
    }

    /// `redis-cli -h 127.0.0.1 -p PORT ARGS…`.
    pub fn cli(&self, args: &[&str]) -> Client {
        Client::new("redis-cli").args(["-h", "127.0.0.1", "-p", &self.port.to_string()]).args(args)
    }
}

/// PING over RESP; true on `+PONG`.
fn redis_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
