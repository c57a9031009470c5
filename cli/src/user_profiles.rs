//! Profile names: the built-ins, and the user's own from `profiles.toml`.
//!
//! ```toml
//! [profiles.backup]
//! keepalive = "120/20/6/auto"
//! description = "nightly backups over the VPN"
//!
//! [profiles.office-nat]
//! keep-under = "240s"            # instead of keepalive: a middlebox's idle timeout
//! ```
//!
//! Read from `/etc/kawrap/profiles.toml`, then `$XDG_CONFIG_HOME/kawrap/profiles.toml`
//! (`~/.config/…`), the later file winning for a name both define. Every
//! value goes through kawrap-core, exactly like `--profile`. A name becomes
//! numbers here, in the launcher: the shim only ever sees numbers, so these
//! files are read by `kawrap`, never inside other programs.
//!
//! Names are case-insensitive, like the built-ins (`--profile Firewall`):
//! `[profiles.backup]` and `[profiles.BACKUP]` in one file are one name
//! defined twice, an error. A bad entry spoils only its own name: the other
//! entries stay usable, and every problem is reported with its `file:line`.
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use kawrap_core::{
    BUILTIN_PROFILES, IdleTimeout, KeepaliveProfile, Layer7Proxy, NamedProfile, ProfileErrorKind,
};
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::error::{Error, describe};
use crate::permissions::{file_kind, mode_text, running_as_root, writable_by_others};

/// The system-wide file.
pub const SYSTEM_FILE: &str = "/etc/kawrap/profiles.toml";

/// A profile file larger than this is not one.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A profile defined in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserProfile {
    /// Its name, as written.
    pub name: String,
    /// Its values.
    pub profile: KeepaliveProfile,
    /// `description`, if given.
    pub description: Option<String>,
    /// `keep-under`: the middlebox idle timeout it was made for, if given.
    pub idle_timeout: Option<IdleTimeout>,
    /// The file it came from.
    pub source: PathBuf,
}

/// Something wrong in a profile file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// The line, when the problem has one.
    pub line: Option<usize>,
    /// The profile whose entry it is in (lowercase); `None`: the whole file.
    pub name: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

impl Problem {
    /// True if the problem may change what `name` means: it is in that
    /// name's entry, or the file could not be read at all.
    fn concerns(&self, name: &str) -> bool {
        self.name.as_deref().is_none_or(|own| own.eq_ignore_ascii_case(name))
    }
}

/// What the profile files hold: the usable profiles, and every problem.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Usable profiles, sorted by name; a name with a problem is left out.
    pub profiles: Vec<UserProfile>,
    /// Every problem, in file order.
    pub problems: Vec<Problem>,
}

/// A profile resolved from the command line, and problems in the profile
/// files that did not stop it (for a warning).
#[derive(Debug)]
pub struct Resolved {
    /// The profile.
    pub profile: KeepaliveProfile,
    /// Problems elsewhere in the profile files, as `file:line: reason`.
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    keepalive: Option<Spanned<String>>,
    /// Instead of `keepalive`: a middlebox's idle timeout to keep under.
    #[serde(rename = "keep-under")]
    keep_under: Option<Spanned<String>>,
    description: Option<String>,
}

impl Entry {
    /// The profile this entry, at byte offset `at`, defines as `name` in
    /// `path`, or where in the file (a byte offset) and why it is not one.
    fn into_profile(self, at: usize, name: &str, path: &Path) -> Result<UserProfile, (usize, String)> {
        let (profile, idle_timeout) = match (&self.keepalive, &self.keep_under) {
            (Some(keepalive), None) => {
                let profile = KeepaliveProfile::parse(keepalive.get_ref())
                    .map_err(|error| (keepalive.span().start, format!("keepalive {error}")))?;
                (profile, None)
            }
            (None, Some(keep_under)) => {
                let timeout = IdleTimeout::parse(keep_under.get_ref())
                    .map_err(|error| (keep_under.span().start, error.to_string()))?;
                (KeepaliveProfile::keeping_under(timeout), Some(timeout))
            }
            (Some(_), Some(_)) => return Err((at, "give keepalive or keep-under, not both".to_owned())),
            (None, None) => {
                return Err((
                    at,
                    "missing keepalive = \"IDLE/INTVL/CNT[/UT]\" or keep-under = \"TIMEOUT\"".to_owned(),
                ));
            }
        };
        Ok(UserProfile {
            name: name.to_owned(),
            profile,
            description: self.description,
            idle_timeout,
            source: path.to_owned(),
        })
    }
}

/// A profile from the command line: a built-in name, IDLE/INTVL/CNT[/UT],
/// or a name from the profile files (looked up only when it is neither).
/// A problem in that name's entry, or in reading a file, is an error;
/// problems in other entries come back as warnings.
pub fn resolve(text: &str) -> Result<Resolved, Error> {
    let error = match KeepaliveProfile::parse(text) {
        Ok(profile) => return Ok(Resolved { profile, warnings: Vec::new() }),
        Err(error) => error,
    };
    if error.kind != ProfileErrorKind::Unknown {
        return Err(Error::Invalid { message: error.to_string(), hint: hint(&Loaded::default()) });
    }
    let loaded = load_all();
    let name = text.trim();
    let (blocking, others): (Vec<&Problem>, Vec<&Problem>) =
        loaded.problems.iter().partition(|problem| problem.concerns(name));
    if let Some((first, rest)) = blocking.split_first() {
        let mut hint: Vec<String> = rest.iter().map(ToString::to_string).collect();
        hint.push(FORMAT_HINT.to_owned());
        return Err(Error::Invalid { message: first.to_string(), hint: hint.join("\n") });
    }
    let warnings: Vec<String> = others.iter().map(ToString::to_string).collect();
    match loaded.profiles.iter().find(|p| p.name.eq_ignore_ascii_case(name)) {
        Some(found) => Ok(Resolved { profile: found.profile, warnings }),
        None => {
            let mut hint = hint(&loaded);
            for warning in warnings {
                hint.push_str(&format!("\nnote: {warning}"));
            }
            Err(Error::Invalid { message: error.to_string(), hint })
        }
    }
}

/// [`resolve`] for commands that take a profile and nothing else to warn
/// about: the warnings are printed here.
pub fn resolve_profile(text: &str) -> Result<KeepaliveProfile, Error> {
    let resolved = resolve(text)?;
    crate::output::warn(&resolved.warnings);
    Ok(resolved.profile)
}

const FORMAT_HINT: &str = "the format: [profiles.NAME] then keepalive = \"IDLE/INTVL/CNT[/UT]\" (or keep-under = \
                           \"TIMEOUT\", a middlebox's idle timeout such as \"240s\") and optionally description = \"…\"";

fn hint(loaded: &Loaded) -> String {
    let builtin: Vec<&str> = BUILTIN_PROFILES.iter().map(|p| p.name).collect();
    let mut hint = format!(
        "accepted: a built-in name ({}), IDLE/INTVL/CNT[/UT] in seconds, e.g. 300/30/5, 60/10/6/auto, \
         300/30/5/450s, or under:TIMEOUT for a middlebox's idle timeout, e.g. under:240s; `kawrap profiles` \
         describes the names",
        builtin.join(", ")
    );
    if loaded.profiles.is_empty() {
        let files: Vec<String> = files().iter().map(|p| p.display().to_string()).collect();
        hint.push_str(&format!(
            "\nyour own names go in {} as [profiles.NAME] keepalive = \"I/V/C\"",
            files.join(" or ")
        ));
    } else {
        let names: Vec<&str> = loaded.profiles.iter().map(|p| p.name.as_str()).collect();
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

/// Every user-defined profile from [`files`] and every problem in them; a
/// missing file defines none.
pub fn load_all() -> Loaded {
    let mut by_name: BTreeMap<String, UserProfile> = BTreeMap::new();
    let mut problems = Vec::new();
    for path in files() {
        match read_file(&path) {
            Ok(Some(text)) => {
                let (profiles, file_problems) = parse_file(&path, &text);
                for profile in profiles {
                    by_name.insert(profile.name.to_ascii_lowercase(), profile);
                }
                problems.extend(file_problems);
            }
            Ok(None) => {}
            Err(reason) => problems.push(Problem { file: path, line: None, name: None, reason }),
        }
    }
    // A name with a problem anywhere is not usable: a broken entry in the
    // user's file must not let the system file's entry of that name through.
    let profiles = by_name
        .into_values()
        .filter(|profile| !problems.iter().any(|p| p.name.as_ref() == Some(&lowercase(profile))))
        .collect();
    Loaded { profiles, problems }
}

fn lowercase(profile: &UserProfile) -> String {
    profile.name.to_ascii_lowercase()
}

/// A profile file's text; `None` when there is no such file. Anything but a
/// regular file is refused without waiting on it (a FIFO would block the
/// open and the read), and root refuses files others may change.
fn read_file(path: &Path) -> Result<Option<String>, String> {
    let opened = File::options().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path);
    let mut file = match opened {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read: {}", describe(&error))),
    };
    let metadata = file.metadata().map_err(|error| format!("cannot read: {}", describe(&error)))?;
    if !metadata.is_file() {
        return Err(format!(
            "not a regular file ({}); kawrap reads profiles only from one",
            file_kind(metadata.file_type())
        ));
    }
    if metadata.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{} bytes is too large for a profile file (at most {MAX_FILE_BYTES})",
            metadata.len()
        ));
    }
    if running_as_root() {
        trusted_by_root(path, &metadata)?;
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|error| format!("cannot read: {}", describe(&error)))?;
    Ok(Some(text))
}

/// As root, a profile file that others may change is refused, as sudo
/// refuses such a sudoers file and sshd such an authorized_keys: the file
/// and every directory above it must be writable by no one but their owner
/// and root (group root may write), except that a sticky directory (/tmp)
/// lets no one replace what is not theirs. Through a symbolic link, both
/// ways count, as for sshd (which resolves the path first): the directories
/// above the link, where it could be swapped, and those above the file it
/// leads to, where that file could be.
fn trusted_by_root(path: &Path, metadata: &Metadata) -> Result<(), String> {
    if writable_by_others(metadata) {
        return Err(format!(
            "writable by others than its owner and root (mode {}); as root, kawrap reads only \
             profile files no one else can change: chmod go-w {}",
            mode_text(metadata),
            path.display()
        ));
    }
    let resolved = std::fs::canonicalize(path).ok();
    for file in std::iter::once(path).chain(resolved.as_deref().filter(|resolved| *resolved != path)) {
        for dir in file.ancestors().skip(1).filter(|dir| !dir.as_os_str().is_empty()) {
            let Ok(dir_metadata) = std::fs::metadata(dir) else { continue };
            let sticky = dir_metadata.mode() & libc::S_ISVTX != 0;
            if writable_by_others(&dir_metadata) && !sticky {
                return Err(format!(
                    "{} is in {}, which is writable by others than its owner and root (mode {}); as \
                     root, kawrap reads only profile files no one else can change or replace",
                    file.display(),
                    dir.display(),
                    mode_text(&dir_metadata)
                ));
            }
        }
    }
    Ok(())
}

/// Parses one file's text: the usable profiles, and every problem, each
/// with its line and the entry it is in.
fn parse_file(path: &Path, text: &str) -> (Vec<UserProfile>, Vec<Problem>) {
    let problem = |offset: usize, name: Option<&str>, reason: String| Problem {
        file: path.to_owned(),
        line: Some(line_of(text, offset)),
        name: name.map(str::to_ascii_lowercase),
        reason,
    };
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    let mut problems = Vec::new();
    let mut entries: Vec<(&Spanned<std::borrow::Cow<str>>, &Spanned<DeValue>)> = Vec::new();
    for (key, value) in document.get_ref() {
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("profiles", DeValue::Table(table)) => entries.extend(table.iter()),
            ("profiles", _) => problems.push(problem(
                key.span().start,
                None,
                "`profiles` must be a table: [profiles.NAME]".to_owned(),
            )),
            (other, _) => problems.push(problem(
                key.span().start,
                None,
                format!("unknown key {other:?}; profiles are defined as [profiles.NAME]"),
            )),
        }
    }
    entries.sort_by_key(|(key, _)| key.span().start);
    // A syntax error belongs to the entry whose header comes before it.
    for error in syntax_errors {
        let offset = error.span().map_or(0, |span| span.start);
        let owner = entries.iter().rev().find(|(key, _)| key.span().start <= offset);
        let name = owner.map(|(key, _)| key.get_ref().as_ref());
        let reason = error.message().trim_end().to_owned();
        let reason = match name {
            Some(name) => format!("profile {name:?}: {reason}"),
            None => reason,
        };
        problems.push(problem(offset, name, reason));
    }
    let mut first_of: BTreeMap<String, (&str, usize)> = BTreeMap::new();
    let mut profiles = Vec::new();
    for (key, value) in entries {
        let name: &str = key.get_ref();
        let offset = key.span().start;
        let at = |reason: String| problem(offset, Some(name), format!("profile {name:?}: {reason}"));
        if let Some((first, first_offset)) = first_of.insert(name.to_ascii_lowercase(), (name, offset)) {
            problems.push(at(format!(
                "also defined as {first:?} at line {}; profile names are case-insensitive, like the \
                 built-ins: keep one",
                line_of(text, first_offset)
            )));
            continue;
        }
        if let Some(reason) = bad_name(name) {
            problems.push(at(reason.to_owned()));
            continue;
        }
        let user_profile = Entry::deserialize(ValueDeserializer::from(value.clone()))
            .map_err(|error| {
                let offset = error.span().map_or(offset, |span| span.start);
                (offset, error.message().trim_end().to_owned())
            })
            .and_then(|entry| entry.into_profile(offset, name, path));
        match user_profile {
            Ok(user_profile) => profiles.push(user_profile),
            Err((offset, reason)) => {
                problems.push(problem(offset, Some(name), format!("profile {name:?}: {reason}")))
            }
        }
    }
    problems.sort_by_key(|problem| problem.line);
    let spoiled =
        |profile: &UserProfile| problems.iter().any(|p| p.name.as_ref() == Some(&lowercase(profile)));
    profiles.retain(|profile| !spoiled(profile));
    (profiles, problems)
}

/// Why a name cannot be a profile name, if it cannot.
fn bad_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("a name is needed");
    }
    if NamedProfile::find(name).is_some() {
        return Some("that is a built-in profile; choose another name");
    }
    if Layer7Proxy::find(name).is_some() {
        return Some("that names a layer-7 proxy, which kawrap refuses; choose another name");
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

    /// The profiles, or the problems as text when there are any.
    fn parse(text: &str) -> Result<Vec<UserProfile>, String> {
        let (profiles, problems) = parse_file(Path::new("/cfg/profiles.toml"), text);
        match problems.first() {
            None => Ok(profiles),
            Some(_) => Err(problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")),
        }
    }

    #[test]
    fn keep_under_instead_of_keepalive() {
        let profiles = parse(
            "[profiles.office]\nkeep-under = \"240s\"\n[profiles.lb]\nkeep-under = \"aws-nlb\"\n\
             [profiles.under]\nkeepalive = \"under:4m\"\n",
        )
        .unwrap();
        let found: Vec<(&str, String, Option<u32>)> = profiles
            .iter()
            .map(|p| (p.name.as_str(), p.profile.to_string(), p.idle_timeout.map(IdleTimeout::as_secs)))
            .collect();
        assert_eq!(
            found,
            [
                ("office", "180/24/5".to_owned(), Some(240)),
                ("lb", "262/30/5".to_owned(), Some(350)),
                ("under", "180/24/5".to_owned(), None)
            ]
        );
        let error =
            parse("[profiles.a]\nkeepalive = \"1/1/1\"\n\n[profiles.b]\nkeep-under = \"9s\"\n").unwrap_err();
        assert_eq!(
            error,
            "/cfg/profiles.toml:5: profile \"b\": keep-under \"9s\": idle timeout 9s is out of range 10..=604800 s \
             (10 s to 7 days)"
        );
        let error = parse("[profiles.b]\nkeep-under = \"aws-alb\"\n").unwrap_err();
        assert!(error.starts_with("/cfg/profiles.toml:2: ") && error.contains("layer-7 proxy"), "{error}");
        let error = parse("[profiles.b]\nkeepalive = \"1/1/1\"\nkeep-under = \"240s\"\n").unwrap_err();
        assert!(error.starts_with("/cfg/profiles.toml:1: ") && error.contains("not both"), "{error}");
        let error = parse("[profiles.b]\ndescription = \"x\"\n").unwrap_err();
        assert!(error.contains("missing keepalive") && error.contains("keep-under"), "{error}");
        let error = parse("[profiles.b]\nkeep_under = \"240s\"\n").unwrap_err();
        assert!(error.contains("keep-under"), "{error}");
        let error = parse("[profiles.aws-alb]\nkeep-under = \"60s\"\n").unwrap_err();
        assert!(error.contains("layer-7"), "{error}");
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
    fn a_problem_spoils_only_its_entry() {
        let (profiles, problems) = parse_file(
            Path::new("/cfg/p.toml"),
            "[profiles.a]\nkeepalive = 1/1/1\n[profiles.b]\nkeepalive = \"2/2/2\"\n[profiles.c]\nkeepalive = \"0/1/1\"\n",
        );
        let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["b"]);
        let lines: Vec<Option<usize>> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [Some(2), Some(6)]);
        assert_eq!(problems[0].name.as_deref(), Some("a"));
        assert!(problems[0].concerns("A") && !problems[0].concerns("b"));
    }

    #[test]
    fn names_are_checked() {
        let error = parse("[profiles.firewall]\nkeepalive = \"1/1/1\"\n").unwrap_err();
        assert!(error.contains("built-in"), "{error}");
        let error = parse("[profiles.\"a/b\"]\nkeepalive = \"1/1/1\"\n").unwrap_err();
        assert!(error.contains("a `/` would read as"), "{error}");
        let error =
            parse("[profiles.x]\nkeepalive = \"1/1/1\"\n[profiles.X]\nkeepalive = \"1/1/1\"\n").unwrap_err();
        assert!(
            error.starts_with("/cfg/profiles.toml:3: profile \"X\": also defined as \"x\" at line 1"),
            "{error}"
        );
    }

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
