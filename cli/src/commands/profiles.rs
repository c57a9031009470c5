//! `kawrap profiles`: the built-in profiles and the user's own
//! (profiles.toml), for people or as JSON.
use kawrap_core::{BUILTIN_PROFILES, IdleTimeout, KeepaliveProfile, NamedProfile};
use serde::Serialize;

use crate::args::profiles::ProfilesArgs;
use crate::error::Error;
use crate::exit_codes::ExitCode;
use crate::output::{columns, write_stdout};
use crate::profile_table::{builtin_rows, purpose, row};
use crate::user_profiles::{self, UserProfile};

/// One profile as `--json` prints it.
#[derive(Debug, Serialize)]
struct ProfileRecord {
    name: String,
    idle_secs: u16,
    interval_secs: u16,
    count: u8,
    user_timeout_ms: Option<u32>,
    /// idle + interval × count: how long a dead idle peer goes unnoticed.
    detection_secs: u32,
    detection_time: String,
    purpose: String,
    /// For a middlebox (or `keep-under`): the idle timeout, in seconds, the
    /// profile keeps connections under.
    idle_timeout_secs: Option<u32>,
    /// `built-in`, or the file that defines it.
    source: String,
}

impl ProfileRecord {
    fn new(
        name: String,
        profile: &KeepaliveProfile,
        purpose: String,
        idle_timeout: Option<IdleTimeout>,
        source: String,
    ) -> Self {
        ProfileRecord {
            name,
            idle_secs: profile.idle_secs(),
            interval_secs: profile.interval_secs(),
            count: profile.count(),
            user_timeout_ms: profile.user_timeout_ms(),
            detection_secs: profile.detection_secs(),
            detection_time: profile.detection_time().to_string(),
            purpose,
            idle_timeout_secs: idle_timeout.map(IdleTimeout::as_secs),
            source,
        }
    }
}

impl From<&NamedProfile> for ProfileRecord {
    fn from(named: &NamedProfile) -> Self {
        let (name, purpose) = (named.name.to_owned(), named.purpose.to_owned());
        ProfileRecord::new(name, &named.profile, purpose, named.idle_timeout, "built-in".to_owned())
    }
}

impl From<&UserProfile> for ProfileRecord {
    fn from(user: &UserProfile) -> Self {
        let purpose = user.description.clone().unwrap_or_default();
        let source = user.source.display().to_string();
        ProfileRecord::new(user.name.clone(), &user.profile, purpose, user.idle_timeout, source)
    }
}

/// Prints the table (or JSON) on stdout: the built-ins and every usable
/// profile of the files, even when other entries are bad; those are
/// reported on stderr, all of them, and make the exit status 125.
pub fn run(args: &ProfilesArgs) -> Result<ExitCode, Error> {
    let loaded = user_profiles::load_all();
    let user = &loaded.profiles;
    let text = if args.json { json(user) } else { table(user) };
    write_stdout(text.as_bytes())?;
    for problem in &loaded.problems {
        eprintln!("kawrap: {problem}");
    }
    if loaded.problems.is_empty() {
        Ok(ExitCode::Success)
    } else {
        eprintln!(
            "kawrap: {} problem(s) in the profile files; the entries named above are not usable",
            loaded.problems.len()
        );
        Ok(ExitCode::KawrapError)
    }
}

fn json(user: &[UserProfile]) -> String {
    let mut records: Vec<ProfileRecord> = BUILTIN_PROFILES.iter().map(ProfileRecord::from).collect();
    records.extend(user.iter().map(ProfileRecord::from));
    // Serializing plain strings and numbers cannot fail.
    let mut text = serde_json::to_string_pretty(&records).unwrap_or_default();
    text.push('\n');
    text
}

fn table(user: &[UserProfile]) -> String {
    let header = ["NAME", "I/V/C", "DETECTS A DEAD PEER IN", "PURPOSE"];
    let mut rows: Vec<Vec<String>> = vec![header.map(str::to_owned).to_vec()];
    rows.extend(builtin_rows());
    // The user's own, after the built-ins, each saying where it is defined.
    rows.extend(user.iter().map(|user| {
        let described = purpose(user.description.as_deref().unwrap_or_default(), user.idle_timeout);
        let purpose = match described.as_str() {
            "" => format!("({})", user.source.display()),
            _ => format!("{described} ({})", user.source.display()),
        };
        row(&user.name, &user.profile, purpose)
    }));
    columns(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_header_and_one_line_per_profile() {
        let table = table(&[]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 1 + BUILTIN_PROFILES.len());
        assert!(lines[0].starts_with("NAME"));
        let linux = lines.iter().find(|line| line.starts_with("linux-default")).unwrap();
        let words: Vec<&str> = linux.split_whitespace().collect();
        assert_eq!(words[..5], ["linux-default", "7200/75/9", "2", "h", "11"]);
        assert!(linux.ends_with("what Linux does without kawrap"));
    }

    #[test]
    fn columns_line_up() {
        let table = table(&[]);
        let header = table.lines().next().unwrap();
        let numbers_column = header.find("I/V/C").unwrap();
        let detection_column = header.find("DETECTS").unwrap();
        for (line, named) in table.lines().skip(1).zip(&BUILTIN_PROFILES) {
            assert_eq!(line.find(&named.profile.to_string()), Some(numbers_column), "{line}");
            let detection = named.profile.detection_time().to_string();
            assert_eq!(line[detection_column..].find(&detection), Some(0), "{line}");
        }
    }

    #[test]
    fn json_has_every_profile_with_numbers() {
        let value: serde_json::Value = serde_json::from_str(&json(&[])).unwrap();
        let list = value.as_array().unwrap();
        assert_eq!(list.len(), BUILTIN_PROFILES.len());
        let recommended = &list[0];
        assert_eq!(recommended["name"], "recommended");
        assert_eq!(recommended["idle_secs"], 300);
        assert_eq!(recommended["interval_secs"], 30);
        assert_eq!(recommended["count"], 5);
        assert_eq!(recommended["user_timeout_ms"], serde_json::Value::Null);
        assert_eq!(recommended["detection_secs"], 450);
        assert_eq!(recommended["detection_time"], "7 min 30 s");
        assert_eq!(recommended["idle_timeout_secs"], serde_json::Value::Null);
        let azure = list.iter().find(|p| p["name"] == "azure-lb").unwrap();
        assert_eq!(
            (&azure["idle_secs"], &azure["interval_secs"], &azure["count"]),
            (&180.into(), &24.into(), &5.into())
        );
        assert_eq!(azure["idle_timeout_secs"], 240);
    }

    #[test]
    fn middleboxes_are_listed_with_the_timeout_they_are_for() {
        let table = table(&[]);
        for named in kawrap_core::MIDDLEBOXES {
            let line = table.lines().find(|line| line.starts_with(&format!("{} ", named.name))).unwrap();
            let words: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                words[1],
                kawrap_core::KeepaliveProfile::keeping_under(named.idle_timeout).to_string()
            );
            assert!(
                line.ends_with(&format!("{}: idle timeout {} s", named.what, named.idle_timeout.as_secs())),
                "{line}"
            );
        }
    }
}
