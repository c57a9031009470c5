//! What a service's unit files say about the environment kawrap's drop-in
//! joins: whether it is `Type=oneshot` (when the drop-in takes effect), the
//! LD_PRELOAD it already sets (which kawrap's line would otherwise replace),
//! and settings that would undo kawrap's lines.
//!
//! systemd reads the unit file, then its drop-ins in the order of their
//! file names, and a later `Environment=` assignment of a variable replaces
//! an earlier one (an empty `Environment=` forgets them all). So what is
//! assigned before `50-kawrap.conf` is what kawrap's line meets, and what
//! comes after it wins over it. The files come from `systemctl show` when
//! systemd knows the unit, else from the unit directories.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{DROP_IN_NAME, SYSTEM_UNIT_DIR};

/// Where systemd looks for system units, in its order of precedence.
const SYSTEM_UNIT_PATH: [&str; 5] = [
    SYSTEM_UNIT_DIR,
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// A value assigned in a unit file, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    /// The value, C escapes and quotes resolved, `%` specifiers as written.
    pub value: String,
    /// `file:line`.
    pub at: String,
}

/// What the unit's files mean for kawrap's drop-in.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UnitView {
    /// The files read, in systemd's order (kawrap's own drop-in left out).
    pub files: Vec<PathBuf>,
    /// `Type=oneshot`: the drop-in takes effect at its next run, and
    /// `systemctl restart` would run it now. `None`: no unit file found.
    pub oneshot: Option<bool>,
    /// The LD_PRELOAD in effect just before kawrap's drop-in.
    pub preload: Option<Assigned>,
    /// Assignments after kawrap's drop-in that replace one of its variables
    /// (`Environment=` resets included): kawrap's value loses to them.
    pub later: Vec<(String, Assigned)>,
    /// Other settings that undo kawrap's variables, for a warning.
    pub undoing: Vec<String>,
}

/// Reads what `unit` (`NAME.service`) is made of: through `systemctl` for
/// the system's units when systemd knows it, else from `unit_dir` and the
/// system unit directories.
pub fn read(unit: &str, unit_dir: &Path, our_vars: &[&str]) -> UnitView {
    let from_systemctl = if unit_dir == Path::new(SYSTEM_UNIT_DIR) { systemctl_files(unit) } else { None };
    let files = from_systemctl.unwrap_or_else(|| unit_files(unit, unit_dir));
    view(&files, unit_dir, unit, our_vars)
}

/// The unit's file and drop-ins as systemd itself has them loaded; `None`
/// when systemctl is missing, systemd is not running, or it does not know
/// the unit.
fn systemctl_files(unit: &str) -> Option<Vec<PathBuf>> {
    let output = Command::new("systemctl")
        .args(["show", "--property=FragmentPath", "--property=DropInPaths", "--", unit])
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    let text = String::from_utf8(output.stdout).ok()?;
    let mut fragment = None;
    let mut drop_ins = Vec::new();
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("FragmentPath=").filter(|path| !path.is_empty()) {
            fragment = Some(PathBuf::from(path));
        } else if let Some(paths) = line.strip_prefix("DropInPaths=") {
            drop_ins.extend(paths.split_whitespace().map(PathBuf::from));
        }
    }
    let mut files = vec![fragment?];
    files.extend(drop_ins);
    Some(files)
}

/// The unit file and drop-ins as systemd would find them, without asking
/// it: the first unit file of that name (or of its template) in the
/// directories, then every `*.conf` of `NAME.d/` (and of the template's
/// and `service.d/`), a name in an earlier directory hiding the same name
/// in a later one, sorted by file name.
fn unit_files(unit: &str, unit_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![unit_dir.to_owned()];
    dirs.extend(SYSTEM_UNIT_PATH.iter().map(PathBuf::from).filter(|dir| dir != unit_dir));
    // `getty@tty1.service` falls back to `getty@.service`.
    let template = unit.split_once('@').map(|(prefix, rest)| {
        let suffix = rest.rsplit_once('.').map_or("", |(_, suffix)| suffix);
        format!("{prefix}@.{suffix}")
    });
    let names: Vec<&str> = [Some(unit), template.as_deref()].into_iter().flatten().collect();
    let Some(fragment) =
        names.iter().find_map(|name| dirs.iter().map(|dir| dir.join(name)).find(|p| p.exists()))
    else {
        return Vec::new();
    };
    let mut drop_ins: Vec<(String, PathBuf)> = Vec::new();
    let drop_in_dirs =
        ["service.d".to_owned()].into_iter().chain(names.iter().rev().map(|name| format!("{name}.d")));
    for drop_in_dir in drop_in_dirs {
        for dir in &dirs {
            let Ok(entries) = fs::read_dir(dir.join(&drop_in_dir)) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".conf") && !drop_ins.iter().any(|(seen, _)| *seen == name) {
                    drop_ins.push((name, entry.path()));
                }
            }
        }
    }
    drop_ins.sort();
    let mut files = vec![fragment];
    files.extend(drop_ins.into_iter().map(|(_, path)| path));
    files
}

/// The unit's meaning for kawrap's drop-in, from its files in order.
fn view(files: &[PathBuf], unit_dir: &Path, unit: &str, our_vars: &[&str]) -> UnitView {
    let ours = unit_dir.join(format!("{unit}.d")).join(DROP_IN_NAME);
    let mut view = UnitView { oneshot: (!files.is_empty()).then_some(false), ..UnitView::default() };
    for (index, path) in files.iter().enumerate() {
        if *path == ours {
            continue;
        }
        // The unit file first, then the drop-ins; which of those come after
        // kawrap's is a matter of their file names.
        let after_ours =
            index > 0 && path.file_name().is_some_and(|name| name > std::ffi::OsStr::new(DROP_IN_NAME));
        let Ok(text) = fs::read_to_string(path) else { continue };
        view.files.push(path.clone());
        for (line, key, value) in service_settings(&text) {
            let at = format!("{}:{line}", path.display());
            match key.as_str() {
                "Type" => view.oneshot = Some(value.trim() == "oneshot"),
                "Environment" => view.environment(&value, &at, after_ours, our_vars),
                "UnsetEnvironment" => {
                    for word in words(&value) {
                        let var = word.split_once('=').map_or(word.as_str(), |(var, _)| var);
                        if our_vars.contains(&var) {
                            view.undoing.push(format!("{at}: UnsetEnvironment= removes {var}"));
                        }
                    }
                }
                "EnvironmentFile" => view.environment_file(&value, &at, our_vars),
                _ => {}
            }
        }
    }
    view
}

impl UnitView {
    /// One `Environment=` line.
    fn environment(&mut self, value: &str, at: &str, after_ours: bool, our_vars: &[&str]) {
        let assigned = |value: &str| Assigned { value: value.to_owned(), at: at.to_owned() };
        if value.trim().is_empty() {
            // An empty assignment forgets everything assigned before it.
            if after_ours {
                self.later.push(("Environment=".to_owned(), assigned("")));
            } else {
                self.preload = None;
            }
            return;
        }
        for word in words(value) {
            let Some((var, value)) = word.split_once('=') else { continue };
            if after_ours && our_vars.contains(&var) {
                self.later.push((var.to_owned(), assigned(value)));
            } else if !after_ours && var == "LD_PRELOAD" {
                self.preload = Some(assigned(value));
            }
        }
    }

    /// One `EnvironmentFile=` line: its variables win over every
    /// `Environment=` line, kawrap's included.
    fn environment_file(&mut self, value: &str, at: &str, our_vars: &[&str]) {
        let path = value.trim().trim_start_matches('-');
        let Ok(text) = fs::read_to_string(path) else { return };
        for line in text.lines() {
            let line = line.trim().trim_start_matches("export ");
            if let Some((var, _)) = line.split_once('=')
                && our_vars.contains(&var.trim())
            {
                self.undoing.push(format!(
                    "{at}: EnvironmentFile={path} sets {}, which wins over Environment=",
                    var.trim()
                ));
            }
        }
    }
}

/// The `[Service]` settings of a unit file: (line, key, value), lines
/// ending in `\` joined with the next, comments left out.
fn service_settings(text: &str) -> Vec<(usize, String, String)> {
    let mut settings = Vec::new();
    let mut in_service = false;
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        if let Some(continued) = line.strip_suffix('\\') {
            joined.push_str(continued);
            joined.push(' ');
            pending = Some((start, joined));
            continue;
        }
        joined.push_str(line);
        if joined.starts_with('[') {
            in_service = joined == "[Service]";
        } else if in_service && let Some((key, value)) = joined.split_once('=') {
            settings.push((start, key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    settings
}

/// The words of a setting like `Environment=`, as systemd splits them:
/// at whitespace, with "double" and 'single' quotes and C escapes
/// (`\"`, `\\`, `\n`, `\t`, `\xNN`). `%` specifiers stay as written.
pub fn words(value: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return words;
        }
        let mut word = String::new();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) => match chars.next() {
                    Some('n') => word.push('\n'),
                    Some('t') => word.push('\t'),
                    Some('x') => {
                        let hex: String = [chars.next(), chars.next()].into_iter().flatten().collect();
                        word.extend(u8::from_str_radix(&hex, 16).ok().map(char::from));
                    }
                    Some(other) => word.push(other),
                    None => {}
                },
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(open)) if c == open => quote = None,
                (c, None) if c.is_whitespace() => break,
                (c, _) => word.push(c),
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_systemd_does() {
        assert_eq!(words("A=1 B=2"), ["A=1", "B=2"]);
        assert_eq!(words(r#""A=one two" 'B=x"y' C=a\"b"#), ["A=one two", "B=x\"y", "C=a\"b"]);
        assert_eq!(words(r#"  "LD_PRELOAD=/a.so /b.so"  "#), ["LD_PRELOAD=/a.so /b.so"]);
        assert_eq!(words(r"A=%h\x41\\"), ["A=%hA\\"]);
        assert!(words("   ").is_empty());
    }

    #[test]
    fn only_service_settings_with_continuations() {
        let text = "[Unit]\nDescription=x\n[Service]\n# c\nType=oneshot\nEnvironment=A=1 \\\n  B=2\n[Install]\nWantedBy=x\n";
        let settings = service_settings(text);
        assert_eq!(
            settings,
            [
                (5, "Type".to_owned(), "oneshot".to_owned()),
                (6, "Environment".to_owned(), "A=1  B=2".to_owned())
            ]
        );
    }

    #[test]
    fn what_comes_before_and_after_kawrap_drop_in() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        };
        let unit = write("b.service", "[Service]\nType=simple\nEnvironment=LD_PRELOAD=/first.so\n");
        let early =
            write("b.service.d/10-a.conf", "[Service]\nEnvironment=\nEnvironment=\"LD_PRELOAD=/j.so\"\n");
        let ours = write("b.service.d/50-kawrap.conf", "[Service]\nEnvironment=LD_PRELOAD=/k.so\n");
        let late = write("b.service.d/override.conf", "[Service]\nEnvironment=KAWRAP_POLICY=force\n");
        let vars = ["LD_PRELOAD", "KAWRAP_POLICY"];
        let files = unit_files("b.service", dir.path());
        assert_eq!(files, [unit.clone(), early.clone(), ours, late.clone()]);
        let view = view(&files, dir.path(), "b.service", &vars);
        assert_eq!(view.files, [unit, early.clone(), late.clone()]);
        assert_eq!(view.oneshot, Some(false));
        assert_eq!(
            view.preload,
            Some(Assigned { value: "/j.so".into(), at: format!("{}:3", early.display()) })
        );
        assert_eq!(
            view.later,
            [(
                "KAWRAP_POLICY".to_owned(),
                Assigned { value: "force".into(), at: format!("{}:2", late.display()) }
            )]
        );
        assert_eq!(read("nothing.service", dir.path(), &vars).oneshot, None);
    }

    #[test]
    fn an_instance_falls_back_to_its_template() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("dump@.service"), "[Service]\nType=oneshot\n").unwrap();
        let view = read("dump@app.service", dir.path(), &[]);
        assert_eq!(view.oneshot, Some(true));
    }
}
