//! Settings → environment: the options checked with kawrap-core exactly as
//! the shim will read them, and every variable a program run under kawrap
//! gets. `kawrap COMMAND` sets them, `kawrap env` prints them, `kawrap bpf
//! attach` and `--bpf` take the checked configuration alone, and `--bpf`
//! takes the shim out of the program's environment.
use std::env;
use std::ffi::{CStr, OsString};
use std::path::{Path, PathBuf};

use kawrap_core::{Config, KeepaliveProfile, Policy, Rules, UserTimeout};

use crate::error::{Error, describe};
use crate::library::{find_lib, preload_value};
use crate::middlebox;
use crate::settings::{Keepalive, Settings};

/// What the program's environment gets: the checked configuration, the
/// library, and every variable kawrap sets or removes.
#[derive(Debug)]
pub struct EnvPlan {
    /// The configuration the shim will read back from `set`.
    pub config: Config,
    /// The canonical path of libkawrap.so.
    pub lib: PathBuf,
    /// The absolute path of the log file, if any.
    pub log: Option<PathBuf>,
    /// Variables to set, in the order they are printed.
    pub set: Vec<(&'static str, OsString)>,
    /// Variables to remove.
    pub unset: Vec<&'static str>,
    /// What about the settings is probably a mistake, for a person.
    pub warnings: Vec<String>,
}

/// Checks the settings with kawrap-core and computes the environment.
pub fn env_plan(settings: &Settings) -> Result<EnvPlan, Error> {
    let checked = check_settings(&settings.keepalive)?;
    let log = settings.log.as_deref().map(absolute_log_path).transpose()?;
    let lib = find_lib(settings.lib.as_deref())?;
    let preload = preload_value(&lib, env::var_os("LD_PRELOAD").as_deref());

    let mut set: Vec<(&'static str, OsString)> = vec![("LD_PRELOAD", preload)];
    let mut unset = Vec::new();
    set.push((var_name(kawrap_core::env::PROFILE), checked.profile.into()));
    match checked.rules {
        Some(rules) => set.push((var_name(kawrap_core::env::RULES), rules.into())),
        None => unset.push(var_name(kawrap_core::env::RULES)),
    }
    set.push((var_name(kawrap_core::env::POLICY), checked.policy.into()));
    match &log {
        Some(log) => set.push((var_name(kawrap_core::env::LOG), log.clone().into_os_string())),
        None => unset.push(var_name(kawrap_core::env::LOG)),
    }
    unset.push(var_name(kawrap_core::env::DISABLE));
    Ok(EnvPlan { config: checked.config, lib, log, set, unset, warnings: checked.warnings })
}

/// What `--bpf` changes in the command's environment: the kernel applies
/// the configuration, so a shim inherited from the shell (`eval "$(kawrap
/// env …)"`) must not apply another on top of it. libkawrap.so leaves
/// LD_PRELOAD (other preloads stay) and every KAWRAP_* variable goes.
/// Returns the variables to set and those to remove.
#[cfg(feature = "bpf")]
pub fn without_shim() -> (Vec<(&'static str, OsString)>, Vec<OsString>) {
    use std::os::unix::ffi::OsStrExt;
    let mut unset: Vec<OsString> =
        env::vars_os().map(|(name, _)| name).filter(|name| name.as_bytes().starts_with(b"KAWRAP_")).collect();
    let existing = env::var_os("LD_PRELOAD");
    match crate::library::preload_without(None, existing.as_deref()) {
        Some(kept) if existing.as_deref() != Some(kept.as_os_str()) => (vec![("LD_PRELOAD", kept)], unset),
        Some(_) => (Vec::new(), unset),
        None => {
            if existing.is_some() {
                unset.push("LD_PRELOAD".into());
            }
            (Vec::new(), unset)
        }
    }
}

/// One of kawrap-core's variable names as text.
pub fn var_name(name: &'static CStr) -> &'static str {
    // kawrap-core's names are ASCII literals.
    name.to_str().unwrap_or("KAWRAP_INVALID_NAME")
}

/// The values for `KAWRAP_PROFILE`, `KAWRAP_RULES` (`None`: no rules) and
/// `KAWRAP_POLICY`, and the configuration the shim will make of them.
#[derive(Debug)]
struct CheckedSettings {
    config: Config,
    profile: String,
    rules: Option<String>,
    policy: &'static str,
    warnings: Vec<String>,
}

/// The configuration the settings mean, checked exactly as for the shim,
/// and what about them is probably a mistake.
pub fn checked_config(settings: &Keepalive) -> Result<(Config, Vec<String>), Error> {
    let checked = check_settings(settings)?;
    Ok((checked.config, checked.warnings))
}

fn check_settings(settings: &Keepalive) -> Result<CheckedSettings, Error> {
    // A middlebox's idle timeout, or built-in names and numbers, then the
    // user's own names (profiles.toml).
    let (mut profile, mut warnings) = match &settings.keep_under {
        Some(timeout) => (KeepaliveProfile::keeping_under(middlebox::resolve(timeout)?), Vec::new()),
        None => {
            let resolved = crate::user_profiles::resolve(&settings.profile)?;
            (resolved.profile, resolved.warnings)
        }
    };
    if let Some(text) = &settings.user_timeout {
        let invalid = |kind: &dyn std::fmt::Display| Error::Invalid {
            message: format!("--user-timeout: {kind}"),
            hint: "accepted: `auto` (the profile's detection time), milliseconds (450000), or a duration \
                   (450s, 7m30s, 500ms); 0 leaves the kernel's default"
                .to_owned(),
        };
        let spec = UserTimeout::parse(text).map_err(|kind| invalid(&kind))?;
        profile = profile.with_user_timeout(spec).map_err(|kind| invalid(&kind))?;
    }
    // Several --rule options, each possibly with several comma-separated
    // rules, are one list to kawrap-core.
    let rules_text = settings.rules.join(",");
    let rules = Rules::parse_with_warnings(&rules_text, |warning| warnings.push(warning.to_string()))
        .map_err(|error| Error::Invalid { message: error.to_string(), hint: RULE_HINT.to_owned() })?;
    let policy = Policy::parse(&settings.policy)
        .map_err(|error| Error::Invalid { message: error.to_string(), hint: String::new() })?;

    let checked = CheckedSettings {
        config: Config { profile, rules, policy },
        profile: profile.to_string(),
        rules: (!rules.is_empty()).then(|| rules.to_string()),
        policy: policy.name(),
        warnings,
    };
    // The shim parses the very strings put in the environment: they must
    // mean exactly what the command line meant.
    match Config::from_values(Some(&checked.profile), checked.rules.as_deref(), Some(checked.policy)) {
        Ok(config) if config == checked.config => Ok(checked),
        Ok(config) => {
            Err(internal(format!("the environment would mean {config:?}, not {:?}", checked.config)))
        }
        Err(error) => Err(internal(format!("kawrap-core rejects its own canonical form: {error}"))),
    }
}

fn internal(message: String) -> Error {
    Error::Invalid { message, hint: "this is a bug in kawrap; please report it".to_owned() }
}

const RULE_HINT: &str = "accepted: DEST=PROFILE with DEST one of :PORT, ADDR[/LEN], V4ADDR[/LEN]:PORT, \
                         [V6ADDR][/LEN]:PORT, e.g. --rule :3306=firewall --rule 10.0.0.0/8=60/10/6";

fn absolute_log_path(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|error| Error::Invalid {
        message: format!("--log {path:?}: {}", describe(&error)),
        hint: "give the path of a file to append to".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(profile: &str, rules: &[&str], policy: &str, user_timeout: Option<&str>) -> Keepalive {
        Keepalive {
            profile: profile.to_owned(),
            keep_under: None,
            rules: rules.iter().map(|r| r.to_string()).collect(),
            policy: policy.to_owned(),
            user_timeout: user_timeout.map(str::to_owned),
        }
    }

    #[test]
    fn names_become_numbers() {
        let checked = check_settings(&settings("Firewall", &[], "respect", None)).unwrap();
        assert_eq!(checked.profile, "60/10/6");
        assert_eq!(checked.rules, None);
        assert_eq!(checked.policy, "respect");
    }

    #[test]
    fn user_timeout_applies_to_the_profile_only() {
        let checked =
            check_settings(&settings("300/30/5/1000", &[":22=ssh"], "FORCE", Some("auto"))).unwrap();
        assert_eq!(checked.profile, "300/30/5/450000");
        assert_eq!(checked.rules.as_deref(), Some(":22=60/60/5"));
        assert_eq!(checked.policy, "force");
    }

    #[test]
    fn rules_from_several_options_are_one_list() {
        let checked = check_settings(&settings(
            "recommended",
            &[":3306=firewall", "10.1.2.3/8=ssh, :22=1/1/1"],
            "respect",
            None,
        ))
        .unwrap();
        assert_eq!(checked.rules.as_deref(), Some(":3306=60/10/6,10.0.0.0/8=60/60/5,:22=1/1/1"));
        assert_eq!(checked.config.rules.as_slice().len(), 3);
    }

    #[test]
    fn keep_under_becomes_the_numbers_of_its_profile() {
        let keep_under = |timeout: &str, user_timeout: Option<&str>| {
            let mut settings = settings("recommended", &[], "respect", user_timeout);
            settings.keep_under = Some(timeout.to_owned());
            check_settings(&settings)
        };
        assert_eq!(keep_under("240s", None).unwrap().profile, "180/24/5");
        assert_eq!(keep_under("Azure-LB", None).unwrap().profile, "180/24/5");
        assert_eq!(keep_under("4m", Some("auto")).unwrap().profile, "180/24/5/300000");
        let error = keep_under("9s", None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "keep-under \"9s\": idle timeout 9s is out of range 10..=604800 s (10 s to 7 days)"
        );
        assert!(keep_under("aws-alb", None).unwrap_err().to_string().contains("layer-7 proxy"));
    }

    #[test]
    fn errors_quote_core() {
        let error = check_settings(&settings("300/30/500", &[], "respect", None)).unwrap_err();
        assert_eq!(error.to_string(), "profile \"300/30/500\": count 500 is out of range 1..=127");
        assert!(error.hint_lines()[0].contains("IDLE/INTVL/CNT"));
        let error = check_settings(&settings("ssh", &["db=ssh"], "respect", None)).unwrap_err();
        assert!(error.to_string().starts_with("rule \"db=ssh\": "), "{error}");
        let error = check_settings(&settings("ssh", &[], "maybe", None)).unwrap_err();
        assert!(error.to_string().starts_with("policy \"maybe\""), "{error}");
        let error = check_settings(&settings("ssh", &[], "respect", Some("soon"))).unwrap_err();
        assert!(error.to_string().starts_with("--user-timeout: "), "{error}");
    }
}
