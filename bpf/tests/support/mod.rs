//! Shared by the eBPF-mode tests: the static raw-syscall helper programs,
//! and reading a socket's options from outside its process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use kawrap_bpf::{Host, Scope};
use kawrap_integration::{is_root, skip_unless};

/// The machine's cgroup v2 and kawrap's usual pins (programs pinned for
/// reuse are shared by every run of this build, which is what they are for).
pub fn host() -> Host {
    Host::open().expect("open the host")
}

/// Skips (or, under CI, fails) unless the eBPF tests can run here: root,
/// cgroup v2 support, and a C compiler that links statically.
pub fn skip() -> bool {
    if skip_unless(is_root(), "the eBPF mode needs root (bpf(2), cgroups)") {
        return true;
    }
    let cgroup2 = std::fs::read_to_string("/proc/filesystems").is_ok_and(|t| t.contains("cgroup2"));
    if skip_unless(cgroup2, "the kernel has no cgroup v2") {
        return true;
    }
    skip_unless(helpers().is_ok(), helpers().as_ref().err().map_or("", String::as_str))
}

/// Where cgroup v2 is mounted on this machine.
pub fn cgroup2_root() -> PathBuf {
    host().cgroup2_root().to_path_buf()
}

/// A cgroup directly under the cgroup v2 root, standing for an existing
/// one such as a systemd service's; removed on drop, with anything below it
/// (processes in it must be gone by then).
pub struct TestCgroup(pub PathBuf);

impl TestCgroup {
    pub fn create(label: &str) -> TestCgroup {
        let path = cgroup2_root().join(format!("kawrap-test-{label}-{}", std::process::id()));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TestCgroup(path)
    }

    /// Removes and creates the cgroup again at the same path, as systemd
    /// does when a service restarts: a new cgroup, with nothing attached.
    pub fn recreate(&self) {
        remove_cgroup(&self.0);
        std::fs::create_dir(&self.0).expect("create the cgroup again");
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        remove_cgroup(&self.0);
    }
}

/// Removes a cgroup and the cgroups below it, deepest first, waiting a
/// moment for processes that were just killed to leave.
pub fn remove_cgroup(dir: &Path) {
    for _ in 0..200 {
        let mut all = vec![dir.to_path_buf()];
        let mut next = 0;
        while next < all.len() {
            let children: Vec<PathBuf> = std::fs::read_dir(&all[next])
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            all.extend(children);
            next += 1;
        }
        if all.iter().rev().all(|d| std::fs::remove_dir(d).is_ok() || !d.exists()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A directory of kawrap pins of the test's own on the BPF filesystem, so
/// that loading, pinning and removing pins touches nothing else on the
/// machine; removed on drop.
pub struct PrivatePins(pub PathBuf);

impl PrivatePins {
    pub fn new(label: &str) -> PrivatePins {
        let root = host().pin_dir().map(|dir| dir.parent().expect("under a bpffs").to_path_buf());
        let bpffs = root.unwrap_or_else(|| PathBuf::from("/sys/fs/bpf"));
        PrivatePins(bpffs.join(format!("kawrap-test-{label}-{}", std::process::id())))
    }

    /// A Host that pins here.
    pub fn host(&self) -> Host {
        Host::with_pin_dir(self.0.clone()).expect("open the host")
    }
}

impl Drop for PrivatePins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Attaches the pinned programs in `dir` to `cgroup` as systemd does for
/// `BPFProgram=sock_ops:DIR/sock_ops` and `BPFProgram=setsockopt:DIR/setsockopt`
/// at every start of a unit: BPF_PROG_ATTACH with BPF_F_ALLOW_MULTI.
pub fn attach_like_systemd(cgroup: &Path, dir: &Path) {
    for hook in ["sock_ops", "setsockopt"] {
        let status = Command::new("bpftool")
            .args(["cgroup", "attach"])
            .arg(cgroup)
            .arg(hook)
            .arg("pinned")
            .arg(dir.join(hook))
            .arg("multi")
            .status()
            .expect("run bpftool");
        assert!(status.success(), "bpftool cgroup attach {} {hook}", cgroup.display());
    }
}

/// Whether bpftool is installed (the tests that stand in for systemd or
/// for other BPF users need it).
pub fn have_bpftool() -> bool {
    Command::new("bpftool").arg("version").output().is_ok_and(|o| o.status.success())
}

/// The helper binaries: a static client and server that reach the kernel
/// only through `syscall(SYS_…)`, so no LD_PRELOAD could ever affect them.
pub struct Helpers {
    pub client: PathBuf,
    pub server: PathBuf,
}

/// Compiles the helpers once per test binary with `cc -static`.
pub fn helpers() -> &'static Result<Helpers, String> {
    static HELPERS: OnceLock<Result<Helpers, String>> = OnceLock::new();
    HELPERS.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kawrap-bpf-helpers");
        std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/helpers");
        let build = |name: &str| -> Result<PathBuf, String> {
            let binary = out.join(name);
            let status = Command::new("cc")
                .args(["-static", "-O2", "-Wall", "-o"])
                .arg(&binary)
                .arg(source.join(format!("{name}.c")))
                .status()
                .map_err(|e| format!("cannot run cc ({e}): install gcc and libc6-dev"))?;
            if !status.success() {
                return Err(format!("cc -static {name}.c failed: install libc6-dev (static libc.a)"));
            }
            Ok(binary)
        };
        Ok(Helpers { client: build("ka_client")?, server: build("ka_server")? })
    })
}

fn helper_paths() -> &'static Helpers {
    helpers().as_ref().expect("helpers built (checked by skip())")
}

/// Reads lines until one starts with `prefix`; returns the rest of it.
fn expect_line(reader: &mut BufReader<ChildStdout>, prefix: &str, who: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).expect("read helper output");
        assert!(n > 0, "{who} exited before printing {prefix:?}");
        if let Some(rest) = line.trim_end().strip_prefix(prefix) {
            return rest.to_string();
        }
    }
}

/// Where a helper runs.
#[derive(Clone, Copy)]
pub enum Place<'a> {
    /// Outside anything kawrap attached to.
    Outside,
    /// In a kawrap scope.
    Scope(&'a Scope<'a>),
    /// In an existing cgroup, started there as a service manager would.
    Cgroup(&'a Path),
}

/// Starts `command` at `place` with its stdout piped.
fn spawn(place: Place<'_>, mut command: Command) -> (Child, BufReader<ChildStdout>) {
    command.stdout(Stdio::piped());
    let spawned = match place {
        Place::Outside => command.spawn().map_err(|e| e.to_string()),
        Place::Scope(scope) => scope.spawn(&mut command).map_err(|e| e.to_string()),
        Place::Cgroup(dir) => {
            join_cgroup_on_exec(dir, &mut command);
            command.spawn().map_err(|e| e.to_string())
        }
    };
    let mut child = spawned.unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let out = BufReader::new(child.stdout.take().expect("piped"));
    (child, out)
}

/// Makes `command` move itself into the cgroup `dir` before it execs.
fn join_cgroup_on_exec(dir: &Path, command: &mut Command) {
    let procs =
        std::ffi::CString::new(dir.join("cgroup.procs").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            let ok = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            libc::close(fd);
            if ok { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
    }
}

/// A running `ka_server`, killed on drop.
pub struct Server {
    child: Child,
    out: BufReader<ChildStdout>,
    pub port: u16,
}

impl Server {
    /// Starts a server on `addr` (any free port) at `place`.
    pub fn start(place: Place<'_>, addr: &str) -> Server {
        Server::start_with(place, addr, &[])
    }

    /// Like [`Server::start`]; `options` are the program's own setsockopt
    /// calls on its listening socket (see ka_server.c).
    pub fn start_with(place: Place<'_>, addr: &str, options: &[&str]) -> Server {
        let mut command = Command::new(&helper_paths().server);
        command.args([addr, "0"]).args(options);
        let (child, mut out) = spawn(place, command);
        let port = expect_line(&mut out, "port ", "ka_server").parse().expect("port number");
        Server { child, out, port }
    }

    /// The fd of the next accepted connection.
    pub fn accepted_fd(&mut self) -> RawFd {
        expect_line(&mut self.out, "accepted fd=", "ka_server").parse().expect("fd number")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `ka_client`, connected and blocked in read(); killed on drop.
pub struct Client {
    child: Child,
    pub fd: RawFd,
}

impl Client {
    /// Connects to `addr`:`port` from `place`; `options` are the program's
    /// own setsockopt calls (see ka_client.c).
    pub fn connect(place: Place<'_>, addr: &str, port: u16, options: &[&str]) -> Client {
        let mut command = Command::new(&helper_paths().client);
        command.arg(addr).arg(port.to_string()).args(options);
        let (child, mut out) = spawn(place, command);
        let fd = expect_line(&mut out, "connected fd=", "ka_client").parse().expect("fd number");
        Client { child, fd }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A socket's keepalive options as the kernel reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub keepalive: i32,
    pub idle: i32,
    pub interval: i32,
    pub count: i32,
    pub user_timeout: i32,
}

impl Options {
    /// `keepalive on` with these values.
    pub fn on(idle: i32, interval: i32, count: i32, user_timeout: i32) -> Options {
        Options { keepalive: 1, idle, interval, count, user_timeout }
    }
}

fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> i32 {
    let mut value: libc::c_int = -1;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value/len are valid out pointers of the stated size.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&mut value as *mut libc::c_int).cast(), &mut len) };
    assert_eq!(rc, 0, "getsockopt({level}, {name}): {}", std::io::Error::last_os_error());
    value
}

/// A duplicate of fd `fd` of process `pid`, obtained with pidfd_getfd(2):
/// the same socket, so getsockopt on it is the kernel's own answer.
fn socket_of(pid: i32, fd: RawFd) -> OwnedFd {
    // SAFETY: plain system calls; the returned fds are owned right away.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        assert!(pidfd >= 0, "pidfd_open({pid}): {}", std::io::Error::last_os_error());
        let pidfd = OwnedFd::from_raw_fd(pidfd as RawFd);
        let dup = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0);
        assert!(dup >= 0, "pidfd_getfd({pid}, {fd}): {}", std::io::Error::last_os_error());
        OwnedFd::from_raw_fd(dup as RawFd)
    }
}

/// Reads the options of fd `fd` of process `pid` from outside it.
pub fn options_of(pid: i32, fd: RawFd) -> Options {
    let socket = socket_of(pid, fd);
    let fd = socket.as_raw_fd();
    Options {
        keepalive: getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        idle: getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        interval: getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        count: getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
        user_timeout: getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
    }
}

/// The kernel's defaults in this network namespace, i.e. what a socket
/// kawrap did not touch reports.
pub fn kernel_defaults() -> Options {
    let read = |name: &str| -> i32 {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(-1)
    };
    Options {
        keepalive: 0,
        idle: read("tcp_keepalive_time"),
        interval: read("tcp_keepalive_intvl"),
        count: read("tcp_keepalive_probes"),
        user_timeout: 0,
    }
}

/// `ss`'s keepalive timer on the connection from local port `from` … `to`.
pub fn keepalive_timer(local_port: u16, peer_port: u16) -> Option<Duration> {
    let filter = format!("( sport = :{local_port} and dport = :{peer_port} )");
    let lines = kawrap_integration::ss::ss(&[&filter]);
    lines.first().and_then(|line| line.keepalive())
}

/// The local port of fd `fd` in process `pid`.
pub fn local_port(pid: i32, fd: RawFd) -> u16 {
    let socket = socket_of(pid, fd);
    // SAFETY: an all-zero sockaddr_storage is a valid value.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: addr/len are valid out pointers of the stated size.
    let rc = unsafe {
        libc::getsockname(socket.as_raw_fd(), (&mut addr as *mut libc::sockaddr_storage).cast(), &mut len)
    };
    assert_eq!(rc, 0, "getsockname");
    // sin_port and sin6_port sit at the same offset, in network order.
    // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
    let sin = unsafe { &*(&addr as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
    u16::from_be(sin.sin_port)
}
