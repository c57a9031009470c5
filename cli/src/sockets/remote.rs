//! Reaching a socket that belongs to another process: pidfd_open(2) names
//! the process, pidfd_getfd(2) (Linux ≥ 5.6) gives us a duplicate of one of
//! its descriptors. A duplicate is the same kernel socket, so getsockopt on
//! it reads the process's settings and setsockopt changes them, while
//! closing it leaves the process's descriptor open.
//!
//! The kernel allows pidfd_getfd only with ptrace permission over the
//! process (PTRACE_MODE_ATTACH_REALCREDS): root, CAP_SYS_PTRACE, or the same
//! user when Yama's ptrace_scope allows it.
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use kawrap_core::KeepaliveProfile;
use serde::Serialize;
use socket2::{Domain, Protocol, SockRef, TcpKeepalive, Type};

use super::TcpState;
use super::netns::KeepaliveDefaults;
use crate::error::Error;

/// Why another process's socket cannot be reached.
#[derive(Debug)]
pub enum AccessError {
    /// No process with that pid (or it exited meanwhile).
    NoSuchProcess {
        /// The pid asked for.
        pid: u32,
    },
    /// Not allowed to look into, or take descriptors from, the process.
    Permission {
        /// The process.
        pid: u32,
        /// The call the kernel refused.
        call: &'static str,
    },
    /// The kernel lacks the system call.
    KernelTooOld {
        /// The missing call.
        call: &'static str,
        /// The first Linux version that has it.
        since: &'static str,
    },
    /// The descriptor was closed between listing and duplicating it.
    Closed,
    /// kawrap itself has no descriptor left for the copy (its
    /// RLIMIT_NOFILE, or the system's file table).
    OutOfDescriptors {
        /// The call.
        call: &'static str,
    },
    /// Anything else, with the call that failed.
    Other {
        /// The call.
        call: &'static str,
        /// The error.
        source: io::Error,
    },
}

/// The "call" of an error reading `/proc/PID/fd`.
const PROC_FD: &str = "reading /proc/PID/fd";

impl AccessError {
    fn from_errno(call: &'static str, pid: u32, source: io::Error) -> AccessError {
        match source.raw_os_error() {
            Some(libc::ESRCH) => AccessError::NoSuchProcess { pid },
            Some(libc::EPERM | libc::EACCES) => AccessError::Permission { pid, call },
            Some(libc::ENOSYS) => {
                AccessError::KernelTooOld { call, since: if call == "pidfd_getfd" { "5.6" } else { "5.3" } }
            }
            Some(libc::EBADF) if call == "pidfd_getfd" => AccessError::Closed,
            Some(libc::EMFILE | libc::ENFILE) => AccessError::OutOfDescriptors { call },
            _ => AccessError::Other { call, source },
        }
    }

    /// From an error reading `/proc/PID/…`.
    pub fn from_proc(pid: u32, source: io::Error) -> AccessError {
        match source.kind() {
            io::ErrorKind::NotFound => AccessError::NoSuchProcess { pid },
            io::ErrorKind::PermissionDenied => AccessError::Permission { pid, call: PROC_FD },
            _ => AccessError::Other { call: PROC_FD, source },
        }
    }

    /// What to do about it, for a person.
    pub fn hint(&self) -> String {
        match self {
            AccessError::NoSuchProcess { .. } => "check the pid with `ps -p PID` or `pgrep NAME`".to_owned(),
            AccessError::Permission { .. } => {
                let mut hint = String::from(
                    "taking a socket from another process needs ptrace permission over it: run kawrap as \
                     root (sudo kawrap …) or with CAP_SYS_PTRACE",
                );
                match ptrace_scope() {
                    Some(0) => hint.push_str(
                        "; as the same user this is allowed (kernel.yama.ptrace_scope = 0) unless the \
                         process is setuid or has dropped its dumpable flag",
                    ),
                    Some(scope) => hint.push_str(&format!(
                        "; as the process's own user it also works with `sysctl kernel.yama.ptrace_scope=0` \
                         (now {scope}: only ancestors or privileged users may attach)"
                    )),
                    None => hint.push_str("; as the same user only if the process is not setuid"),
                }
                hint
            }
            AccessError::KernelTooOld { .. } => {
                "upgrade the kernel, or start the program under kawrap instead (`kawrap --profile P CMD`)"
                    .to_owned()
            }
            AccessError::OutOfDescriptors { .. } => {
                "raise kawrap's limit of open files (`ulimit -n`) and run it again".to_owned()
            }
            AccessError::Closed | AccessError::Other { .. } => String::new(),
        }
    }
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccessError::NoSuchProcess { pid } => write!(f, "no such process: {pid}"),
            AccessError::Permission { pid, call: PROC_FD } => {
                write!(f, "not permitted to look into process {pid} (/proc/{pid}/fd: permission denied)")
            }
            AccessError::Permission { pid, call } => {
                write!(
                    f,
                    "not permitted to take sockets from process {pid} ({call}: operation not permitted)"
                )
            }
            AccessError::KernelTooOld { call, since } => {
                write!(f, "this kernel has no {call}(2) system call (needs Linux ≥ {since})")
            }
            AccessError::Closed => f.write_str("the descriptor was closed meanwhile"),
            AccessError::OutOfDescriptors { call } => {
                write!(f, "{call}: kawrap has no file descriptor left (too many open files)")
            }
            AccessError::Other { call, source } => write!(f, "{call}: {source}"),
        }
    }
}

impl std::error::Error for AccessError {}

/// What `kawrap check` and `kawrap attach` stop with when the process
/// cannot be reached: the reason, and [`AccessError::hint`].
impl From<AccessError> for Error {
    fn from(error: AccessError) -> Self {
        Error::Refused { message: error.to_string(), hint: error.hint() }
    }
}

/// `/proc/sys/kernel/yama/ptrace_scope`, if Yama is enabled.
fn ptrace_scope() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").ok()?.trim().parse().ok()
}

/// A process, held by a pidfd: it cannot be confused with a later process
/// that reuses the pid.
#[derive(Debug)]
pub struct Pidfd {
    fd: OwnedFd,
    pid: u32,
}

impl Pidfd {
    /// pidfd_open(pid, 0).
    pub fn open(pid: u32) -> Result<Pidfd, AccessError> {
        let Ok(raw_pid) = libc::pid_t::try_from(pid) else {
            return Err(AccessError::NoSuchProcess { pid });
        };
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor or -1; no memory is passed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, raw_pid, 0) };
        if fd < 0 {
            let error = io::Error::last_os_error();
            return Err(match error.raw_os_error() {
                Some(libc::EINVAL) => AccessError::NoSuchProcess { pid },
                _ => AccessError::from_errno("pidfd_open", pid, error),
            });
        }
        // SAFETY: the call returned a new descriptor that nothing else owns;
        // a descriptor always fits in c_int.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
        Ok(Pidfd { fd, pid })
    }

    /// pidfd_getfd(pidfd, target_fd, 0): our own descriptor for the
    /// process's `target_fd`, close-on-exec.
    pub fn dup(&self, target_fd: i32) -> Result<OwnedFd, AccessError> {
        // SAFETY: the arguments are integers (a pidfd we own, a descriptor
        // number in the other process, flags 0); the result is a new
        // descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.fd.as_raw_fd(), target_fd, 0) };
        if fd < 0 {
            return Err(AccessError::from_errno("pidfd_getfd", self.pid, io::Error::last_os_error()));
        }
        // SAFETY: a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
    }
}

/// The keepalive options of one socket, as getsockopt returns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KeepaliveOptions {
    /// SO_KEEPALIVE.
    pub keepalive: bool,
    /// TCP_KEEPIDLE, seconds.
    pub idle_secs: u32,
    /// TCP_KEEPINTVL, seconds.
    pub interval_secs: u32,
    /// TCP_KEEPCNT.
    pub count: u32,
    /// TCP_USER_TIMEOUT, milliseconds (0 = off).
    pub user_timeout_ms: u32,
}

impl KeepaliveOptions {
    /// Reads the five options. Without TCP_KEEPIDLE etc. having been set,
    /// the kernel reports the namespace's sysctl defaults.
    pub fn read(fd: &impl AsFd) -> io::Result<KeepaliveOptions> {
        let socket = SockRef::from(fd);
        let secs = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        Ok(KeepaliveOptions {
            keepalive: socket.keepalive()?,
            idle_secs: secs(socket.tcp_keepalive_time()?),
            interval_secs: secs(socket.tcp_keepalive_interval()?),
            count: socket.tcp_keepalive_retries()?,
            user_timeout_ms: socket
                .tcp_user_timeout()?
                .map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
        })
    }

    /// How these options differ from `profile`, one phrase per difference;
    /// empty when they match. The user timeout is compared only when the
    /// profile sets one (a profile without it leaves the socket's alone).
    pub fn differences(&self, profile: &KeepaliveProfile) -> Vec<String> {
        let mut differences = Vec::new();
        if !self.keepalive {
            differences.push("SO_KEEPALIVE is off".to_owned());
        }
        let mut compare = |name: &str, have: u32, want: u32, unit: &str| {
            if have != want {
                differences.push(format!("{name} {have}{unit}, expected {want}{unit}"));
            }
        };
        compare("idle", self.idle_secs, profile.idle_secs().into(), " s");
        compare("interval", self.interval_secs, profile.interval_secs().into(), " s");
        compare("count", self.count, profile.count().into(), "");
        if let Some(ms) = profile.user_timeout_ms() {
            compare("user timeout", self.user_timeout_ms, ms, " ms");
        }
        differences
    }
}

impl KeepaliveOptions {
    /// The options the socket's program evidently set itself: those that
    /// differ from what the kernel gives a socket nobody configured (the
    /// namespace's sysctls, and no user timeout). A value set to exactly the
    /// default cannot be told apart, nor can SO_KEEPALIVE=0 from never
    /// having turned it on.
    pub fn own_settings(&self, defaults: &KeepaliveDefaults) -> OwnSettings {
        OwnSettings {
            idle: self.idle_secs != defaults.idle_secs,
            interval: self.interval_secs != defaults.interval_secs,
            count: self.count != defaults.count,
            user_timeout: self.user_timeout_ms != 0,
        }
    }

    /// What these options become when `profile` is applied leaving `keep`
    /// alone (and the user timeout too when the profile has none).
    pub fn with_profile(&self, profile: &KeepaliveProfile, keep: OwnSettings) -> KeepaliveOptions {
        let pick = |kept: bool, own: u32, theirs: u32| if kept { own } else { theirs };
        KeepaliveOptions {
            keepalive: true,
            idle_secs: pick(keep.idle, self.idle_secs, profile.idle_secs().into()),
            interval_secs: pick(keep.interval, self.interval_secs, profile.interval_secs().into()),
            count: pick(keep.count, self.count, profile.count().into()),
            user_timeout_ms: match profile.user_timeout_ms() {
                Some(ms) if !keep.user_timeout => ms,
                _ => self.user_timeout_ms,
            },
        }
    }
}

/// Which keepalive options to leave as they are: the program's own, under
/// the respect policy. SO_KEEPALIVE is always turned on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnSettings {
    /// TCP_KEEPIDLE.
    pub idle: bool,
    /// TCP_KEEPINTVL.
    pub interval: bool,
    /// TCP_KEEPCNT.
    pub count: bool,
    /// TCP_USER_TIMEOUT.
    pub user_timeout: bool,
}

impl OwnSettings {
    /// Nothing kept: what `--policy force` does.
    pub const NONE: OwnSettings =
        OwnSettings { idle: false, interval: false, count: false, user_timeout: false };

    /// The kept options' names, in the order a person reads them.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.idle, "idle"),
            (self.interval, "interval"),
            (self.count, "count"),
            (self.user_timeout, "user timeout"),
        ]
        .into_iter()
        .filter_map(|(kept, name)| kept.then_some(name))
        .collect()
    }
}

/// `on 300/30/5`, `off 7200/75/9`, `on 2/1/3/5000ms`.
impl fmt::Display for KeepaliveOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.keepalive { "on" } else { "off" };
        write!(f, "{state} {}/{}/{}", self.idle_secs, self.interval_secs, self.count)?;
        if self.user_timeout_ms != 0 {
            write!(f, "/{}ms", self.user_timeout_ms)?;
        }
        Ok(())
    }
}

/// A setsockopt the kernel refused.
#[derive(Debug)]
pub struct ApplyError {
    /// The option.
    pub option: &'static str,
    /// The value given.
    pub value: u32,
    /// The kernel's error.
    pub source: io::Error,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "setsockopt {}={}: {}", self.option, self.value, self.source)
    }
}

/// Gives a socket `profile`: SO_KEEPALIVE=1, TCP_KEEPIDLE, TCP_KEEPINTVL,
/// TCP_KEEPCNT, and TCP_USER_TIMEOUT if the profile has one — except the
/// options in `keep`.
///
/// Order matters little: on a socket with keepalive on, setting
/// TCP_KEEPIDLE re-arms the timer at once with the new idle time minus the
/// time the connection has already been idle (possibly zero: a probe goes
/// out right away), so a connection idle for hours is probed soon.
pub fn apply(fd: &impl AsFd, profile: &KeepaliveProfile, keep: OwnSettings) -> Result<(), ApplyError> {
    let socket = SockRef::from(fd);
    let fail = |option, value: u32| move |source| ApplyError { option, value, source };
    let idle = u32::from(profile.idle_secs());
    let interval = u32::from(profile.interval_secs());
    let count = u32::from(profile.count());
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    socket.set_keepalive(true).map_err(fail("SO_KEEPALIVE", 1))?;
    // socket2 sets SO_KEEPALIVE again with each call: harmless, and one
    // option per call lets an error name the option the kernel refused.
    if !keep.idle {
        socket
            .set_tcp_keepalive(&TcpKeepalive::new().with_time(secs(idle)))
            .map_err(fail("TCP_KEEPIDLE", idle))?;
    }
    if !keep.interval {
        socket
            .set_tcp_keepalive(&TcpKeepalive::new().with_interval(secs(interval)))
            .map_err(fail("TCP_KEEPINTVL", interval))?;
    }
    if !keep.count {
        socket
            .set_tcp_keepalive(&TcpKeepalive::new().with_retries(count))
            .map_err(fail("TCP_KEEPCNT", count))?;
    }
    if let Some(ms) = profile.user_timeout_ms().filter(|_| !keep.user_timeout) {
        socket
            .set_tcp_user_timeout(Some(Duration::from_millis(u64::from(ms))).filter(|d| !d.is_zero()))
            .map_err(fail("TCP_USER_TIMEOUT", ms))?;
    }
    Ok(())
}

/// What a TCP socket is connected to, and in which state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpEndpoint {
    /// getsockname.
    pub local: Option<SocketAddr>,
    /// getpeername (`None` when not connected).
    pub remote: Option<SocketAddr>,
    /// tcpi_state from TCP_INFO.
    pub state: TcpState,
}

/// `Some` for an IPv4 or IPv6 TCP socket (not MPTCP, which rejects some
/// keepalive options), `None` for any other descriptor.
pub fn tcp_endpoint(fd: &impl AsFd) -> Option<TcpEndpoint> {
    let socket = SockRef::from(fd);
    let domain = socket.domain().ok()?;
    if !(domain == Domain::IPV4 || domain == Domain::IPV6)
        || socket.r#type().ok()? != Type::STREAM
        || socket.protocol().ok()?.is_some_and(|p| p != Protocol::TCP)
    {
        return None;
    }
    Some(TcpEndpoint {
        local: socket.local_addr().ok().and_then(|a| a.as_socket()),
        remote: socket.peer_addr().ok().and_then(|a| a.as_socket()),
        state: tcp_state(fd.as_fd().as_raw_fd()).unwrap_or(TcpState(0)),
    })
}

/// The first byte of `struct tcp_info` is `tcpi_state`.
fn tcp_state(fd: libc::c_int) -> Option<TcpState> {
    let mut info = [0u8; 8];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: the buffer is live and `len` is its size; the kernel copies at
    // most `len` bytes of tcp_info into it and stores the length written.
    let rc = unsafe {
        libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &mut len)
    };
    (rc == 0 && len >= 1).then_some(TcpState(info[0]))
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream, UdpSocket};

    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    }

    #[test]
    fn apply_then_read_back_from_the_kernel() {
        let (client, _server) = pair();
        let before = KeepaliveOptions::read(&client).unwrap();
        assert!(!before.keepalive);
        let profile = KeepaliveProfile::parse("2/1/3/5000").unwrap();
        assert!(!before.differences(&profile).is_empty());
        apply(&client, &profile, OwnSettings::NONE).unwrap();
        let after = KeepaliveOptions::read(&client).unwrap();
        assert_eq!(
            after,
            KeepaliveOptions {
                keepalive: true,
                idle_secs: 2,
                interval_secs: 1,
                count: 3,
                user_timeout_ms: 5000
            }
        );
        assert_eq!(after.differences(&profile), Vec::<String>::new());
        assert_eq!(after.to_string(), "on 2/1/3/5000ms");
        let other = KeepaliveProfile::parse("2/1/4").unwrap();
        assert_eq!(after.differences(&other), ["count 3, expected 4"]);
    }

    #[test]
    fn own_settings_are_what_differs_from_the_defaults_and_are_kept() {
        let (client, _server) = pair();
        let defaults = KeepaliveDefaults { idle_secs: 7200, interval_secs: 75, count: 9 };
        SockRef::from(&client)
            .set_tcp_keepalive(&TcpKeepalive::new().with_time(Duration::from_secs(15)))
            .unwrap();
        let before = KeepaliveOptions::read(&client).unwrap();
        // Read on this machine, whose sysctls may differ from the kernel's
        // defaults: compare with the namespace's own.
        let ours = crate::sockets::netns::Netns::ours().unwrap().keepalive_defaults().unwrap();
        let keep = before.own_settings(&ours);
        assert_eq!(keep.names(), ["idle"]);
        let profile = KeepaliveProfile::parse("60/10/6/9000").unwrap();
        apply(&client, &profile, keep).unwrap();
        let after = KeepaliveOptions::read(&client).unwrap();
        assert_eq!(after, before.with_profile(&profile, keep));
        assert_eq!(
            (after.idle_secs, after.interval_secs, after.count, after.user_timeout_ms),
            (15, 10, 6, 9000)
        );
        let all = KeepaliveOptions {
            keepalive: true,
            idle_secs: 15,
            interval_secs: 5,
            count: 3,
            user_timeout_ms: 1,
        };
        assert_eq!(all.own_settings(&defaults).names(), ["idle", "interval", "count", "user timeout"]);
        assert!(
            KeepaliveOptions { user_timeout_ms: 0, ..all }
                .own_settings(&KeepaliveDefaults { idle_secs: 15, interval_secs: 5, count: 3 })
                .names()
                .is_empty()
        );
    }

    #[test]
    fn our_own_descriptor_through_a_pidfd_is_the_same_socket() {
        let (client, _server) = pair();
        let pidfd = Pidfd::open(std::process::id()).unwrap();
        let copy = pidfd.dup(client.as_raw_fd()).unwrap();
        apply(&copy, &KeepaliveProfile::parse("7/3/2").unwrap(), OwnSettings::NONE).unwrap();
        drop(copy);
        let options = KeepaliveOptions::read(&client).unwrap();
        assert_eq!(
            (options.keepalive, options.idle_secs, options.interval_secs, options.count),
            (true, 7, 3, 2)
        );
    }

    #[test]
    fn only_tcp_is_a_tcp_endpoint() {
        let (client, _server) = pair();
        let endpoint = tcp_endpoint(&client).unwrap();
        assert_eq!(endpoint.state, TcpState::ESTABLISHED);
        assert_eq!(endpoint.local, Some(client.local_addr().unwrap()));
        assert_eq!(endpoint.remote, Some(client.peer_addr().unwrap()));
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(tcp_endpoint(&udp), None);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(tcp_endpoint(&listener).unwrap().state.name(), "LISTEN");
    }

    #[test]
    fn errors_name_the_process() {
        let error = Pidfd::open(1 << 23).unwrap_err();
        assert!(matches!(error, AccessError::NoSuchProcess { pid } if pid == 1 << 23), "{error:?}");
        let pidfd = Pidfd::open(std::process::id()).unwrap();
        assert!(matches!(pidfd.dup(987_654).unwrap_err(), AccessError::Closed));
    }
}
