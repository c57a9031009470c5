//! Where cgroup v2 and the BPF filesystem are mounted, mounting them when
//! they are not, and the few cgroup files kawrap touches.
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Where kawrap mounts cgroup v2 when the system has not (cgroup v1-only
/// hosts): a private directory, so nothing else is confused by it.
const PRIVATE_CGROUP2: &str = "/run/kawrap/cgroup2";
/// The conventional BPF filesystem mount, which tools such as bpftool expect.
const BPFFS: &str = "/sys/fs/bpf";
/// kawrap's directory on the BPF filesystem.
const PIN_DIR: &str = "kawrap";

/// One line of /proc/self/mountinfo: mount root, mount point, filesystem type.
struct Mount {
    root: String,
    point: PathBuf,
    fstype: String,
}

fn mounts() -> Result<Vec<Mount>, Error> {
    let text =
        fs::read_to_string("/proc/self/mountinfo").map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
    Ok(text.lines().filter_map(parse_mountinfo_line).collect())
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
    let target = CString::new(point.as_os_str().as_encoded_bytes())?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call; data may be null for both filesystems.
    let rc = unsafe { libc::mount(source.as_ptr(), target.as_ptr(), source.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The cgroup v2 hierarchy's mount point (whole hierarchy, root `/`),
/// mounting it at a private directory if the system has none.
pub(crate) fn cgroup2_root() -> Result<PathBuf, Error> {
    let all = mounts()?;
    if let Some(m) = all.iter().find(|m| m.fstype == "cgroup2" && m.root == "/") {
        return Ok(m.point.clone());
    }
    if !filesystem_supported("cgroup2") {
        return Err(Error::NoCgroup2);
    }
    let point = PathBuf::from(PRIVATE_CGROUP2);
    mount("cgroup2", &point).map_err(|e| Error::Mount {
        fstype: "cgroup2",
        point: point.clone(),
        source: e,
    })?;
    Ok(point)
}

/// kawrap's directory on the BPF filesystem (the shared socket map, and one
/// directory per `attach`), mounting the filesystem at /sys/fs/bpf if no BPF
/// filesystem is mounted.
pub(crate) fn pin_root() -> Result<PathBuf, Error> {
    if let Some(bpffs) = mounted_bpffs()? {
        return Ok(bpffs.join(PIN_DIR));
    }
    let point = PathBuf::from(BPFFS);
    mount("bpf", &point).map_err(|e| Error::Mount { fstype: "bpf", point: point.clone(), source: e })?;
    Ok(point.join(PIN_DIR))
}

/// [`pin_root`] if a BPF filesystem is mounted; `status` and `detach` only
/// read, never mount.
pub(crate) fn pin_root_if_mounted() -> Option<PathBuf> {
    Some(mounted_bpffs().ok()??.join(PIN_DIR))
}

/// The BPF filesystem at /sys/fs/bpf if one is mounted there, else the first
/// one mounted anywhere.
fn mounted_bpffs() -> Result<Option<PathBuf>, Error> {
    let all = mounts()?;
    let bpf = || all.iter().filter(|m| m.fstype == "bpf");
    Ok(bpf().find(|m| m.point == Path::new(BPFFS)).or_else(|| bpf().next()).map(|m| m.point.clone()))
}

/// The cgroup v2 this process is in, as a directory under `root`.
pub(crate) fn own_cgroup(root: &Path) -> Result<PathBuf, Error> {
    let text = fs::read_to_string("/proc/self/cgroup").map_err(|e| Error::io("read /proc/self/cgroup", e))?;
    // The v2 line is `0::/path`; with a cgroup namespace the path is relative
    // to the namespace's root, which is also what the mount shows.
    let relative = text.lines().find_map(|line| line.strip_prefix("0::")).unwrap_or("/");
    let dir = root.join(relative.trim_start_matches('/'));
    if dir.is_dir() { Ok(dir) } else { Ok(root.to_path_buf()) }
}

/// The kernel's cgroup id: the inode number of the cgroup v2 directory.
pub(crate) fn cgroup_id(dir: &Path) -> Result<u64, Error> {
    let meta = fs::metadata(dir).map_err(|e| Error::NoSuchCgroup { path: dir.to_path_buf(), source: e })?;
    Ok(meta.ino())
}

/// Checks that `dir` is a directory of a cgroup v2 hierarchy.
pub(crate) fn check_cgroup2_dir(dir: &Path) -> Result<(), Error> {
    let c = CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::NotCgroup2 { path: dir.to_path_buf() })?;
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
