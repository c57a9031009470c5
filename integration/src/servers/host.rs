//! What this machine offers the servers and their clients: free ports,
//! programs in `PATH`, the system's Python, users.
use std::ffi::CString;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A free TCP port on 127.0.0.1 (the kernel's choice for a bind to port 0).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// True if `program` is an executable file, given as a path or found in `PATH`.
pub fn have_program(program: &str) -> bool {
    find_program(program).is_some()
}

/// `program` as a path: itself if it contains a `/`, else its first match in `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let executable =
        |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        let path = PathBuf::from(program);
        return executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| executable(p))
}

/// Why a server's tests cannot run here when one of `programs` is not in
/// `PATH`: the first one missing, and the packages that install it.
pub(super) fn missing_program(programs: &[&str], packages: &str) -> Option<String> {
    programs
        .iter()
        .find(|bin| !have_program(bin))
        .map(|bin| format!("{bin} missing (apt-get install {packages})"))
}

/// The system's Python 3, not a version manager's shim script in `PATH`
/// (the distribution's interpreter is what the tests are about).
pub fn python3() -> PathBuf {
    let system = PathBuf::from("/usr/bin/python3");
    if system.is_file() { system } else { find_program("python3").unwrap_or_else(|| "python3".into()) }
}

/// A user's uid and gid from the password database.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    // SAFETY: getpwnam returns NULL or a pointer to a static record, read at once;
    // the tests do not call getpw* concurrently with a meaning that could race.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: pw is non-NULL and points at a valid passwd record.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}
