//! `kawrap env`: the launcher's environment as shell commands for the
//! current shell (`eval "$(kawrap env …)"`), the lines that undo them
//! (`--unset`), or a systemd drop-in (`--systemd`).
//!
//! The values are exactly what `kawrap … COMMAND` would set (same checks,
//! same library discovery, same LD_PRELOAD merge: [`crate::env_plan`]),
//! so a profile is always written in numbers: the shim knows no names
//! beyond the built-ins, and a number means the same on every machine.
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::args::env::{EnvArgs, Syntax};
use crate::env_plan::{EnvPlan, env_plan, var_name};
use crate::error::Error;
use crate::exit_codes::ExitCode;
use crate::library::{find_lib, preload_without};
use crate::output::{shell_quote, warn, write_stdout};
use crate::systemd::install::install;
use crate::systemd::unit::{self, UnitView};
use crate::systemd::{DROP_IN_NAME, escape, unit_name};

/// Runs `kawrap env`.
pub fn run(args: &EnvArgs) -> Result<ExitCode, Error> {
    if args.unset {
        let lib = find_lib(args.settings.lib.as_deref()).ok();
        let existing = std::env::var_os("LD_PRELOAD");
        let remaining = preload_without(lib.as_deref(), existing.as_deref());
        write_stdout(&unset_script(args.shell.syntax(), remaining.as_deref()))?;
        return Ok(ExitCode::Success);
    }
    // env_plan resolves user-defined names too: the output holds numbers.
    let plan = env_plan(&args.settings)?;
    warn(&plan.warnings);
    if !args.systemd {
        write_stdout(&shell_script(args.shell.syntax(), &plan))?;
        return Ok(ExitCode::Success);
    }
    let unit = args.unit.as_deref().map(unit_name).transpose()?;
    let view = match &unit {
        Some(unit) => {
            let vars: Vec<&str> = plan.set.iter().map(|(var, _)| *var).collect();
            let view = unit::read(unit, &args.unit_dir, &vars);
            if view.oneshot.is_none() {
                eprintln!(
                    "kawrap: note: no unit file for {unit} in {} or the system's unit directories; \
                     nothing in it to keep",
                    args.unit_dir.display()
                );
            }
            view
        }
        None => UnitView::default(),
    };
    let drop_in = drop_in(&plan, unit.as_deref(), &args.unit_dir, &view)?;
    for line in &drop_in.notes {
        eprintln!("kawrap: {line}");
    }
    warn(&drop_in.warnings);
    let Some(unit) = unit.filter(|_| args.write) else {
        write_stdout(drop_in.text.as_bytes())?;
        return Ok(ExitCode::Success);
    };
    let relative = format!("{unit}.d/{DROP_IN_NAME}");
    let regenerate = "kawrap env --systemd …";
    let installed = install(&args.unit_dir, &relative, &drop_in.text, args.force, regenerate)?;
    eprintln!("kawrap: {}", installed.describe(&args.unit_dir.join(&relative)));
    eprintln!("kawrap: then run: systemctl daemon-reload");
    for line in taking_effect(&unit, view.oneshot) {
        eprintln!("kawrap: {line}");
    }
    Ok(ExitCode::Success)
}

/// `export`/`unset` lines (or fish's `set -gx`/`set -e`) for the plan.
fn shell_script(shell: Syntax, plan: &EnvPlan) -> Vec<u8> {
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
fn unset_script(shell: Syntax, remaining_preload: Option<&OsStr>) -> Vec<u8> {
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

fn set_line(script: &mut Vec<u8>, shell: Syntax, var: &str, value: &OsStr) {
    match shell {
        Syntax::Posix => {
            script.extend_from_slice(format!("export {var}=").as_bytes());
            script.extend_from_slice(&shell_quote(value));
        }
        Syntax::Fish => {
            script.extend_from_slice(format!("set -gx {var} ").as_bytes());
            script.extend_from_slice(&fish_quote(value));
            // `eval (kawrap env …)` joins the lines with spaces: each
            // command ends itself, so both that and `| source` work.
            script.push(b';');
        }
    }
    script.push(b'\n');
}

fn unset_line(script: &mut Vec<u8>, shell: Syntax, var: &str) {
    let line = match shell {
        Syntax::Posix => format!("unset {var}\n"),
        // `set -e` of an unset variable fails, and so would `set -q X; and
        // …`, failing the whole `| source` or `eval`: an `if` that takes
        // no branch succeeds.
        Syntax::Fish => format!("if set -q {var}; set -e {var}; end;\n"),
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

/// Text for a value inside `Environment="…"` (see [`escape`]); a unit
/// file carries only UTF-8.
fn systemd_escape(var: &str, value: &OsStr, keep_specifiers: bool) -> Result<String, Error> {
    let text = value.to_str().ok_or_else(|| Error::Invalid {
        message: format!("{var}: {value:?} is not valid UTF-8, which a unit file cannot carry"),
        hint: "use a path without such bytes".to_owned(),
    })?;
    Ok(escape(text, keep_specifiers))
}

/// `"VAR=value"` for an Environment= line.
fn systemd_quote(var: &str, value: &OsStr) -> Result<String, Error> {
    Ok(format!("\"{var}={}\"", systemd_escape(var, value, false)?))
}

/// A drop-in, and what to tell the person about it.
struct DropIn {
    text: String,
    /// What kawrap did about the unit (kept its preload).
    notes: Vec<String>,
    /// What in the unit undoes kawrap's lines.
    warnings: Vec<String>,
}

/// The drop-in: comments saying where it goes, how and when it takes
/// effect and how to check it, then `[Service]` and one Environment= line
/// per variable. An LD_PRELOAD the unit sets before it is kept in
/// kawrap's line, which would otherwise replace it.
fn drop_in(plan: &EnvPlan, unit: Option<&str>, unit_dir: &Path, view: &UnitView) -> Result<DropIn, Error> {
    let profile = &plan.config.profile;
    let unit_text = unit.unwrap_or("UNIT.service");
    let lib = plan.lib.as_os_str();
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# kawrap: TCP keepalive profile {profile} for {unit_text}: a dead peer is noticed in {}.",
        profile.detection_time()
    );
    let _ = writeln!(text, "# Generated by `kawrap env --systemd`; its place is");
    let _ = writeln!(text, "#   {}/{unit_text}.d/{DROP_IN_NAME}", unit_dir.display());
    let _ = writeln!(text, "# (`kawrap env --systemd … --unit NAME --write` puts it there). Then run");
    let _ = writeln!(text, "#   systemctl daemon-reload");
    for line in taking_effect(unit_text, view.oneshot) {
        let _ = writeln!(text, "# {line}");
    }
    for line in how_to_check(unit_text, &profile.to_string()) {
        let _ = writeln!(text, "# {line}");
    }

    // The unit's own preload, after kawrap's library (as `kawrap COMMAND`
    // puts them): kawrap's hooks see the program's socket calls first, and
    // it takes nothing from the other library (it allocates no memory, so
    // a malloc replacement such as jemalloc works the same either way).
    let mut preload = systemd_escape("LD_PRELOAD", lib, false)?;
    if let Some(theirs) = &view.preload {
        let kept = preload_without(Some(&plan.lib), Some(OsStr::new(&theirs.value)));
        if let Some(kept) = kept {
            preload.push(':');
            preload.push_str(&systemd_escape("LD_PRELOAD", &kept, true)?);
            let _ = writeln!(text, "# {unit_text} sets its own LD_PRELOAD ({}):", theirs.at);
            let _ =
                writeln!(text, "# kept, after kawrap's library, which this line would otherwise replace.");
            notes.push(format!(
                "{unit_text} sets LD_PRELOAD={} ({}); the drop-in keeps it, after kawrap's library: \
                 LD_PRELOAD={preload}",
                theirs.value, theirs.at
            ));
        }
    }
    for (var, later) in &view.later {
        if var == "Environment=" {
            warnings.push(format!(
                "{}: an empty Environment= after {DROP_IN_NAME} forgets every variable before it, kawrap's \
                 included",
                later.at
            ));
        } else if var == "LD_PRELOAD" {
            let merged = format!("{}:{}", lib.to_string_lossy(), later.value);
            warnings.push(format!(
                "{}: its LD_PRELOAD={} comes after {DROP_IN_NAME} and REPLACES kawrap's; write both there: \
                 LD_PRELOAD={merged}",
                later.at, later.value
            ));
        } else {
            warnings.push(format!(
                "{}: its {var}={} comes after {DROP_IN_NAME} and REPLACES kawrap's",
                later.at, later.value
            ));
        }
    }
    warnings.extend(view.undoing.iter().cloned());
    let _ = writeln!(text, "# A later `Environment=LD_PRELOAD=…` (in a drop-in sorting after this one, such");
    let _ =
        writeln!(text, "# as override.conf from `systemctl edit`) REPLACES this LD_PRELOAD: list both in");
    let _ = writeln!(text, "# one line there, kawrap's first.");
    let _ = writeln!(text, "[Service]");
    for (var, value) in &plan.set {
        // A service's environment starts empty: the shell's LD_PRELOAD has
        // no business in it, only the library (and the unit's own).
        let line = if *var == "LD_PRELOAD" {
            format!("\"LD_PRELOAD={preload}\"")
        } else {
            systemd_quote(var, value)?
        };
        let _ = writeln!(text, "Environment={line}");
    }
    Ok(DropIn { text, notes, warnings })
}

/// When the drop-in takes effect, after `systemctl daemon-reload`: a
/// service's processes read their environment when they start. `oneshot`:
/// the unit's Type=oneshot (`None`: unknown).
fn taking_effect(unit: &str, oneshot: Option<bool>) -> Vec<String> {
    match oneshot {
        Some(true) => vec![
            format!("It takes effect at {unit}'s next run (by its timer, say): it is"),
            "Type=oneshot, so restarting it would run the job right away.".to_owned(),
        ],
        Some(false) => vec![
            "Its running processes keep their environment until they restart; when it suits you:".to_owned(),
            format!("  systemctl restart {unit}"),
        ],
        None => vec![
            "It takes effect when the service next starts: a long-running service at".to_owned(),
            format!("`systemctl restart {unit}` (when it suits you), a Type=oneshot job (a backup"),
            "a timer starts) at its next run, since restarting it would run it right away.".to_owned(),
        ],
    }
}

/// How to check the service's live sockets against the profile, as comment
/// lines. Each of its processes is checked on its own: for `ExecStart=sh -c
/// 'pg_dump …'` the sockets are pg_dump's, not the shell's (the main PID).
fn how_to_check(unit: &str, profile: &str) -> Vec<String> {
    vec![
        "While it runs, check the sockets of all its processes (under `sh -c …`, the".to_owned(),
        "programs the shell started too):".to_owned(),
        format!("  kawrap check --unit {unit} --expect {profile}"),
    ]
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
        let script = String::from_utf8(shell_script(Syntax::Posix, &plan())).unwrap();
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
        let script = String::from_utf8(shell_script(Syntax::Fish, &plan())).unwrap();
        assert!(script.starts_with("set -gx LD_PRELOAD '/usr/lib/kawrap/libkawrap.so:/opt/other.so';\n"));
        assert!(script.contains("set -gx KAWRAP_PROFILE '300/30/5';\n"));
        assert!(script.ends_with("if set -q KAWRAP_DISABLE; set -e KAWRAP_DISABLE; end;\n"));
        assert_eq!(fish_quote(OsStr::new(r"it's a\b")), br"'it\'s a\\b'");
    }

    #[test]
    fn unset_keeps_other_preloads() {
        let script =
            String::from_utf8(unset_script(Syntax::Posix, Some(OsStr::new("/opt/other.so")))).unwrap();
        assert_eq!(
            script,
            "export LD_PRELOAD=/opt/other.so\nunset KAWRAP_PROFILE\nunset KAWRAP_RULES\nunset KAWRAP_POLICY\n\
             unset KAWRAP_LOG\nunset KAWRAP_DISABLE\n"
        );
        let script = String::from_utf8(unset_script(Syntax::Posix, None)).unwrap();
        assert!(script.starts_with("unset LD_PRELOAD\n"));
    }

    #[test]
    fn drop_in_is_a_service_section_with_only_the_library_preloaded() {
        let unit_dir = Path::new("/etc/systemd/system");
        let drop_in = drop_in(&plan(), Some("backup.service"), unit_dir, &UnitView::default()).unwrap();
        let text = drop_in.text;
        assert!(text.contains("#   /etc/systemd/system/backup.service.d/50-kawrap.conf\n"), "{text}");
        assert!(text.contains("#   systemctl daemon-reload\n"), "{text}");
        assert!(text.contains("#   kawrap check --unit backup.service --expect 300/30/5\n"), "{text}");
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
        assert!(drop_in.notes.is_empty() && drop_in.warnings.is_empty());
    }

    #[test]
    fn the_unit_preload_is_kept_with_its_specifiers() {
        let view = UnitView {
            preload: Some(unit::Assigned {
                value: "%h/lib/trace.so /usr/lib/kawrap/libkawrap.so".into(),
                at: "u:3".into(),
            }),
            ..UnitView::default()
        };
        let drop_in = drop_in(&plan(), Some("b.service"), Path::new("/d"), &view).unwrap();
        assert!(
            drop_in
                .text
                .contains("\nEnvironment=\"LD_PRELOAD=/usr/lib/kawrap/libkawrap.so:%h/lib/trace.so\"\n"),
            "{}",
            drop_in.text
        );
        assert_eq!(drop_in.notes.len(), 1);
    }

    #[test]
    fn systemd_values_are_escaped() {
        assert_eq!(
            systemd_quote("KAWRAP_LOG", OsStr::new("/var/log/a \"b\" 100%.log")).unwrap(),
            r#""KAWRAP_LOG=/var/log/a \"b\" 100%%.log""#
        );
        assert!(systemd_quote("KAWRAP_LOG", OsStr::from_bytes(b"/x\xff")).is_err());
    }
}
