//! Small clients that hold one TCP connection to a listener of the test,
//! built at test time in the forms a test needs (musl, static, Go…), and
//! what the kernel says about that connection.
//!
//! The clients (`tests/clients/keepalive_client.c` and `.go`) connect to
//! `ADDR PORT`, print `keepalive=K idle=I intvl=V cnt=C ut=U` as their own
//! getsockopt reads it, and exit 0 when the test closes its end.
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use crate::process::{KillOnDrop, spawn_with_lines};
use crate::{poll, skip_unless, ss};

fn source(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(name)
}

fn built(what: &str, output: Output, program: PathBuf) -> PathBuf {
    assert!(output.status.success(), "{what}: {}", String::from_utf8_lossy(&output.stderr));
    program
}

/// `keepalive_client.c` built by `compiler` with `flags` into `dir/name`,
/// or `None` after a SKIP (a failure under CI) when there is no `compiler`.
pub fn c_client(compiler: &str, flags: &[&str], dir: &Path, name: &str) -> Option<PathBuf> {
    let package = if compiler == "musl-gcc" { "musl-tools" } else { "gcc libc6-dev" };
    if skip_unless(
        crate::servers::have_program(compiler),
        &format!("{compiler} is not installed (Debian: {package})"),
    ) {
        return None;
    }
    let program = dir.join(name);
    let output = Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(&program)
        .arg(source("keepalive_client.c"))
        .output()
        .expect("run the C compiler");
    Some(built(&format!("{compiler} {flags:?}"), output, program))
}

/// `keepalive_client.go` built by `go build` into `dir/name`, with cgo (a
/// dynamically linked program with glibc's loader) or without (static), or
/// `None` after a SKIP (a failure under CI) when there is no Go.
pub fn go_client(cgo: bool, dir: &Path, name: &str) -> Option<PathBuf> {
    if skip_unless(crate::servers::have_program("go"), "go is not installed (Debian: golang-go)") {
        return None;
    }
    let work = dir.join(format!("{name}-src"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::copy(source("keepalive_client.go"), work.join("main.go")).unwrap();
    let program = dir.join(name);
    // The build cache outlives the test (in the target directory), so only
    // the first run compiles Go's standard library.
    let cache = crate::release_dir().with_file_name("go-build-cache");
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&program)
        .arg("main.go")
        .current_dir(&work)
        .env("GOCACHE", &cache)
        .env("GOPATH", dir.join("gopath"))
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .env("CGO_ENABLED", if cgo { "1" } else { "0" })
        .output()
        .expect("run go build");
    Some(built("go build", output, program))
}

/// A client process connected to a listener of the test, and the test's
/// end of that connection.
pub struct Held {
    child: KillOnDrop,
    lines: Receiver<String>,
    stream: TcpStream,
    client: SocketAddr,
    server: SocketAddr,
}

/// What a client left behind: the lines it printed and its stderr.
pub struct Finished {
    /// Its standard output, line by line.
    pub lines: Vec<String>,
    /// Its standard error (kawrap's warnings, the loader's messages).
    pub stderr: String,
}

/// Starts `command(port)` (stdout read line by line, stderr kept) and
/// accepts the connection it makes to a new listener on 127.0.0.1.
pub fn hold(command: impl FnOnce(u16) -> Command) -> Held {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.set_nonblocking(true).unwrap();
    let server = listener.local_addr().unwrap();
    let mut command = command(server.port());
    command.stderr(Stdio::piped());
    let (mut child, lines) = spawn_with_lines(command);
    let accepted = poll(Duration::from_secs(30), || match listener.accept() {
        Ok(accepted) => Some(Ok(accepted)),
        Err(error) if error.kind() == ErrorKind::WouldBlock => child.try_wait().map(Err),
        Err(error) => panic!("accept: {error}"),
    });
    let (stream, client) = match accepted {
        Some(Ok(accepted)) => accepted,
        Some(Err(status)) => {
            let output = child.wait_with_output().unwrap();
            panic!(
                "the client exited ({status}) without connecting: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        }
        None => panic!("the client did not connect within 30 s"),
    };
    stream.set_nonblocking(false).unwrap();
    Held { child, lines, stream, client, server }
}

impl Held {
    /// The keepalive timer `ss -o` shows for exactly this connection (both
    /// ends matched): `None` when the socket has none armed.
    pub fn keepalive_timer(&self) -> Option<Duration> {
        let line = poll(Duration::from_secs(5), || ss::connection(self.client, self.server))
            .unwrap_or_else(|| panic!("ss does not show {} -> {}", self.client, self.server));
        line.keepalive()
    }

    /// Closes the test's end; the client sees EOF and must exit 0.
    pub fn finish(self) -> Finished {
        drop(self.stream);
        let mut child = self.child;
        let status = child.wait_timeout(Duration::from_secs(30)).expect("the client exits after EOF");
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(status.success(), "client: {status}, stderr: {stderr}");
        // Everything it printed is in the channel once the reader thread
        // has seen the end of its output.
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            lines.push(line);
        }
        Finished { lines, stderr }
    }
}
