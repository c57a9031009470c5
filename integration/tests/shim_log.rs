//! `KAWRAP_LOG` as the shim writes it: only an absolute path, never through
//! a symbolic link, one line per socket that says when and which program.
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use kawrap_integration::probe::options_line;
use kawrap_integration::servers::have_program;
use kawrap_integration::{is_root, shim_path, skip_unless, without_kawrap_env};

/// Runs `probe` (kaprobe or a copy) under the shim with `KAWRAP_LOG=log` in
/// `dir`: one TCP socket, its options printed.
fn probe_with_log(probe: &Path, log: &OsStr, dir: &Path) -> Vec<String> {
    let mut command = Command::new(probe);
    command.args(["socket:inet:stream", "print"]).current_dir(dir);
    without_kawrap_env(&mut command)
        .env("KAWRAP_PROFILE", "300/30/5")
        .env("KAWRAP_LOG", log)
        .env("LD_PRELOAD", shim_path());
    let output = command.output().expect("run kaprobe");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

fn kaprobe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kaprobe"))
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_below(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_relative_kawrap_log_is_ignored() {
    let dir = kawrap_integration::temp_dir("relative-log");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let profile = options_line(1, 300, 30, 5, 0);
    for relative in ["0", "kawrap.log", "sub/kawrap.log", "./kawrap.log"] {
        let lines = probe_with_log(kaprobe(), OsStr::new(relative), dir.path());
        assert!(lines.contains(&profile), "the shim still works with KAWRAP_LOG={relative}: {lines:?}");
    }
    assert_eq!(files_below(dir.path()), Vec::<PathBuf>::new(), "a relative KAWRAP_LOG created a file");
    let absolute = dir.path().join("kawrap.log");
    probe_with_log(kaprobe(), absolute.as_os_str(), Path::new("/"));
    assert!(absolute.is_file(), "an absolute KAWRAP_LOG is written");
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `2026-12-03T07:21:09.123Z` as milliseconds since the epoch; `None` if
/// it is not exactly that shape.
fn rfc3339_utc_millis(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    if bytes.len() != shape.len()
        || !shape.bytes().zip(bytes).all(|(s, b)| if s == b'd' { b.is_ascii_digit() } else { s == *b })
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text[range].parse::<i64>().ok();
    let days = days_from_civil(number(0..4)?, number(5..7)?, number(8..10)?);
    let seconds = days * 86_400 + number(11..13)? * 3600 + number(14..16)? * 60 + number(17..19)?;
    Some(seconds * 1000 + number(20..23)?)
}

#[test]
fn every_log_line_says_when_in_utc_and_which_program() {
    let dir = kawrap_integration::temp_dir("log-format");
    // A program name with a space and an `=`, as comm can hold anything.
    let probe = dir.path().join("ka probe=x");
    assert!(Command::new("cp").arg(kaprobe()).arg(&probe).status().expect("cp").success());
    let log = dir.path().join("kawrap.log");
    let before = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    probe_with_log(&probe, log.as_os_str(), dir.path());
    let after = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    let text = std::fs::read_to_string(&log).expect("log written");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line per socket: {text}");
    let (time, rest) = lines[0].split_once(' ').expect("a time, then the rest");
    let millis = rfc3339_utc_millis(time).unwrap_or_else(|| panic!("not RFC 3339 UTC with ms: {time:?}"));
    assert!((before - 1..=after + 1).contains(&millis), "{time} is not the wall-clock time of the run");
    assert!(rest.starts_with("kawrap pid="), "{rest}");
    assert!(rest.contains(r" comm=ka\x20probe\x3dx fd=3 event=socket "), "{rest}");
}

#[test]
fn the_log_is_never_opened_through_a_link_another_user_planted() {
    if skip_unless(is_root() && have_program("setpriv"), "needs root and setpriv to plant links as nobody") {
        return;
    }
    let lab = kawrap_integration::temp_dir("log-links");
    std::fs::set_permissions(lab.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // A file only root may read or write, and a directory nobody owns.
    let victim = lab.path().join("victim");
    std::fs::write(&victim, "secret\n").expect("write victim");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).expect("chmod victim");
    let theirs = lab.path().join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown to nobody");
    let not_yet = lab.path().join("created-by-root");
    let as_nobody = |args: &[&OsStr]| {
        let status = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .args(args)
            .status()
            .expect("run setpriv");
        assert!(status.success(), "as nobody: {args:?}");
    };
    let to_victim = theirs.join("kawrap.log");
    let dangling = theirs.join("dangling.log");
    as_nobody(&[OsStr::new("ln"), OsStr::new("-s"), victim.as_os_str(), to_victim.as_os_str()]);
    as_nobody(&[OsStr::new("ln"), OsStr::new("-s"), not_yet.as_os_str(), dangling.as_os_str()]);
    let profile = options_line(1, 300, 30, 5, 0);
    for link in [&to_victim, &dangling] {
        let lines = probe_with_log(kaprobe(), link.as_os_str(), Path::new("/"));
        assert!(lines.contains(&profile), "the shim still works: {lines:?}");
    }
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "secret\n", "appended through a link");
    assert!(!not_yet.exists(), "a dangling link made root create {}", not_yet.display());
    assert!(to_victim.symlink_metadata().expect("link").file_type().is_symlink());
    // The same directory, no link: the log is written (and is root's).
    let plain = theirs.join("plain.log");
    probe_with_log(kaprobe(), plain.as_os_str(), Path::new("/"));
    assert_eq!(plain.metadata().expect("plain log written").uid(), 0);
}

/// Whatever a variable holds, a line of the log stays one line: a value
/// with a newline (here in the part of a rule the error message repeats)
/// cannot add a line that looks like the shim's.
#[test]
fn a_value_with_a_newline_cannot_forge_a_log_line() {
    let dir = kawrap_integration::temp_dir("log-newline");
    let log = dir.path().join("kawrap.log");
    let forged = "2026-01-01T00:00:00.000Z kawrap pid=1 comm=forged fd=3 event=socket";
    let mut command = Command::new(kaprobe());
    command.args(["socket:inet:stream", "print"]);
    without_kawrap_env(&mut command)
        .env("KAWRAP_RULES", format!("10.0.0.0/8\n{forged}=ssh"))
        .env("KAWRAP_LOG", &log)
        .env("LD_PRELOAD", shim_path());
    let output = command.output().expect("run kaprobe");
    assert!(output.status.success(), "{output:?}");
    let text = std::fs::read_to_string(&log).expect("log written");
    assert_eq!(text.lines().count(), 1, "one line for one complaint: {text}");
    assert!(text.contains(" disabled: rule "), "{text}");
}
