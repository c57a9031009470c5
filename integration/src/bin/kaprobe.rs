//! kaprobe: a tiny program whose socket calls go through libc exactly as a
//! C program's do, so tests can run it with and without libkawrap.so and
//! read each socket's options back from the kernel.
//!
//! Arguments are steps, run in order on "the current socket":
//! - `socket:FAMILY:TYPE[:FLAGS[:PROTO]]` — FAMILY inet|inet6|unix|9999,
//!   TYPE stream|dgram|raw, FLAGS `cloexec,nonblock` or `-`, PROTO a number
//! - `rawsocket:FAMILY:TYPE` — the same through syscall(SYS_socket), bypassing any hook
//! - `set:OPT=N` — setsockopt, OPT keepalive|idle|intvl|cnt|ut
//! - `connect:ADDR:PORT` (`[v6]:port` for IPv6)
//! - `listen`, `accept` (accepted socket becomes current), `close`
//! - `print` — `keepalive=1 idle=300 intvl=30 cnt=5 ut=0` (`E<errno>` for a failed read)
//! - `sleep:SECS`, `read` (block until EOF/error; prints `read=N errno=E elapsed=S`)
//! - `fds` — number of open descriptors in /proc/self/fd
//! - `port` — the current socket's local port (`port=N`)
//! - `pid` — this process's id (`pid=N`)
//! - `netns:PATH` — setns(2) into the network namespace PATH (`/run/netns/NAME`)
//! - `unshare:net` — unshare(CLONE_NEWNET): a new, empty network namespace
//! - `name:TEXT` — prctl(PR_SET_NAME): what /proc/PID/comm shows (any bytes)
//! - `sockets:N` — N more TCP sockets, never connected (RLIMIT_NOFILE raised to fit)
//! - `drop:UID` — become user and group UID (from root), and stay dumpable so
//!   that the same user may look into this process
//!
//! Every call prints `STEP=RESULT errno=E`.
use std::ffi::c_int;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Instant;

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn family(name: &str) -> c_int {
    match name {
        "inet" => libc::AF_INET,
        "inet6" => libc::AF_INET6,
        "unix" => libc::AF_UNIX,
        other => other.parse().expect("family"),
    }
}

fn kind(name: &str, flags: &str) -> c_int {
    let base = match name {
        "stream" => libc::SOCK_STREAM,
        "dgram" => libc::SOCK_DGRAM,
        "raw" => libc::SOCK_RAW,
        other => other.parse().expect("type"),
    };
    flags.split(',').fold(base, |k, flag| match flag {
        "cloexec" => k | libc::SOCK_CLOEXEC,
        "nonblock" => k | libc::SOCK_NONBLOCK,
        _ => k,
    })
}

fn option(name: &str) -> (c_int, c_int) {
    match name {
        "keepalive" => (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        "idle" => (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
        "intvl" => (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
        "cnt" => (libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
        "ut" => (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
        other => panic!("unknown option {other}"),
    }
}

fn get(fd: c_int, name: &str) -> String {
    let (level, opt) = option(name);
    let mut value: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: value/len are live and sized for a c_int.
    let rc = unsafe { libc::getsockopt(fd, level, opt, &mut value as *mut c_int as *mut _, &mut len) };
    if rc == 0 { value.to_string() } else { format!("E{}", errno()) }
}

fn sockaddr(text: &str) -> (libc::sockaddr_storage, libc::socklen_t) {
    let addr: SocketAddr = text.parse().expect("ADDR:PORT");
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: v6.ip().octets() },
                sin6_scope_id: 0,
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in6.
            unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn main() {
    let mut fd: c_int = -1;
    let mut out = std::io::stdout().lock();
    for step in std::env::args().skip(1) {
        let (verb, rest) = step.split_once(':').unwrap_or((&step, ""));
        let line = match verb {
            "socket" | "rawsocket" => {
                let parts: Vec<&str> = rest.split(':').collect();
                let flags = parts.get(2).copied().unwrap_or("-");
                let proto: c_int = parts.get(3).map_or(0, |p| p.parse().expect("proto"));
                let (f, k) = (family(parts[0]), kind(parts[1], flags));
                // SAFETY: plain socket creation.
                fd = unsafe {
                    if verb == "socket" {
                        libc::socket(f, k, proto)
                    } else {
                        libc::syscall(libc::SYS_socket, f, k, proto) as c_int
                    }
                };
                format!("{verb}={} errno={}", if fd >= 0 { 0 } else { -1 }, if fd < 0 { errno() } else { 0 })
            }
            "set" => {
                let (name, value) = rest.split_once('=').expect("set:OPT=N");
                let (level, opt) = option(name);
                let value: c_int = value.parse().expect("value");
                // SAFETY: value is a live c_int.
                let rc = unsafe { libc::setsockopt(fd, level, opt, &value as *const c_int as *const _, 4) };
                format!("set={rc} errno={}", if rc < 0 { errno() } else { 0 })
            }
            "connect" => {
                let (storage, len) = sockaddr(rest);
                // SAFETY: storage holds a sockaddr of len bytes.
                let rc = unsafe { libc::connect(fd, &storage as *const _ as *const libc::sockaddr, len) };
                format!("connect={rc} errno={}", if rc < 0 { errno() } else { 0 })
            }
            "listen" => {
                // SAFETY: plain listen.
                let rc = unsafe { libc::listen(fd, 16) };
                format!("listen={rc} errno={}", if rc < 0 { errno() } else { 0 })
            }
            "accept" => {
                // SAFETY: plain accept without address.
                let accepted = unsafe { libc::accept(fd, std::ptr::null_mut(), std::ptr::null_mut()) };
                let e = if accepted < 0 { errno() } else { 0 };
                fd = accepted;
                format!("accept={} errno={e}", accepted.min(0))
            }
            "close" => {
                // SAFETY: closing our own fd.
                let rc = unsafe { libc::close(fd) };
                format!("close={rc} errno={}", if rc < 0 { errno() } else { 0 })
            }
            "print" => ["keepalive", "idle", "intvl", "cnt", "ut"]
                .iter()
                .map(|name| format!("{name}={}", get(fd, name)))
                .collect::<Vec<_>>()
                .join(" "),
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs_f64(rest.parse().expect("secs")));
                continue;
            }
            "read" => {
                let start = Instant::now();
                let mut buf = [0u8; 4096];
                let n = loop {
                    // SAFETY: buf is live and sized.
                    let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut _, buf.len()) };
                    if n <= 0 {
                        break n;
                    }
                };
                format!(
                    "read={n} errno={} elapsed={:.2}",
                    if n < 0 { errno() } else { 0 },
                    start.elapsed().as_secs_f64()
                )
            }
            "pid" => format!("pid={}", std::process::id()),
            "port" => {
                // SAFETY: an all-zero sockaddr_storage is valid; len is its size.
                let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
                let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                // SAFETY: storage and len are live; the kernel writes at most len bytes.
                let rc =
                    unsafe { libc::getsockname(fd, &mut storage as *mut _ as *mut libc::sockaddr, &mut len) };
                // sin_port and sin6_port are at the same offset, network order.
                // SAFETY: sockaddr_storage is larger than sockaddr_in.
                let port = unsafe { (*(&storage as *const _ as *const libc::sockaddr_in)).sin_port };
                format!(
                    "port={} errno={}",
                    if rc == 0 { u16::from_be(port) } else { 0 },
                    if rc < 0 { errno() } else { 0 }
                )
            }
            "netns" => {
                let ns = std::fs::File::open(rest).expect("open the namespace file");
                // SAFETY: ns is an open nsfs file; only this (single-threaded) process moves.
                let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
                format!("netns={rc} errno={}", if rc < 0 { errno() } else { 0 })
            }
            "unshare" => {
                assert_eq!(rest, "net", "only unshare:net");
                // SAFETY: unshare has no memory-safety preconditions.
                let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
                format!("unshare={rc} errno={}", if rc < 0 { errno() } else { 0 })
            }
            "name" => {
                let name = std::ffi::CString::new(rest).expect("no NUL in a name");
                // SAFETY: PR_SET_NAME reads a NUL-terminated string (the kernel keeps 15 bytes).
                let rc = unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
                format!("name={rc} errno={}", if rc < 0 { errno() } else { 0 })
            }
            "drop" => {
                let id: libc::uid_t = rest.parse().expect("drop:UID");
                // SAFETY: plain credential calls; the process is single-threaded.
                let rc = unsafe {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setresgid(id, id, id) != 0
                        || libc::setresuid(id, id, id) != 0
                    {
                        -1
                    } else {
                        libc::prctl(libc::PR_SET_DUMPABLE, 1)
                    }
                };
                format!("drop={rc} errno={}", if rc < 0 { errno() } else { 0 })
            }
            "sockets" => {
                let count: u64 = rest.parse().expect("sockets:N");
                let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                // SAFETY: limit is a live rlimit.
                unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
                limit.rlim_cur = limit.rlim_max.min(count + 64).max(limit.rlim_cur);
                // SAFETY: limit is a live rlimit.
                unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
                let made = (0..count)
                    // SAFETY: plain socket creation; the sockets stay open until exit.
                    .map(|_| unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) })
                    .filter(|&fd| fd >= 0)
                    .count();
                format!("sockets={made} errno={}", if made as u64 == count { 0 } else { errno() })
            }
            "fds" => format!("fds={}", std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)),
            other => panic!("unknown step {other}"),
        };
        writeln!(out, "{line}").ok();
        out.flush().ok();
    }
}
