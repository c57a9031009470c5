//! libkawrap.so: where it is, and the LD_PRELOAD value that loads it
//! (ld.so's own reading of that variable: entries split at spaces and
//! colons).
use std::env;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, describe};

/// The file name of the shim, wherever it is installed.
pub const LIB_NAME: &str = "libkawrap.so";

/// The variable that names libkawrap.so when --lib does not.
const LIB_VAR: &str = "KAWRAP_LIB";

/// Finds libkawrap.so: the path given (--lib), else $KAWRAP_LIB, else next
/// to the kawrap binary (where cargo builds both), else `../lib/kawrap/`
/// from it (an installed `PREFIX/bin/kawrap` with
/// `PREFIX/lib/kawrap/libkawrap.so`). The result is absolute, canonical and
/// a regular file: LD_PRELOAD gets nothing else.
pub fn find_lib(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let from_env = env::var_os(LIB_VAR).map(PathBuf::from);
    let explicit = explicit.or(from_env.as_deref());
    if let Some(path) = explicit.filter(|path| !path.as_os_str().is_empty()) {
        let bad = |reason: String| Error::BadLib { path: path.to_owned(), reason };
        let absolute = std::path::absolute(path).map_err(|error| bad(describe(&error)))?;
        let metadata = fs::metadata(&absolute).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => bad(format!("{} does not exist", absolute.display())),
            _ => bad(describe(&error)),
        })?;
        if !metadata.is_file() {
            return Err(bad(format!("{} is not a regular file", absolute.display())));
        }
        let canonical = fs::canonicalize(&absolute).map_err(|error| bad(describe(&error)))?;
        return preloadable(canonical).map_err(bad);
    }
    let exe = env::current_exe()
        .and_then(fs::canonicalize)
        .map_err(|error| Error::io("cannot tell where the kawrap binary is", error))?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    let mut searched = vec![dir.join(LIB_NAME)];
    if let Some(prefix) = dir.parent() {
        searched.push(prefix.join("lib").join("kawrap").join(LIB_NAME));
    }
    for candidate in &searched {
        if fs::metadata(candidate).is_ok_and(|metadata| metadata.is_file()) {
            let canonical = fs::canonicalize(candidate)
                .map_err(|error| Error::io(format!("cannot resolve {}", candidate.display()), error))?;
            return preloadable(canonical)
                .map_err(|reason| Error::BadLib { path: candidate.clone(), reason });
        }
    }
    Err(Error::LibNotFound { searched })
}

/// ld.so splits LD_PRELOAD at spaces and colons, so a path containing one
/// cannot be preloaded at all.
fn preloadable(path: PathBuf) -> Result<PathBuf, String> {
    if path.as_os_str().as_bytes().iter().any(preload_separator) {
        return Err(format!(
            "{} contains ' ' or ':', which LD_PRELOAD cannot carry; copy or link the library to another path",
            path.display()
        ));
    }
    Ok(path)
}

/// `lib` first, then the entries of the existing LD_PRELOAD (separated by
/// spaces or colons, as ld.so reads them) except other mentions of `lib`,
/// joined with colons. Bytes are kept as they are.
pub fn preload_value(lib: &Path, existing: Option<&OsStr>) -> OsString {
    let mut value = lib.as_os_str().as_bytes().to_vec();
    for entry in preload_entries(existing) {
        if !same_file(entry, lib) {
            value.push(b':');
            value.extend_from_slice(entry);
        }
    }
    OsString::from_vec(value)
}

/// The existing LD_PRELOAD without libkawrap.so (`lib`, or any entry named
/// libkawrap.so: a moved or rebuilt copy is still ours), other entries kept
/// in order and joined with colons; `None` when nothing else is left.
pub fn preload_without(lib: Option<&Path>, existing: Option<&OsStr>) -> Option<OsString> {
    let ours = |entry: &[u8]| {
        Path::new(OsStr::from_bytes(entry)).file_name() == Some(OsStr::new(LIB_NAME))
            || lib.is_some_and(|lib| same_file(entry, lib))
    };
    let kept: Vec<&[u8]> = preload_entries(existing).filter(|entry| !ours(entry)).collect();
    (!kept.is_empty()).then(|| OsString::from_vec(kept.join(&b':')))
}

/// ld.so splits LD_PRELOAD at spaces and colons.
fn preload_separator(byte: &u8) -> bool {
    matches!(byte, b' ' | b':')
}

/// The non-empty entries of an LD_PRELOAD value, as ld.so reads them.
fn preload_entries(value: Option<&OsStr>) -> impl Iterator<Item = &[u8]> {
    value.map(OsStr::as_bytes).unwrap_or_default().split(preload_separator).filter(|entry| !entry.is_empty())
}

fn same_file(entry: &[u8], lib: &Path) -> bool {
    let entry = Path::new(OsStr::from_bytes(entry));
    entry == lib || (entry.is_absolute() && fs::canonicalize(entry).is_ok_and(|canonical| canonical == lib))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preload(lib: &str, existing: Option<&str>) -> String {
        preload_value(Path::new(lib), existing.map(OsStr::new)).into_string().unwrap()
    }

    #[test]
    fn preload_alone() {
        assert_eq!(preload("/l/libkawrap.so", None), "/l/libkawrap.so");
        assert_eq!(preload("/l/libkawrap.so", Some("")), "/l/libkawrap.so");
    }

    #[test]
    fn preload_goes_first_and_keeps_the_others() {
        assert_eq!(preload("/l/libkawrap.so", Some("/a.so /b.so:c.so")), "/l/libkawrap.so:/a.so:/b.so:c.so");
    }

    #[test]
    fn preload_is_not_duplicated() {
        assert_eq!(
            preload("/l/libkawrap.so", Some("/l/libkawrap.so: /a.so::/l/libkawrap.so ")),
            "/l/libkawrap.so:/a.so"
        );
    }

    #[test]
    fn preload_without_removes_only_kawrap() {
        let without = |lib: Option<&str>, existing: &str| {
            preload_without(lib.map(Path::new), Some(OsStr::new(existing))).map(|v| v.into_string().unwrap())
        };
        assert_eq!(
            without(Some("/l/libkawrap.so"), "/l/libkawrap.so:/a.so /b.so"),
            Some("/a.so:/b.so".into())
        );
        assert_eq!(without(None, "/old/place/libkawrap.so:/a.so"), Some("/a.so".into()));
        assert_eq!(without(Some("/l/libkawrap.so"), "/l/libkawrap.so"), None);
        assert_eq!(preload_without(None, None), None);
    }

    #[test]
    fn preload_keeps_non_utf8_entries() {
        let value = preload_value(Path::new("/l/k.so"), Some(OsStr::from_bytes(b"/x\xff.so")));
        assert_eq!(value.as_bytes(), b"/l/k.so:/x\xff.so");
    }

    #[test]
    fn a_path_with_a_colon_cannot_be_preloaded() {
        assert!(preloadable(PathBuf::from("/a:b/libkawrap.so")).is_err());
        assert!(preloadable(PathBuf::from("/a b/libkawrap.so")).is_err());
        assert!(preloadable(PathBuf::from("/ab/libkawrap.so")).is_ok());
    }
}
