//! Profile names: the built-ins, and the user's own from `profiles.toml`.
//!
//! ```toml
//! [profiles.backup]
//! keepalive = "120/20/6/auto"
//! description = "nightly backups over the VPN"
//! ```
//!
//! Read from `/etc/kawrap/profiles.toml`, then `$XDG_CONFIG_HOME/kawrap/profiles.toml`
//! (`~/.config/…`), the later file winning for a name both define. Every
//! value goes through kawrap-core, exactly like `--profile`. A name becomes
//! numbers here, in the launcher: the shim only ever sees numbers, so these
//! files are read by `kawrap`, never inside other programs.
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use kawrap_core::{BUILTIN_PROFILES, KeepaliveProfile, NamedProfile, ProfileErrorKind};
use serde::Deserialize;
use toml::Spanned;

use crate::error::Error;

/// The system-wide file.
pub const SYSTEM_FILE: &str = "/etc/kawrap/profiles.toml";

/// A profile defined in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserProfile {
    /// Its name, as written.
    pub name: String,
    /// Its values.
    pub profile: KeepaliveProfile,
    /// `description`, if given.
    pub description: Option<String>,
    /// The file it came from.
    pub source: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    #[serde(default)]
    profiles: BTreeMap<String, Spanned<Entry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    keepalive: Spanned<String>,
    description: Option<String>,
}

/// A profile from the command line: a built-in name, IDLE/INTVL/CNT[/UT],
/// or a name from the profile files (looked up only when it is neither).
pub fn resolve_profile(text: &str) -> Result<KeepaliveProfile, Error> {
    let error = match KeepaliveProfile::parse(text) {
        Ok(profile) => return Ok(profile),
        Err(error) => error,
    };
    let user = if error.kind == ProfileErrorKind::Unknown { load_all()? } else { Vec::new() };
    if let Some(found) = user.iter().find(|p| p.name.eq_ignore_ascii_case(text.trim())) {
        return Ok(found.profile);
    }
    Err(Error::Invalid { message: error.to_string(), hint: hint(&user) })
}

fn hint(user: &[UserProfile]) -> String {
    let builtin: Vec<&str> = BUILTIN_PROFILES.iter().map(|p| p.name).collect();
    let mut hint = format!(
        "accepted: a built-in name ({}) or IDLE/INTVL/CNT[/UT] in seconds, e.g. 300/30/5, 60/10/6/auto, \
         300/30/5/450s; `kawrap profiles` describes the names",
        builtin.join(", ")
    );
    if user.is_empty() {
        let files: Vec<String> = files().iter().map(|p| p.display().to_string()).collect();
        hint.push_str(&format!(
            "\nyour own names go in {} as [profiles.NAME] keepalive = \"I/V/C\"",
            files.join(" or ")
        ));
    } else {
        let names: Vec<&str> = user.iter().map(|p| p.name.as_str()).collect();
        hint.push_str(&format!("\nyour own: {}", names.join(", ")));
    }
    hint
}

/// The files, in the order they are read (a later one wins).
pub fn files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from(SYSTEM_FILE)];
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")));
    if let Some(dir) = config_home {
        files.push(dir.join("kawrap").join("profiles.toml"));
    }
    files
}

/// Every user-defined profile from [`files`], sorted by name; a missing
/// file defines none, a bad one is an error naming `file:line`.
pub fn load_all() -> Result<Vec<UserProfile>, Error> {
    let mut by_name: BTreeMap<String, UserProfile> = BTreeMap::new();
    for path in files() {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(Error::io(format!("cannot read {}", path.display()), error)),
        };
        for profile in parse_file(&path, &text)? {
            by_name.insert(profile.name.to_ascii_lowercase(), profile);
        }
    }
    Ok(by_name.into_values().collect())
}

/// Parses one file's text; errors say `path:line: reason`.
pub fn parse_file(path: &Path, text: &str) -> Result<Vec<UserProfile>, Error> {
    let at = |offset: usize, reason: String| Error::Invalid {
        message: format!("{}:{}: {reason}", path.display(), line_of(text, offset)),
        hint: "the format: [profiles.NAME] then keepalive = \"IDLE/INTVL/CNT[/UT]\" and optionally \
               description = \"…\""
            .to_owned(),
    };
    let contents: FileContents = toml::from_str(text).map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        at(offset, error.message().trim_end().to_owned())
    })?;
    let mut profiles = Vec::new();
    for (name, entry) in contents.profiles {
        let offset = entry.span().start;
        let entry = entry.into_inner();
        if let Some(reason) = bad_name(&name) {
            return Err(at(offset, format!("profile name {name:?}: {reason}")));
        }
        let value_offset = entry.keepalive.span().start;
        let profile = KeepaliveProfile::parse(entry.keepalive.get_ref())
            .map_err(|error| at(value_offset, format!("profile {name:?}: keepalive {error}")))?;
        profiles.push(UserProfile { name, profile, description: entry.description, source: path.to_owned() });
    }
    Ok(profiles)
}

/// Why a name cannot be a profile name, if it cannot.
fn bad_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("a name is needed");
    }
    if NamedProfile::find(name).is_some() {
        return Some("that is a built-in profile; choose another name");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Some("use only letters, digits, `-`, `_` and `.` (a `/` would read as IDLE/INTVL/CNT)");
    }
    None
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<UserProfile>, String> {
        parse_file(Path::new("/cfg/profiles.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_profiles_with_descriptions() {
        let profiles = parse(
            "# mine\n[profiles.backup]\nkeepalive = \"120/20/6/auto\"\ndescription = \"nightly\"\n\n\
             [profiles.vpn]\nkeepalive = \"45/15/4\"\n",
        )
        .unwrap();
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles[0].name, "backup");
        assert_eq!(profiles[0].profile.to_string(), "120/20/6/240000");
        assert_eq!(profiles[0].description.as_deref(), Some("nightly"));
        assert_eq!(profiles[1].profile.to_string(), "45/15/4");
        assert_eq!(profiles[1].description, None);
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn a_bad_value_names_its_line() {
        let error =
            parse("[profiles.ok]\nkeepalive = \"1/1/1\"\n[profiles.backup]\nkeepalive = \"120/20/600\"\n")
                .unwrap_err();
        assert_eq!(
            error,
            "/cfg/profiles.toml:4: profile \"backup\": keepalive profile \"120/20/600\": count 600 is out of \
             range 1..=127"
        );
    }

    #[test]
    fn toml_errors_name_their_line() {
        let error = parse("[profiles.a]\nkeepalive = \"1/1/1\"\n\n[profiles.b\n").unwrap_err();
        assert!(error.starts_with("/cfg/profiles.toml:4: "), "{error}");
        let error = parse("[profiles.a]\nkeepalive = \"1/1/1\"\nidle = 3\n").unwrap_err();
        assert!(error.starts_with("/cfg/profiles.toml:3: ") && error.contains("idle"), "{error}");
        let error = parse("[profiles.a]\ndescription = \"x\"\n").unwrap_err();
        assert!(error.contains("keepalive"), "{error}");
        let error = parse("[profile.a]\nkeepalive = \"1/1/1\"\n").unwrap_err();
        assert!(error.starts_with("/cfg/profiles.toml:1: "), "{error}");
    }

    #[test]
    fn names_are_checked() {
        let error = parse("[profiles.firewall]\nkeepalive = \"1/1/1\"\n").unwrap_err();
        assert!(error.contains("built-in"), "{error}");
        let error = parse("[profiles.\"a/b\"]\nkeepalive = \"1/1/1\"\n").unwrap_err();
        assert!(error.contains("a `/` would read as"), "{error}");
    }

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
