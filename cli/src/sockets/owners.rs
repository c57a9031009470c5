//! Which processes hold a socket: every `/proc/PID/fd/N` that links to
//! `socket:[INODE]`. The kernel keeps no back-pointer from a socket to its
//! processes; this scan is how `ss -p` and `lsof` find them too.
use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::processes;

/// One descriptor in one process that refers to a socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// The process.
    pub pid: u32,
    /// Its name (`/proc/PID/comm`), as the process set it: print it
    /// through `output::printable`.
    pub comm: String,
    /// The descriptor number in that process.
    pub fd: i32,
}

/// Socket inode → the descriptors that refer to it.
pub type OwnerMap = HashMap<u64, Vec<Owner>>;

/// The sockets of one process: (fd, inode), in fd order. Errors are the
/// process's: gone (`NotFound`) or not ours to look at (`PermissionDenied`).
pub fn sockets_of(pid: u32) -> io::Result<Vec<(i32, u64)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|name| name.parse::<i32>().ok()) else {
            continue;
        };
        // A descriptor closed since read_dir listed it is simply skipped.
        if let Some(inode) = std::fs::read_link(entry.path()).ok().as_deref().and_then(socket_inode) {
            found.push((fd, inode));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Owners of every socket, from every process we may look into (all of
/// them as root; our own user's otherwise), and how many processes could
/// not be looked into. `only`: just those processes, whose errors are then
/// reported (the first one, with its pid) — except that a process that has
/// ended meanwhile simply holds nothing.
pub fn scan(only: Option<&[u32]>) -> Result<(OwnerMap, usize), (Option<u32>, io::Error)> {
    let mut map = OwnerMap::new();
    let mut unreadable = 0;
    let pids: Vec<u32> = match only {
        Some(pids) => pids.to_vec(),
        None => processes::all().map_err(|error| (None, error))?,
    };
    for pid in pids {
        let sockets = match sockets_of(pid) {
            Ok(sockets) => sockets,
            Err(error) if only.is_some() && error.kind() != io::ErrorKind::NotFound => {
                return Err((Some(pid), error));
            }
            Err(error) => {
                // Gone since /proc was listed: nothing to count.
                if error.kind() == io::ErrorKind::PermissionDenied {
                    unreadable += 1;
                }
                continue;
            }
        };
        if sockets.is_empty() {
            continue;
        }
        let comm = processes::comm(pid);
        for (fd, inode) in sockets {
            map.entry(inode).or_default().push(Owner { pid, comm: comm.clone(), fd });
        }
    }
    Ok((map, unreadable))
}

/// The protocol of socket `fd` of process `pid`, as the kernel names it
/// (`TCP`, `TCPv6`, `UDP`, `UNIX-STREAM`…): the `system.sockprotoname`
/// attribute of `/proc/PID/fd/N`. Needs no copy of the socket, only the
/// right to look into the process.
pub fn protocol(pid: u32, fd: i32) -> io::Result<String> {
    let path = CString::new(format!("/proc/{pid}/fd/{fd}")).map_err(io::Error::other)?;
    let name = c"system.sockprotoname";
    let mut value = [0u8; 64];
    // SAFETY: both strings are NUL-terminated and live; the kernel writes
    // at most `value.len()` bytes into the buffer and returns the length.
    let len = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    let Ok(len) = usize::try_from(len) else { return Err(io::Error::last_os_error()) };
    let value = &value[..len.min(value.len())];
    Ok(String::from_utf8_lossy(value.strip_suffix(&[0]).unwrap_or(value)).into_owned())
}

/// Whether a protocol name from [`protocol`] is TCP over IPv4 or IPv6.
pub fn is_tcp(protocol: &str) -> bool {
    matches!(protocol, "TCP" | "TCPv6")
}

/// How many TCP sockets process `pid` holds (0 if it cannot be looked into).
pub fn tcp_socket_count(pid: u32) -> usize {
    let sockets = sockets_of(pid).unwrap_or_default();
    sockets.iter().filter(|&&(fd, _)| protocol(pid, fd).is_ok_and(|p| is_tcp(&p))).count()
}

/// `socket:[12345]` → 12345.
fn socket_inode(target: &Path) -> Option<u64> {
    target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn parses_socket_links_only() {
        assert_eq!(socket_inode(Path::new("socket:[4242]")), Some(4242));
        assert_eq!(socket_inode(Path::new("pipe:[4242]")), None);
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
    }

    #[test]
    fn finds_our_own_listening_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = listener.as_raw_fd();
        let ours = sockets_of(std::process::id()).unwrap();
        assert!(ours.iter().any(|&(f, _)| f == fd), "{ours:?} lacks fd {fd}");
        let (map, _) = scan(Some(&[std::process::id()])).unwrap();
        let (_, inode) = ours.iter().find(|&&(f, _)| f == fd).unwrap();
        let owners = &map[inode];
        assert_eq!(owners[0].pid, std::process::id());
        assert_eq!(owners[0].fd, fd);
        assert_eq!(protocol(std::process::id(), fd).unwrap(), "TCP");
        assert!(tcp_socket_count(std::process::id()) >= 1);
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(protocol(std::process::id(), udp.as_raw_fd()).unwrap(), "UDP");
    }

    #[test]
    fn a_process_that_ended_holds_nothing() {
        // pid_max is at most 2^22, so this pid cannot exist.
        let (map, unreadable) = scan(Some(&[1 << 23])).unwrap();
        assert!(map.is_empty());
        assert_eq!(unreadable, 0);
    }
}
