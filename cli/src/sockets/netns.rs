//! Network namespaces: which one a process or a socket lives in, and doing
//! something inside one.
//!
//! A socket stays in the namespace it was created in, whatever its owner
//! does afterwards (`unshare`, `setns`), so the only sure way to find where
//! a socket lives is to ask the socket: `ioctl(SIOCGSKNS)` on a copy of it
//! returns its namespace. sock_diag and the `net.ipv4.tcp_keepalive_*`
//! sysctls answer for the namespace of whoever asks, so to ask about
//! another one, a short-lived thread joins it first (`setns` changes only
//! the calling thread; it needs CAP_SYS_ADMIN).
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd};
use std::os::unix::fs::MetadataExt;

/// `SIOCGSKNS` from `<linux/sockios.h>` (Linux ≥ 4.9): a new descriptor
/// for the network namespace of a socket. Not in the libc crate.
const SIOCGSKNS: libc::c_ulong = 0x894C;

/// A namespace's identity: the device and inode of its nsfs file, what
/// `ls -iL /proc/PID/ns/net` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetnsId {
    dev: u64,
    ino: u64,
}

impl NetnsId {
    fn of(file: &File) -> io::Result<NetnsId> {
        let meta = file.metadata()?;
        Ok(NetnsId { dev: meta.dev(), ino: meta.ino() })
    }
}

/// One network namespace, held open so that it cannot go away meanwhile.
#[derive(Debug)]
pub struct Netns {
    id: NetnsId,
    /// The nsfs file; `None` for our own namespace (nothing to join).
    file: Option<File>,
    /// A process that lives in it, whose `/proc/PID/net` shows it without
    /// joining it (the fallback listing needs no privilege that way).
    pid: Option<u32>,
}

impl Netns {
    /// The namespace kawrap runs in.
    pub fn ours() -> io::Result<Netns> {
        let file = File::open("/proc/self/ns/net")?;
        Ok(Netns { id: NetnsId::of(&file)?, file: None, pid: None })
    }

    /// The namespace process `pid` lives in now.
    pub fn of_process(pid: u32) -> io::Result<Netns> {
        let file = File::open(format!("/proc/{pid}/ns/net"))?;
        Netns::from_file(file, Some(pid))
    }

    /// The namespace the socket `fd` (a copy of another process's socket)
    /// lives in. Needs CAP_NET_ADMIN over that namespace.
    pub fn of_socket(fd: &impl AsFd) -> io::Result<Netns> {
        // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor
        // or -1; `fd` is an open socket.
        let ns = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), SIOCGSKNS as _) };
        if ns < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        let file = unsafe { File::from_raw_fd(ns) };
        Netns::from_file(file, None)
    }

    fn from_file(file: File, pid: Option<u32>) -> io::Result<Netns> {
        let id = NetnsId::of(&file)?;
        let ours = Netns::ours()?;
        let file = (id != ours.id).then_some(file);
        Ok(Netns { id, file, pid })
    }

    /// Its identity.
    pub fn id(&self) -> NetnsId {
        self.id
    }

    /// Whether it is kawrap's own.
    pub fn is_ours(&self) -> bool {
        self.file.is_none()
    }

    /// A process living in it, if one is known.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Runs `work` inside this namespace: on a thread that joins it first,
    /// or right here for our own.
    pub fn run_in<T: Send>(&self, work: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        let Some(file) = &self.file else { return work() };
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: `file` is an open nsfs file; setns changes only
                    // this thread's network namespace, and the thread ends
                    // right after `work`.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        let error = io::Error::last_os_error();
                        let whose = self.pid.map_or_else(String::new, |pid| format!(" of process {pid}"));
                        return Err(io::Error::new(
                            error.kind(),
                            format!("cannot enter the network namespace{whose}: {error}"),
                        ));
                    }
                    work()
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
        })
    }

    /// The keepalive values a TCP socket in this namespace gets when nobody
    /// sets them: its `net.ipv4.tcp_keepalive_{time,intvl,probes}`.
    pub fn keepalive_defaults(&self) -> io::Result<KeepaliveDefaults> {
        self.run_in(|| {
            // /proc/sys/net shows the namespace of the thread that opens it.
            let read = |name: &str| -> io::Result<u32> {
                let path = format!("/proc/sys/net/ipv4/{name}");
                let text = std::fs::read_to_string(&path)?;
                text.trim()
                    .parse()
                    .map_err(|_| io::Error::other(format!("{path}: {:?} is not a number", text.trim())))
            };
            Ok(KeepaliveDefaults {
                idle_secs: read("tcp_keepalive_time")?,
                interval_secs: read("tcp_keepalive_intvl")?,
                count: read("tcp_keepalive_probes")?,
            })
        })
    }
}

/// What TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT read as on a socket
/// whose program never set them: the namespace's sysctls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepaliveDefaults {
    /// net.ipv4.tcp_keepalive_time, seconds.
    pub idle_secs: u32,
    /// net.ipv4.tcp_keepalive_intvl, seconds.
    pub interval_secs: u32,
    /// net.ipv4.tcp_keepalive_probes.
    pub count: u32,
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn a_socket_and_its_process_share_our_namespace() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let ours = Netns::ours().unwrap();
        assert!(ours.is_ours());
        let process = Netns::of_process(std::process::id()).unwrap();
        assert_eq!(process.id(), ours.id());
        assert!(process.is_ours());
        // SIOCGSKNS needs CAP_NET_ADMIN; without it there is nothing to compare.
        if let Ok(socket) = Netns::of_socket(&listener) {
            assert_eq!(socket.id(), ours.id());
        }
        let defaults = ours.keepalive_defaults().unwrap();
        assert!(defaults.idle_secs > 0 && defaults.count > 0, "{defaults:?}");
    }
}
