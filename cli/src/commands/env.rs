//! `kawrap env`: the launcher's environment as shell commands for the
//! current shell (`eval "$(kawrap env …)"`), the lines that undo them
//! (`--unset`), or a systemd drop-in (`--systemd`).
//!
//! The values are exactly what `kawrap … COMMAND` would set (same checks,
//! same library discovery, same LD_PRELOAD merge: [`crate::env_plan`]),
//! so a profile is always written in numbers: the shim knows no names
//! beyond the built-ins, and a number means the same on every machine.
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::args::env::{EnvArgs, Shell};
use crate::env_plan::{EnvPlan, env_plan, var_name};
use crate::error::Error;
use crate::exit_codes::ExitCode;
use crate::library::{find_lib, preload_without};
use crate::output::{shell_quote, warn, write_stdout};
use crate::systemd::{SYSTEM_UNIT_DIR, quote, unit_name, write_unit_file};

/// The drop-in's file name: after most packages' own (which use 10-…), so
/// their Environment= lines come first.
const DROP_IN_NAME: &str = "50-kawrap.conf";
/// Runs `kawrap env`.
pub fn run(args: &EnvArgs) -> Result<ExitCode, Error> {
    if args.unset {
        let lib = find_lib(args.settings.lib.as_deref()).ok();
        let existing = std::env::var_os("LD_PRELOAD");
        let remaining = preload_without(lib.as_deref(), existing.as_deref());
        write_stdout(&unset_script(args.shell, remaining.as_deref()))?;
        return Ok(ExitCode::Success);
    }
    // env_plan resolves user-defined names too: the output holds numbers.
    let plan = env_plan(&args.settings)?;
    warn(&plan.warnings);
    if !args.systemd {
        write_stdout(&shell_script(args.shell, &plan))?;
        return Ok(ExitCode::Success);
    }
    let unit = args.unit.as_deref().map(unit_name).transpose()?;
    let text = drop_in(&plan, unit.as_deref())?;
    match (&unit, args.write) {
        (Some(unit), true) => write_drop_in(&args.unit_dir, unit, &text, args.force),
        _ => {
            write_stdout(text.as_bytes())?;
            Ok(ExitCode::Success)
        }
    }
}

/// `export`/`unset` lines (or fish's `set -gx`/`set -e`) for the plan.
fn shell_script(shell: Shell, plan: &EnvPlan) -> Vec<u8> {
    let mut script = Vec::new();
    for (var, value) in &plan.set {
        set_line(&mut script, shell, var, value);
    }
    for var in &plan.unset {
        unset_line(&mut script, shell, var);
    }
    script
}

/// Lines that take kawrap out of the shell: LD_PRELOAD keeps everything
/// else (or goes when nothing else was in it), every KAWRAP_* is unset.
fn unset_script(shell: Shell, remaining_preload: Option<&OsStr>) -> Vec<u8> {
    let mut script = Vec::new();
    match remaining_preload {
        Some(value) => set_line(&mut script, shell, "LD_PRELOAD", value),
        None => unset_line(&mut script, shell, "LD_PRELOAD"),
    }
    for var in kawrap_core::env::ALL {
        unset_line(&mut script, shell, var_name(var));
    }
    script
}

fn set_line(script: &mut Vec<u8>, shell: Shell, var: &str, value: &OsStr) {
    match shell {
        Shell::Sh => {
            script.extend_from_slice(format!("export {var}=").as_bytes());
            script.extend_from_slice(&shell_quote(value));
        }
        Shell::Fish => {
            script.extend_from_slice(format!("set -gx {var} ").as_bytes());
            script.extend_from_slice(&fish_quote(value));
            // `eval (kawrap env …)` joins the lines with spaces: each
            // command ends itself, so both that and `| source` work.
            script.push(b';');
        }
    }
    script.push(b'\n');
}

fn unset_line(script: &mut Vec<u8>, shell: Shell, var: &str) {
    let line = match shell {
        Shell::Sh => format!("unset {var}\n"),
        // `set -e` of an unset variable fails, and so would `set -q X; and
        // …`, failing the whole `| source` or `eval`: an `if` that takes
        // no branch succeeds.
        Shell::Fish => format!("if set -q {var}; set -e {var}; end;\n"),
    };
    script.extend_from_slice(line.as_bytes());
}

/// One word for fish: single quotes, where only `\'` and `\\` are special.
fn fish_quote(value: &OsStr) -> Vec<u8> {
    let mut quoted = vec![b'\''];
    for &byte in value.as_bytes() {
        if byte == b'\'' || byte == b'\\' {
            quoted.push(b'\\');
        }
        quoted.push(byte);
    }
    quoted.push(b'\'');
    quoted
}

/// A value for `Environment="VAR=value"`.
fn systemd_quote(var: &str, value: &OsStr) -> Result<String, Error> {
    let text = value.to_str().ok_or_else(|| Error::Invalid {
        message: format!("{var}: {value:?} is not valid UTF-8, which a unit file cannot carry"),
        hint: "use a path without such bytes".to_owned(),
    })?;
    Ok(quote(&format!("{var}={text}")))
}

/// The drop-in: comments saying where it goes and how to apply it, then
/// `[Service]` and one Environment= line per variable.
fn drop_in(plan: &EnvPlan, unit: Option<&str>) -> Result<String, Error> {
    let profile = &plan.config.profile;
    let unit_text = unit.unwrap_or("UNIT.service");
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# kawrap: TCP keepalive profile {profile} for {unit_text}: a dead peer is noticed in {}.",
        profile.detection_time()
    );
    let _ = writeln!(text, "# Generated by `kawrap env --systemd`. Install it as");
    let _ = writeln!(text, "#   {SYSTEM_UNIT_DIR}/{unit_text}.d/{DROP_IN_NAME}");
    let _ = writeln!(text, "# (or `kawrap env --systemd … --unit NAME --write`), then apply it:");
    let _ = writeln!(text, "#   systemctl daemon-reload && systemctl restart {unit_text}");
    let _ = writeln!(text, "# and check the running service's sockets:");
    let _ = writeln!(
        text,
        "#   kawrap check --pid \"$(systemctl show -p MainPID --value {unit_text})\" --expect {profile}"
    );
    let _ =
        writeln!(text, "# Warning: a later `Environment=LD_PRELOAD=…` (in the unit itself, or in a drop-in");
    let _ = writeln!(text, "# sorting after this one) REPLACES this LD_PRELOAD instead of appending to it;");
    let _ = writeln!(text, "# if the service needs another preload, list both in one line, kawrap's first.");
    let _ = writeln!(text, "[Service]");
    for (var, value) in &plan.set {
        // A service's environment starts empty: the shell's LD_PRELOAD has
        // no business in it, only the library.
        let value: OsString =
            if *var == "LD_PRELOAD" { plan.lib.clone().into_os_string() } else { value.clone() };
        let _ = writeln!(text, "Environment={}", systemd_quote(var, &value)?);
    }
    Ok(text)
}

/// Writes the drop-in where systemd looks for it. The same content already
/// there is fine; a different file stays unless `force`.
fn write_drop_in(unit_dir: &Path, unit: &str, text: &str, force: bool) -> Result<ExitCode, Error> {
    let path = unit_dir.join(format!("{unit}.d")).join(DROP_IN_NAME);
    if !write_unit_file(&path, text, force, "kawrap env --systemd …")? {
        eprintln!("kawrap: {} already has this content; nothing to do", path.display());
        return Ok(ExitCode::Success);
    }
    eprintln!("kawrap: wrote {}", path.display());
    eprintln!("kawrap: apply it with: systemctl daemon-reload && systemctl restart {unit}");
    Ok(ExitCode::Success)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use kawrap_core::Config;

    use super::*;

    fn plan() -> EnvPlan {
        EnvPlan {
            config: Config::default(),
            lib: PathBuf::from("/usr/lib/kawrap/libkawrap.so"),
            log: None,
            set: vec![
                ("LD_PRELOAD", "/usr/lib/kawrap/libkawrap.so:/opt/other.so".into()),
                ("KAWRAP_PROFILE", "300/30/5".into()),
                ("KAWRAP_RULES", ":3306=60/10/6,[2001:db8::]/32:5432=60/60/5".into()),
                ("KAWRAP_POLICY", "respect".into()),
            ],
            unset: vec!["KAWRAP_LOG", "KAWRAP_DISABLE"],
            warnings: Vec::new(),
        }
    }

    #[test]
    fn sh_script() {
        let script = String::from_utf8(shell_script(Shell::Sh, &plan())).unwrap();
        assert_eq!(
            script,
            "export LD_PRELOAD=/usr/lib/kawrap/libkawrap.so:/opt/other.so\n\
             export KAWRAP_PROFILE=300/30/5\n\
             export KAWRAP_RULES=':3306=60/10/6,[2001:db8::]/32:5432=60/60/5'\n\
             export KAWRAP_POLICY=respect\n\
             unset KAWRAP_LOG\n\
             unset KAWRAP_DISABLE\n"
        );
    }

    #[test]
    fn fish_script() {
        let script = String::from_utf8(shell_script(Shell::Fish, &plan())).unwrap();
        assert!(script.starts_with("set -gx LD_PRELOAD '/usr/lib/kawrap/libkawrap.so:/opt/other.so';\n"));
        assert!(script.contains("set -gx KAWRAP_PROFILE '300/30/5';\n"));
        assert!(script.ends_with("if set -q KAWRAP_DISABLE; set -e KAWRAP_DISABLE; end;\n"));
        assert_eq!(fish_quote(OsStr::new(r"it's a\b")), br"'it\'s a\\b'");
    }

    #[test]
    fn unset_keeps_other_preloads() {
        let script = String::from_utf8(unset_script(Shell::Sh, Some(OsStr::new("/opt/other.so")))).unwrap();
        assert_eq!(
            script,
            "export LD_PRELOAD=/opt/other.so\nunset KAWRAP_PROFILE\nunset KAWRAP_RULES\nunset KAWRAP_POLICY\n\
             unset KAWRAP_LOG\nunset KAWRAP_DISABLE\n"
        );
        let script = String::from_utf8(unset_script(Shell::Sh, None)).unwrap();
        assert!(script.starts_with("unset LD_PRELOAD\n"));
    }

    #[test]
    fn drop_in_is_a_service_section_with_only_the_library_preloaded() {
        let text = drop_in(&plan(), Some("backup.service")).unwrap();
        assert!(text.contains("#   /etc/systemd/system/backup.service.d/50-kawrap.conf\n"), "{text}");
        assert!(text.contains("systemctl daemon-reload && systemctl restart backup.service"), "{text}");
        assert!(text.contains("REPLACES this LD_PRELOAD"), "{text}");
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            [
                "[Service]",
                "Environment=\"LD_PRELOAD=/usr/lib/kawrap/libkawrap.so\"",
                "Environment=\"KAWRAP_PROFILE=300/30/5\"",
                "Environment=\"KAWRAP_RULES=:3306=60/10/6,[2001:db8::]/32:5432=60/60/5\"",
                "Environment=\"KAWRAP_POLICY=respect\"",
            ]
        );
    }

    #[test]
    fn systemd_values_are_escaped() {
        assert_eq!(
            systemd_quote("KAWRAP_LOG", OsStr::new("/var/log/a \"b\" 100%.log")).unwrap(),
            r#""KAWRAP_LOG=/var/log/a \"b\" 100%%.log""#
        );
        assert!(systemd_quote("KAWRAP_LOG", OsStr::from_bytes(b"/x\xff")).is_err());
    }

    #[test]
    fn write_refuses_to_clobber_a_different_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.service.d/50-kawrap.conf");
        write_drop_in(dir.path(), "backup.service", "one\n", false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
        // The same content again is fine.
        write_drop_in(dir.path(), "backup.service", "one\n", false).unwrap();
        let error = write_drop_in(dir.path(), "backup.service", "two\n", false).unwrap_err();
        assert!(error.to_string().contains("exists with different content"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
        write_drop_in(dir.path(), "backup.service", "two\n", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }
}
