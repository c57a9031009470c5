//! COMMAND, the program kawrap runs: the PATH walk of execvp(3) (which
//! `reach` uses too for `#!/usr/bin/env NAME`), and the errors that say why
//! a program cannot be run.
use std::env;
use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, describe};

/// Finds the command the way execvp(3) and shells do, so kawrap can tell
/// "not found" (127) from "cannot execute" (126) before it execs. (The
/// launcher adds the hint for a name that is also a subcommand's.)
pub fn find_command(name: &OsStr) -> Result<PathBuf, Error> {
    if name.is_empty() {
        return Err(not_found(name, "command not found"));
    }
    if name.as_bytes().contains(&b'/') {
        let path = PathBuf::from(name);
        return match fs::metadata(&path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                Err(not_found(name, "no such file or directory"))
            }
            Err(error) => Err(cannot_execute(name, describe(&error))),
            Ok(metadata) => match executable(&path, &metadata) {
                Ok(()) => Ok(path),
                Err(reason) => Err(cannot_execute(name, reason)),
            },
        };
    }
    let mut refused = None;
    for candidate in path_candidates(Path::new(name)) {
        let Ok(metadata) = fs::metadata(&candidate) else { continue };
        if metadata.is_dir() {
            continue;
        }
        match executable(&candidate, &metadata) {
            Ok(()) => return Ok(candidate),
            Err(reason) => {
                refused.get_or_insert((candidate, reason));
            }
        }
    }
    match refused {
        Some((path, reason)) => Err(cannot_execute(path.as_os_str(), reason)),
        None => Err(not_found(name, "command not found")),
    }
}

/// What PATH means when it is not set: glibc's execvp searches
/// confstr(_CS_PATH).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Where execvp(3) looks for a `name` without a `/`, in order: `name` in
/// each PATH entry (an empty entry is the current directory).
pub fn path_candidates(name: &Path) -> Vec<PathBuf> {
    let search = env::var_os("PATH").unwrap_or_else(|| OsString::from(DEFAULT_PATH));
    let dirs = search.as_bytes().split(|&b| b == b':');
    dirs.map(|dir| if dir.is_empty() { Path::new(".") } else { Path::new(OsStr::from_bytes(dir)) })
        .map(|dir| dir.join(name))
        .collect()
}

/// Whether the kernel will let us execute `path`, or why not.
fn executable(path: &Path, metadata: &Metadata) -> Result<(), String> {
    if metadata.is_dir() {
        return Err("is a directory".to_owned());
    }
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| "contains a NUL byte".to_owned())?;
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call;
    // access(2) only reads it.
    if unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(describe(&io::Error::last_os_error()))
    }
}

fn not_found(name: &OsStr, reason: &'static str) -> Error {
    let name = name.to_string_lossy().into_owned();
    let hint = if name.contains('/') {
        "check the path; it is relative to the current directory unless it starts with /".to_owned()
    } else {
        match env::var_os("PATH") {
            Some(path) => format!(
                "looked in PATH={}; give a path (./{name}) to run a program from elsewhere",
                path.to_string_lossy()
            ),
            None => format!(
                "PATH is not set; looked in {DEFAULT_PATH}; give a path (./{name}) to run a program from elsewhere"
            ),
        }
    };
    Error::CommandNotFound { name, reason, hint }
}

fn cannot_execute(name: &OsStr, reason: String) -> Error {
    Error::CannotExecute { name: name.to_string_lossy().into_owned(), reason }
}

/// The found program could not be executed after all.
pub fn exec_error(name: &OsStr, error: io::Error) -> Error {
    match error.raw_os_error() {
        // The file is there (it was just found): what is missing is the
        // interpreter its `#!` line or ELF header names. Shells say 127.
        Some(libc::ENOENT) => Error::CommandNotFound {
            name: name.to_string_lossy().into_owned(),
            reason: "cannot execute: the interpreter it names (its #! line or ELF loader) was not found",
            hint: String::new(),
        },
        Some(libc::ENOEXEC) => cannot_execute(name, "not in an executable format".to_owned()),
        _ => cannot_execute(name, describe(&error)),
    }
}
