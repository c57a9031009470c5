//! Which processes hold a socket: every `/proc/PID/fd/N` that links to
//! `socket:[INODE]`. The kernel keeps no back-pointer from a socket to its
//! processes; this scan is how `ss -p` and `lsof` find them too.
use std::collections::HashMap;
use std::io;
use std::path::Path;

use serde::Serialize;

/// One descriptor in one process that refers to a socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Owner {
    /// The process.
    pub pid: u32,
    /// Its name (`/proc/PID/comm`).
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
/// them as root; our own user's otherwise). `only`: just that process,
/// whose errors are then reported.
pub fn scan(only: Option<u32>) -> io::Result<(OwnerMap, usize)> {
    let mut map = OwnerMap::new();
    let mut unreadable = 0;
    let pids: Vec<u32> = match only {
        Some(pid) => vec![pid],
        None => std::fs::read_dir("/proc")?
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
    };
    for pid in pids {
        let sockets = match sockets_of(pid) {
            Ok(sockets) => sockets,
            Err(error) if only.is_some() => return Err(error),
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
        let comm = comm(pid);
        for (fd, inode) in sockets {
            map.entry(inode).or_default().push(Owner { pid, comm: comm.clone(), fd });
        }
    }
    Ok((map, unreadable))
}

/// `/proc/PID/comm` without its newline; `?` if it cannot be read.
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|text| text.trim_end_matches('\n').to_owned())
        .unwrap_or_else(|_| "?".to_owned())
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
        let (map, _) = scan(Some(std::process::id())).unwrap();
        let (_, inode) = ours.iter().find(|&&(f, _)| f == fd).unwrap();
        let owners = &map[inode];
        assert_eq!(owners[0].pid, std::process::id());
        assert_eq!(owners[0].fd, fd);
    }

    #[test]
    fn a_missing_process_is_not_found() {
        // pid_max is at most 2^22, so this pid cannot exist.
        let error = scan(Some(1 << 23)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
