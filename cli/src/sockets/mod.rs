//! The kernel's view of TCP sockets, for `kawrap check` and `kawrap attach`.
//!
//! - [`diag`]: every TCP socket of a network namespace, with its state and
//!   armed timer, through sock_diag netlink (what `ss` uses); [`proc_net`]
//!   reads the same from `/proc/net/tcp{,6}` when sock_diag is unavailable.
//! - [`netns`]: the network namespace of a process or of a socket, and
//!   working inside another one.
//! - [`owners`]: which processes hold each socket, from `/proc/PID/fd`.
//! - [`remote`]: a duplicate of another process's socket (pidfd_getfd) and
//!   the keepalive options read from, or applied to, it.
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub mod diag;
pub mod netns;
pub mod owners;
pub mod proc_net;
pub mod remote;

use netns::Netns;

/// A TCP state, numbered as in the kernel's `include/net/tcp_states.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpState(pub u8);

impl TcpState {
    /// `TCP_ESTABLISHED`.
    pub const ESTABLISHED: TcpState = TcpState(1);
    /// `TCP_LISTEN`.
    pub const LISTEN: TcpState = TcpState(10);

    /// The name `ss` prints, so the two outputs can be compared by eye.
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "ESTAB",
            2 => "SYN-SENT",
            3 => "SYN-RECV",
            4 => "FIN-WAIT-1",
            5 => "FIN-WAIT-2",
            6 => "TIME-WAIT",
            7 => "UNCONN",
            8 => "CLOSE-WAIT",
            9 => "LAST-ACK",
            10 => "LISTEN",
            11 => "CLOSING",
            12 => "NEW-SYN-RECV",
            13 => "BOUND-INACTIVE",
            _ => "UNKNOWN",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The timer the kernel has armed on a socket (`idiag_timer`, or the `tr`
/// column of `/proc/net/tcp`), with the time left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// 1: data is unacknowledged and will be retransmitted.
    Retransmit(Duration),
    /// 2: the keepalive timer: the next probe, or the first one after the
    /// idle time. Counts down from TCP_KEEPIDLE after the last packet.
    Keepalive(Duration),
    /// 3: a TIME-WAIT socket waiting to disappear.
    TimeWait(Duration),
    /// 4: the peer advertised a zero window; probing it.
    ZeroWindowProbe(Duration),
}

impl Timer {
    /// Decodes the kernel's timer number; 0 and unknown numbers are no timer.
    pub fn from_kernel(kind: u8, remaining: Duration) -> Option<Timer> {
        match kind {
            1 => Some(Timer::Retransmit(remaining)),
            2 => Some(Timer::Keepalive(remaining)),
            3 => Some(Timer::TimeWait(remaining)),
            4 => Some(Timer::ZeroWindowProbe(remaining)),
            _ => None,
        }
    }

    /// The name `ss -o` uses inside `timer:(…)`.
    pub fn kind(self) -> &'static str {
        match self {
            Timer::Retransmit(_) => "on",
            Timer::Keepalive(_) => "keepalive",
            Timer::TimeWait(_) => "timewait",
            Timer::ZeroWindowProbe(_) => "persist",
        }
    }

    /// What it is, for a sentence.
    pub fn describe(self) -> &'static str {
        match self {
            Timer::Retransmit(_) => "retransmit",
            Timer::Keepalive(_) => "keepalive",
            Timer::TimeWait(_) => "TIME-WAIT",
            Timer::ZeroWindowProbe(_) => "zero-window probe",
        }
    }

    /// Time left until it fires.
    pub fn remaining(self) -> Duration {
        match self {
            Timer::Retransmit(d) | Timer::Keepalive(d) | Timer::TimeWait(d) | Timer::ZeroWindowProbe(d) => d,
        }
    }
}

/// `keepalive,4min59sec`: what `ss -o` prints inside `timer:(…,PROBES)`.
impl fmt::Display for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.kind(), ss_duration(self.remaining()))
    }
}

/// A time left as ss(8) writes it (iproute2's `print_ms_timer`): minutes,
/// then seconds unless there are ten minutes or more, then milliseconds
/// only under ten seconds and no minutes — after a `.` when there are
/// seconds, so that 8.688 s is `8.688ms`: `119min`, `9min59sec`, `1min`,
/// `59sec`, `8.688ms`, `200ms`, and nothing at all for zero.
pub fn ss_duration(left: Duration) -> String {
    let millis = left.as_millis();
    let minutes = millis / 60_000;
    let mut secs = millis / 1000 % 60;
    let mut ms = millis % 1000;
    let mut text = String::new();
    if minutes > 0 {
        ms = 0;
        text.push_str(&format!("{minutes}min"));
        if minutes > 9 {
            secs = 0;
        }
    }
    if secs > 0 {
        if secs > 9 {
            ms = 0;
        }
        text.push_str(&format!("{secs}{}", if ms > 0 { "." } else { "sec" }));
    }
    if ms > 0 {
        text.push_str(&format!("{ms:03}ms"));
    }
    text
}

/// One TCP socket as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    /// Its state.
    pub state: TcpState,
    /// Local address and port.
    pub local: SocketAddr,
    /// Peer address and port (unspecified for listening sockets).
    pub remote: SocketAddr,
    /// The armed timer, if any.
    pub timer: Option<Timer>,
    /// Owner's uid.
    pub uid: u32,
    /// Inode number: what `/proc/PID/fd/N` links to as `socket:[INODE]`.
    /// 0 for sockets no descriptor refers to (TIME-WAIT, not yet accepted).
    pub inode: u64,
}

/// An address for people: IPv4-mapped IPv6 addresses (dual-stack
/// sockets talking to IPv4 peers) are shown as IPv4, as `ss` does.
pub fn show_addr(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{}", v6.port()),
            None => addr.to_string(),
        },
        SocketAddr::V4(_) => addr.to_string(),
    }
}

/// Where a listing came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// sock_diag netlink: millisecond timers.
    #[default]
    SockDiag,
    /// `/proc/net/tcp{,6}`: timers in clock ticks (10 ms).
    ProcNet,
}

impl Source {
    /// How the output names it.
    pub fn name(self) -> &'static str {
        match self {
            Source::SockDiag => "sock_diag",
            Source::ProcNet => "/proc/net/tcp",
        }
    }
}

/// The TCP sockets of a network namespace. sock_diag first; `/proc/…/net/tcp{,6}` when sock_diag cannot
/// be used (no `tcp_diag` module, or the namespace cannot be entered);
/// `fallback_reason` says why it was needed.
pub struct Listing {
    /// The sockets, IPv4 first.
    pub sockets: Vec<TcpSocket>,
    /// Where they came from.
    pub source: Source,
    /// Why sock_diag was not used, if it was not.
    pub fallback_reason: Option<String>,
}

/// Lists every TCP socket in the network namespace `netns`.
pub fn list_tcp(netns: &Netns) -> std::io::Result<Listing> {
    match diag::dump_tcp(netns) {
        Ok(sockets) => Ok(Listing { sockets, source: Source::SockDiag, fallback_reason: None }),
        Err(error) => {
            // A process in the namespace shows it without joining it.
            let sockets = match netns.pid() {
                _ if netns.is_ours() => proc_net::read_tcp("/proc/net")?,
                Some(pid) => proc_net::read_tcp(&format!("/proc/{pid}/net"))?,
                None => netns.run_in(|| proc_net::read_tcp("/proc/thread-self/net"))?,
            };
            Ok(Listing { sockets, source: Source::ProcNet, fallback_reason: Some(error.to_string()) })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn durations_read_like_ss() {
        let ms = Duration::from_millis;
        for (millis, text) in [
            (7_199_900, "119min"),
            (699_700, "11min"),
            (600_000, "10min"),
            (599_900, "9min59sec"),
            (299_000, "4min59sec"),
            (60_700, "1min"),
            (64_500, "1min4sec"),
            (59_999, "59sec"),
            (10_500, "10sec"),
            (8_688, "8.688ms"),
            (1_005, "1.005ms"),
            (2_000, "2sec"),
            (200, "200ms"),
            (5, "005ms"),
            (0, ""),
        ] {
            assert_eq!(ss_duration(ms(millis)), text, "{millis} ms");
        }
        assert_eq!(Timer::Keepalive(ms(299_500)).to_string(), "keepalive,4min59sec");
        assert_eq!(Timer::Retransmit(ms(200)).to_string(), "on,200ms");
    }

    /// sock_diag and the /proc/net/tcp fallback describe the same socket alike.
    #[test]
    fn both_sources_agree_on_our_own_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&client)))
            .unwrap()
            .ino();
        let find = |sockets: Vec<TcpSocket>| sockets.into_iter().find(|s| s.inode == inode).expect("listed");
        let ours = Netns::ours().unwrap();
        let from_diag = find(diag::dump_tcp(&ours).unwrap());
        let from_proc = find(proc_net::read_tcp("/proc/net").unwrap());
        assert_eq!(from_diag, from_proc);
        assert_eq!(from_diag.state, TcpState::ESTABLISHED);
        assert_eq!(from_diag.local, client.local_addr().unwrap());
        assert_eq!(from_diag.remote, listener.local_addr().unwrap());
        // Another process's namespace: our own pid, through its /proc entry.
        let by_pid = find(diag::dump_tcp(&Netns::of_process(std::process::id()).unwrap()).unwrap());
        assert_eq!(by_pid, from_diag);
        let in_thread = find(proc_net::read_tcp("/proc/thread-self/net").unwrap());
        assert_eq!(in_thread, from_proc);
    }
}
