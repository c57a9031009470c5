//! Where cgroup v2 and the BPF filesystem are mounted, mounting cgroup v2
//! privately when it is not, and the few cgroup files kawrap touches.
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::sys::c_path;

/// Where kawrap mounts cgroup v2 for a moment when the system has not
/// (cgroup v1-only hosts), and where it keeps its list of scopes.
pub(crate) const RUN_DIR: &str = "/run/kawrap";
/// The conventional BPF filesystem mount, which tools such as bpftool and
/// systemd's BPFProgram= expect.
pub(crate) const BPFFS: &str = "/sys/fs/bpf";
/// kawrap's directory on the BPF filesystem.
pub(crate) const PIN_DIR: &str = "kawrap";

/// One line of /proc/self/mountinfo: mount root, mount point, filesystem type.
struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
}

/// The mounts this process sees, as /proc/self/mountinfo lists them at the
/// time it is read.
pub(crate) struct Mounts(Vec<Mount>);

impl Mounts {
    pub(crate) fn read() -> Result<Mounts, Error> {
        let text = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
        Ok(Mounts(text.lines().filter_map(parse_mountinfo_line).collect()))
    }

    /// kawrap's directory on the mounted BPF filesystem (at /sys/fs/bpf if
    /// one is mounted there, else the first one mounted anywhere); `None` if
    /// no BPF filesystem is mounted.
    pub(crate) fn pin_root(&self) -> Option<PathBuf> {
        let bpf = || self.0.iter().filter(|m| m.fstype == "bpf");
        let mounted = bpf().find(|m| m.point == Path::new(BPFFS)).or_else(|| bpf().next());
        mounted.map(|m| m.point.join(PIN_DIR))
    }
}

/// `36 35 98:0 /root /mnt/point rw,noatime master:1 - ext3 /dev/root rw`
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let fields: Vec<&str> = left.split(' ').collect();
    let fstype = right.split(' ').next()?;
    Some(Mount {
        root: unescape(fields.get(3)?),
        point: PathBuf::from(unescape(fields.get(4)?)),
        fstype: fstype.to_string(),
    })
}

/// mountinfo writes space, tab, newline and backslash as `\040`-style octal.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(digits) => {
                out.push(digits.iter().fold(0u8, |acc, d| acc.wrapping_mul(8).wrapping_add(d - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn filesystem_supported(name: &str) -> bool {
    fs::read_to_string("/proc/filesystems")
        .map(|text| text.lines().any(|line| line.split_whitespace().last() == Some(name)))
        .unwrap_or(false)
}

fn mount(fstype: &str, point: &Path) -> io::Result<()> {
    fs::create_dir_all(point)?;
    let source = CString::new(fstype)?;
    let target = c_path(point)?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call; data may be null for both filesystems.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), source.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The cgroup v2 hierarchy, as this process reaches it.
pub(crate) struct Cgroup2 {
    /// The mount point; or `/proc/self/fd/N` of `private`.
    root: PathBuf,
    /// When the system has no cgroup2 mount: the root of one kawrap
    /// mounted and detached again at once, so that nothing stays mounted;
    /// it is reachable through this descriptor for as long as it is open.
    private: Option<OwnedFd>,
}

impl Cgroup2 {
    /// The system's cgroup v2 mount (whole hierarchy, root `/`), or a
    /// private one when there is none.
    pub(crate) fn find_or_mount(mounts: &Mounts) -> Result<Cgroup2, Error> {
        if let Some(m) = mounts.0.iter().find(|m| m.fstype == "cgroup2" && m.root == "/") {
            return Ok(Cgroup2 { root: m.point.clone(), private: None });
        }
        if !filesystem_supported("cgroup2") {
            return Err(Error::NoCgroup2);
        }
        let point = PathBuf::from(RUN_DIR).join(format!("cgroup2.{}", std::process::id()));
        let mount_error = |e| Error::Mount { fstype: "cgroup2", point: point.clone(), source: e };
        mount("cgroup2", &point).map_err(mount_error)?;
        let opened = open_path(&point);
        let target = c_path(&point).map_err(mount_error)?;
        // SAFETY: a NUL-terminated path; MNT_DETACH only unhooks the mount
        // from the tree, the descriptor keeps it usable.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        let _ = fs::remove_dir(&point);
        let fd = opened.map_err(mount_error)?;
        Ok(Cgroup2 { root: PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())), private: Some(fd) })
    }

    /// The hierarchy's root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `dir` as /proc/self/cgroup writes it: relative to the root.
    pub(crate) fn relative<'a>(&self, dir: &'a Path) -> Option<&'a Path> {
        dir.strip_prefix(&self.root).ok()
    }

    /// `dir` for a person: its path, or, under a private mount, its path in
    /// the hierarchy (`cgroup2:/kawrap-1-0`).
    pub(crate) fn display(&self, dir: &Path) -> String {
        match (&self.private, self.relative(dir)) {
            (Some(_), Some(relative)) => format!("cgroup2:/{}", relative.display()),
            _ => dir.display().to_string(),
        }
    }

    /// The cgroup v2 this process is in.
    pub(crate) fn own_cgroup(&self) -> Result<PathBuf, Error> {
        let text =
            fs::read_to_string("/proc/self/cgroup").map_err(|e| Error::io("read /proc/self/cgroup", e))?;
        // The v2 line is `0::/path`; with a cgroup namespace the path is
        // relative to the namespace's root, which is also what the mount shows.
        let relative = text.lines().find_map(|line| line.strip_prefix("0::")).unwrap_or("/");
        let dir = self.root.join(relative.trim_start_matches('/'));
        if dir.is_dir() { Ok(dir) } else { Ok(self.root.clone()) }
    }
}

fn open_path(dir: &Path) -> io::Result<OwnedFd> {
    let c = c_path(dir)?;
    // SAFETY: a NUL-terminated path; the new fd is owned right away.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// kawrap's directory on the BPF filesystem, mounting one at /sys/fs/bpf
/// (where systemd mounts it at boot) if there is none: for pins that must
/// outlive kawrap, which is what the caller asked for.
pub(crate) fn pin_root_or_mount() -> Result<PathBuf, Error> {
    if let Some(root) = Mounts::read()?.pin_root() {
        return Ok(root);
    }
    let point = PathBuf::from(BPFFS);
    mount("bpf", &point).map_err(|e| Error::Mount { fstype: "bpf", point: point.clone(), source: e })?;
    Ok(point.join(PIN_DIR))
}

/// The kernel's cgroup id: the inode number of the cgroup v2 directory.
pub(crate) fn cgroup_id(dir: &Path) -> Result<u64, Error> {
    let meta = fs::metadata(dir).map_err(|e| Error::NoSuchCgroup { path: dir.to_path_buf(), source: e })?;
    Ok(meta.ino())
}

/// Checks that `dir` is a directory of a cgroup v2 hierarchy.
pub(crate) fn check_cgroup2_dir(dir: &Path) -> Result<(), Error> {
    let meta = fs::metadata(dir).map_err(|e| Error::NoSuchCgroup { path: dir.to_path_buf(), source: e })?;
    if !meta.is_dir() {
        return Err(Error::NotADirectory { path: dir.to_path_buf() });
    }
    let c = c_path(dir).map_err(|_| Error::NotCgroup2 { path: dir.to_path_buf() })?;
    // SAFETY: statfs only writes into the zeroed struct we own.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated, `buf` is a valid out pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut buf) } != 0 {
        return Err(Error::NoSuchCgroup { path: dir.to_path_buf(), source: io::Error::last_os_error() });
    }
    if buf.f_type != libc::CGROUP2_SUPER_MAGIC {
        return Err(Error::NotCgroup2 { path: dir.to_path_buf() });
    }
    Ok(())
}

/// Every cgroup directory under `root`, `root` included, parents first.
pub(crate) fn walk_cgroups(root: &Path) -> Vec<PathBuf> {
    let mut found = vec![root.to_path_buf()];
    let mut next = 0;
    while next < found.len() {
        if let Ok(entries) = fs::read_dir(&found[next]) {
            let mut children: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            children.sort();
            found.extend(children);
        }
        next += 1;
    }
    found
}

/// Whether a process is in the cgroup or in one below it (`populated 1` in
/// its cgroup.events).
pub(crate) fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|text| text.lines().any(|l| l == "populated 1"))
}

/// Removes the cgroup `dir` and every cgroup below it, deepest first (a
/// nested `kawrap --bpf` that was killed, a `mkdir` by the command). Fails
/// with EBUSY, having removed only empty ones, while a process is in any.
/// The programs attached to a cgroup are detached when it is removed.
pub(crate) fn remove_cgroup_tree(dir: &Path) -> io::Result<()> {
    for cgroup in walk_cgroups(dir).iter().rev() {
        match fs::remove_dir(cgroup) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The process ids in a cgroup (its `cgroup.procs`).
pub(crate) fn procs(dir: &Path) -> Vec<libc::pid_t> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mountinfo() {
        let m = parse_mountinfo_line("41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw")
            .unwrap();
        assert_eq!(
            (m.root.as_str(), m.point.as_path(), m.fstype.as_str()),
            ("/", Path::new("/sys/fs/cgroup/unified"), "cgroup2")
        );
        let m = parse_mountinfo_line("50 31 0:40 / /mnt/with\\040space rw shared:5 - bpf bpf rw").unwrap();
        assert_eq!(m.point, Path::new("/mnt/with space"));
        assert_eq!(m.fstype, "bpf");
        assert!(parse_mountinfo_line("garbage").is_none());
    }

    #[test]
    fn unescapes_octal_only() {
        assert_eq!(unescape("a\\134b\\011c"), "a\\b\tc");
        assert_eq!(unescape("tail\\04"), "tail\\04");
    }
}
