//! Running a program under libkawrap.so: check the settings with
//! kawrap-core, find the library, build the environment, find the command,
//! and become it.
use std::env;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::{self, Metadata, OpenOptions};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kawrap_core::{Config, Policy, Rules, UserTimeout};

use crate::args::run::LaunchArgs;
use crate::error::Error;
use crate::exit_codes::ExitCode;
use crate::output::{shell_quote, write_stdout};
use crate::settings::{Keepalive, Settings};

/// The file name of the shim, wherever it is installed.
pub const LIB_NAME: &str = "libkawrap.so";

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
}

/// `kawrap [OPTIONS] COMMAND [ARGS]...`: returns only on error, or after
/// `--dry-run`; otherwise the process has become the program.
pub fn run(args: &LaunchArgs) -> Result<ExitCode, Error> {
    let (name, rest) = match args.command.split_first() {
        Some(split) => split,
        None => {
            return Err(Error::Invalid {
                message: "no command given".to_owned(),
                hint: "usage: kawrap [OPTIONS] [--] COMMAND [ARGS]...".to_owned(),
            });
        }
    };
    if args.bpf {
        // Nothing is preloaded: the kernel applies the same configuration.
        let config = checked_config(&args.settings.keepalive)?;
        let program = find_command(name)?;
        return crate::commands::bpf::launch(&config, name, &program, rest);
    }
    let plan = env_plan(&args.settings)?;
    let program = find_command(name)?;
    if !args.quiet {
        // Programs the shim cannot reach still run, but the person is told.
        if let Some(unreachable) = crate::reach::check(name, &program) {
            eprintln!("{unreachable}");
        }
    }
    if args.verbose {
        eprintln!("{}", verbose_line(&plan, &program));
    }
    if args.dry_run {
        write_stdout(&dry_run_script(&plan, &args.command))?;
        return Ok(ExitCode::Success);
    }
    if let Some(log) = &plan.log {
        // The shim never writes to the terminal, so a log file it cannot
        // open would go unnoticed: find out now.
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(log)
            .map_err(|error| Error::io(format!("--log: cannot open {}", log.display()), error))?;
    }
    let mut command = Command::new(&program);
    command.arg0(name).args(rest);
    for (var, value) in &plan.set {
        command.env(var, value);
    }
    for var in &plan.unset {
        command.env_remove(var);
    }
    // exec only returns if the kernel refused to run the program.
    let error = command.exec();
    Err(exec_error(name, error))
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
    Ok(EnvPlan { config: checked.config, lib, log, set, unset })
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
}

/// The configuration the settings mean, checked exactly as for the shim.
pub fn checked_config(settings: &Keepalive) -> Result<Config, Error> {
    Ok(check_settings(settings)?.config)
}

fn check_settings(settings: &Keepalive) -> Result<CheckedSettings, Error> {
    // Built-in names and numbers, then the user's own names (profiles.toml).
    let mut profile = crate::user_profiles::resolve_profile(&settings.profile)?;
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
    let rules = Rules::parse(&rules_text)
        .map_err(|error| Error::Invalid { message: error.to_string(), hint: RULE_HINT.to_owned() })?;
    let policy = Policy::parse(&settings.policy)
        .map_err(|error| Error::Invalid { message: error.to_string(), hint: String::new() })?;

    let checked = CheckedSettings {
        config: Config { profile, rules, policy },
        profile: profile.to_string(),
        rules: (!rules.is_empty()).then(|| rules.to_string()),
        policy: policy.name(),
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

/// Finds libkawrap.so: the path given, else next to the kawrap binary
/// (where cargo builds both), else `../lib/kawrap/` from it (an installed
/// `PREFIX/bin/kawrap` with `PREFIX/lib/kawrap/libkawrap.so`). The result
/// is absolute, canonical and a regular file: LD_PRELOAD gets nothing else.
pub fn find_lib(explicit: Option<&Path>) -> Result<PathBuf, Error> {
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

/// Finds the command the way execvp(3) and shells do, so kawrap can tell
/// "not found" (127) from "cannot execute" (126) before it execs.
fn find_command(name: &OsStr) -> Result<PathBuf, Error> {
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
    let mut hint = if name.contains('/') {
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
    if crate::args::is_subcommand(&name) {
        hint.push_str(&format!(
            "\n`{name}` is also a kawrap subcommand: write `kawrap {name}` with nothing before it to use it"
        ));
    }
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

/// An OS error as a phrase: `permission denied`, without `(os error 13)`.
fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" (os error ") {
        Some(end) => &text[..end],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_owned(),
    }
}

fn verbose_line(plan: &EnvPlan, program: &Path) -> String {
    let profile = &plan.config.profile;
    let mut line = format!(
        "kawrap: profile {profile} (idle {} s, every {} s, {} probes) notices a dead peer in {}",
        profile.idle_secs(),
        profile.interval_secs(),
        profile.count(),
        profile.detection_time()
    );
    if let Some(ms) = profile.user_timeout_ms() {
        line.push_str(&format!(", user timeout {ms} ms"));
    }
    let rules = plan.config.rules.as_slice().len();
    if rules > 0 {
        line.push_str(&format!("; {rules} rule{}", if rules == 1 { "" } else { "s" }));
    }
    line.push_str(&format!(
        "; policy {}; preloading {}; running {}",
        plan.config.policy,
        plan.lib.display(),
        program.display()
    ));
    line
}

/// A shell script with the same effect as the run that `--dry-run` skips.
fn dry_run_script(plan: &EnvPlan, command: &[OsString]) -> Vec<u8> {
    let mut script = Vec::new();
    for (var, value) in &plan.set {
        script.extend_from_slice(format!("export {var}=").as_bytes());
        script.extend_from_slice(&shell_quote(value));
        script.push(b'\n');
    }
    if !plan.unset.is_empty() {
        script.extend_from_slice(format!("unset {}\n", plan.unset.join(" ")).as_bytes());
    }
    script.extend_from_slice(b"exec");
    for word in command {
        script.push(b' ');
        script.extend_from_slice(&shell_quote(word));
    }
    script.push(b'\n');
    script
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

    fn settings(profile: &str, rules: &[&str], policy: &str, user_timeout: Option<&str>) -> Keepalive {
        Keepalive {
            profile: profile.to_owned(),
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

    #[test]
    fn dry_run_is_a_shell_script() {
        let plan = EnvPlan {
            config: Config::default(),
            lib: PathBuf::from("/l/libkawrap.so"),
            log: None,
            set: vec![("LD_PRELOAD", "/l/libkawrap.so".into()), ("KAWRAP_PROFILE", "300/30/5".into())],
            unset: vec!["KAWRAP_RULES", "KAWRAP_DISABLE"],
        };
        let command: Vec<OsString> = ["sh", "-c", "exit 7"].map(OsString::from).to_vec();
        let script = String::from_utf8(dry_run_script(&plan, &command)).unwrap();
        assert_eq!(
            script,
            "export LD_PRELOAD=/l/libkawrap.so\nexport KAWRAP_PROFILE=300/30/5\n\
             unset KAWRAP_RULES KAWRAP_DISABLE\nexec sh -c 'exit 7'\n"
        );
    }
}
