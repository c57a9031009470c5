//! Processes as `/proc` shows them: names, threads, parents, cgroups and
//! mapped libraries — what `kawrap check` and `kawrap attach` need to find
//! the processes a person means and to say what each one is.
//!
//! Everything here is read, never trusted: a name is whatever the process
//! (or another user) chose, so it is printed through `output::printable`.
use std::collections::HashMap;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `/proc/PID/comm` without its newline (bytes that are not UTF-8 shown as
/// U+FFFD); `?` if it cannot be read.
pub fn comm(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/comm"))
        .map(|bytes| String::from_utf8_lossy(bytes.strip_suffix(b"\n").unwrap_or(&bytes)).into_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

/// Every process id in /proc (threads are not listed there).
pub fn all() -> io::Result<Vec<u32>> {
    Ok(std::fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// What a number given as a process id turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A process (a thread group's leader).
    Process,
    /// Another thread of process `tgid`: /proc/TID exists, but the kernel
    /// hands out pidfds and lists descriptors per process.
    Thread { tgid: u32 },
}

/// Whether `pid` is a process or a thread of one; `NotFound` if neither.
pub fn identify(pid: u32) -> io::Result<Identity> {
    let tgid = status_field(pid, "Tgid:")?;
    Ok(if tgid == pid { Identity::Process } else { Identity::Thread { tgid } })
}

/// A number field of `/proc/PID/status` (`Tgid:`, `PPid:`).
fn status_field(pid: u32, name: &str) -> io::Result<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/status has no {name} line")))
}

/// Every process below `roots` (children, their children…), in the order
/// found, without `roots` themselves.
pub fn descendants(roots: &[u32]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in all().unwrap_or_default() {
        // A process that ended meanwhile has no parent to report.
        if let Ok(parent) = status_field(pid, "PPid:") {
            children.entry(parent).or_default().push(pid);
        }
    }
    let mut found: Vec<u32> = Vec::new();
    let mut next = roots.to_vec();
    while let Some(pid) = next.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            if !found.contains(&child) && !roots.contains(&child) {
                found.push(child);
                next.push(child);
            }
        }
    }
    found.sort_unstable();
    found
}

/// Whether `pid` runs in a cgroup named `name` (`backup.service`) or below
/// one, in any hierarchy `/proc/PID/cgroup` lists: the cgroup v2 line
/// (`0::/system.slice/backup.service`) or systemd's v1 one
/// (`1:name=systemd:/system.slice/backup.service`). That is where systemd
/// puts a unit's processes, so this finds them without asking systemd.
pub fn in_cgroup_named(pid: u32, name: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else { return false };
    text.lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .any(|path| path.split('/').any(|part| part == name))
}

/// The cgroup v2 of `pid` as `/proc/PID/cgroup` names it (`0::/PATH`):
/// relative to the root of the hierarchy (of our cgroup namespace). Only
/// the eBPF mode, which works on cgroup v2, asks.
#[cfg(feature = "bpf")]
pub fn cgroup2(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|line| line.strip_prefix("0::")).map(str::to_owned)
}

/// The processes in the cgroup directory `dir` and every cgroup below it
/// (their `cgroup.procs` files).
pub fn in_cgroup_dir(dir: &Path) -> io::Result<Vec<u32>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs"))?;
        found.extend(procs.lines().filter_map(|line| line.trim().parse::<u32>().ok()));
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// Whether a file called `file_name` is mapped into `pid` (from
/// `/proc/PID/maps`, which needs the same rights as reading its memory).
pub fn maps_file_named(pid: u32, file_name: &str) -> io::Result<bool> {
    let maps = std::fs::read(format!("/proc/{pid}/maps"))?;
    Ok(maps.split(|&byte| byte == b'\n').any(|line| {
        // The path is the sixth field; it may contain spaces, never a newline.
        let path = line.splitn(6, |&byte| byte == b' ').nth(5).map(<[u8]>::trim_ascii_start);
        path.is_some_and(|path| {
            Path::new(std::ffi::OsStr::from_bytes(path))
                .file_name()
                .is_some_and(|n| n.as_bytes() == file_name.as_bytes())
        })
    }))
}

/// Runs `work` with the id of another thread of this process, alive
/// until `work` returns.
#[cfg(test)]
pub fn with_a_thread<T>(work: impl FnOnce(u32) -> T) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tx.send(unsafe { libc::gettid() } as u32).unwrap();
        let _ = done_rx.recv();
    });
    let result = work(rx.recv().unwrap());
    done_tx.send(()).unwrap();
    thread.join().unwrap();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn we_are_a_process_and_our_threads_are_not() {
        let us = std::process::id();
        assert_eq!(identify(us).unwrap(), Identity::Process);
        with_a_thread(|tid| assert_eq!(identify(tid).unwrap(), Identity::Thread { tgid: us }));
        assert_eq!(identify(1 << 23).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_child_is_a_descendant() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let found = descendants(&[std::process::id()]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
    }

    #[test]
    fn our_own_maps_have_libc() {
        assert!(maps_file_named(std::process::id(), "libc.so.6").unwrap());
        assert!(!maps_file_named(std::process::id(), "libkawrap.so").unwrap());
    }

    #[test]
    fn comm_is_the_name() {
        let comm = comm(std::process::id());
        assert!(!comm.is_empty() && !comm.ends_with('\n'), "{comm:?}");
        assert_eq!(super::comm(1 << 23), "?");
    }
}
