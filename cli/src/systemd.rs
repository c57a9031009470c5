//! systemd units as kawrap writes them: unit names, and files written
//! whole. Shared by `kawrap env --systemd` and `kawrap bpf systemd`.
use std::io::{self, Write as _};
use std::path::Path;

use crate::error::Error;

/// Where system units and their drop-ins live.
pub const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// systemd's unit types other than service.
const UNIT_TYPES: [&str; 10] =
    ["socket", "timer", "mount", "automount", "path", "target", "slice", "scope", "device", "swap"];

/// `backup` → `backup.service`; only services have `[Service]`.
pub fn unit_name(name: &str) -> Result<String, Error> {
    let invalid = |reason: &str| Error::Invalid {
        message: format!("--unit {name:?}: {reason}"),
        hint: "give a service name such as `backup` or `backup.service` (letters, digits, `:-_.\\@`)"
            .to_owned(),
    };
    let unit = match name.rsplit_once('.') {
        Some((_, "service")) => name.to_owned(),
        Some((_, suffix)) if UNIT_TYPES.contains(&suffix) => {
            return Err(invalid("only a .service has a [Service] section"));
        }
        _ => format!("{name}.service"),
    };
    if unit == ".service" {
        return Err(invalid("the name is empty"));
    }
    if !unit.bytes().all(|b| b.is_ascii_alphanumeric() || b":-_.\\@".contains(&b)) {
        return Err(invalid("systemd unit names contain only letters, digits and `:-_.\\@`"));
    }
    Ok(unit)
}

/// `text` as one word of a unit file, in double quotes: inside them systemd
/// reads C-style escapes, and `%` starts a specifier.
pub fn quote(text: &str) -> String {
    let mut quoted = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '%' => quoted.push_str("%%"),
            '\n' => quoted.push_str("\\n"),
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// Writes `text` to `path` (creating its directory), beside it first and
/// renamed, so that systemd never reads half a file. The same content
/// already there is fine (`false`: nothing written); a different file stays
/// unless `force`, and the error says to compare it with `regenerate`.
pub fn write_unit_file(path: &Path, text: &str, force: bool, regenerate: &str) -> Result<bool, Error> {
    match std::fs::read(path) {
        Ok(existing) if existing == text.as_bytes() => return Ok(false),
        Ok(_) if !force => {
            return Err(Error::Refused {
                message: format!("{} exists with different content", path.display()),
                hint: format!(
                    "compare it with `{regenerate}` (without --write), then add --force to replace it"
                ),
            });
        }
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(Error::io(format!("cannot read {}", path.display()), error)),
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.kawrap-{}", std::process::id()));
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| file.write_all(text.as_bytes()).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(Error::io(format!("cannot write {}", path.display()), error));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("backup").unwrap(), "backup.service");
        assert_eq!(unit_name("backup.service").unwrap(), "backup.service");
        assert_eq!(unit_name("getty@tty1").unwrap(), "getty@tty1.service");
        assert!(unit_name("../etc").is_err());
        assert!(unit_name("a/b").is_err());
        assert!(unit_name("").is_err());
        assert!(unit_name(".service").is_err());
        assert!(unit_name("backup.timer").unwrap_err().to_string().contains("only a .service"));
    }
}
