//! `kawrap --log FILE` run by root in a directory another user owns: that
//! user plants symbolic links, a FIFO, a link in place of a directory, and
//! the launcher must neither write through them, nor create a file where
//! they point, nor hang. The other user is `nobody`, through setpriv(1).
mod testenv;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testenv::{TestEnv, harmless_preload, have, is_root, kawrap_bin, skip_unless};

const NOBODY: u32 = 65534;

/// A directory owned by nobody, and next to it a root-only directory with
/// a root-owned 0600 file: what a planted link would point at.
struct Setup {
    _root: tempfile::TempDir,
    shared: PathBuf,
    private: PathBuf,
    victim: PathBuf,
}

const VICTIM_TEXT: &str = "root's own file\n";

fn setup() -> Option<Setup> {
    if !skip_unless(is_root() && have("setpriv"), "needs root and setpriv (util-linux) to act as nobody") {
        return None;
    }
    // Under /tmp: every directory above it must be searchable by nobody.
    let root = tempfile::Builder::new().prefix("kawrap-log-").tempdir_in("/tmp").expect("temp dir");
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let shared = root.path().join("shared");
    fs::create_dir(&shared).expect("mkdir shared");
    std::os::unix::fs::chown(&shared, Some(NOBODY), Some(NOBODY)).expect("chown shared to nobody");
    let private = root.path().join("private");
    fs::create_dir(&private).expect("mkdir private");
    fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).expect("chmod");
    let victim = private.join("secret");
    fs::write(&victim, VICTIM_TEXT).expect("write the victim");
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).expect("chmod");
    Some(Setup { _root: root, shared, private, victim })
}

/// Runs a command as nobody, as the other user would.
fn as_nobody(args: &[&str]) {
    let status = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .status()
        .expect("run setpriv");
    assert!(status.success(), "as nobody: {args:?}: {status}");
}

/// `kawrap --log LOG -- true` as root, killed if it has not finished in 10 s.
fn launch_with_log(log: &Path) -> (Option<i32>, String, Duration) {
    let mut child = Command::new(kawrap_bin())
        .arg("--lib")
        .arg(harmless_preload())
        .arg("--log")
        .arg(log)
        .args(["--", "true"])
        .env_remove("LD_PRELOAD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kawrap");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let stderr = child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
    (status.and_then(|s| s.code()), stderr.unwrap_or_default(), elapsed)
}

fn assert_victim_untouched(setup: &Setup) {
    assert_eq!(fs::read_to_string(&setup.victim).unwrap(), VICTIM_TEXT);
}

#[test]
fn a_planted_symlink_to_a_root_file_is_refused() {
    let Some(setup) = setup() else { return };
    let log = setup.shared.join("kawrap.log");
    as_nobody(&["ln", "-s", setup.victim.to_str().unwrap(), log.to_str().unwrap()]);
    let before = fs::metadata(&setup.victim).unwrap();
    let (code, stderr, _) = launch_with_log(&log);
    assert_eq!(code, Some(125), "{stderr}");
    assert!(stderr.contains(&format!("--log {}", log.display())), "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert_victim_untouched(&setup);
    let after = fs::metadata(&setup.victim).unwrap();
    assert_eq!((before.mtime(), before.mtime_nsec()), (after.mtime(), after.mtime_nsec()));
}

#[test]
fn a_dangling_symlink_never_creates_its_target() {
    let Some(setup) = setup() else { return };
    let log = setup.shared.join("kawrap.log");
    let target = setup.private.join("created-by-root");
    as_nobody(&["ln", "-s", target.to_str().unwrap(), log.to_str().unwrap()]);
    let (code, stderr, _) = launch_with_log(&log);
    assert_eq!(code, Some(125), "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(!target.exists(), "root created {} through nobody's link", target.display());
}

#[test]
fn a_fifo_is_refused_without_hanging() {
    let Some(setup) = setup() else { return };
    let log = setup.shared.join("kawrap.log");
    as_nobody(&["mkfifo", log.to_str().unwrap()]);
    let (code, stderr, elapsed) = launch_with_log(&log);
    assert_eq!(code, Some(125), "after {elapsed:?}: {stderr}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(stderr.contains("not a regular file (a FIFO)"), "{stderr}");
}

#[test]
fn a_planted_link_in_place_of_a_directory_is_refused() {
    let Some(setup) = setup() else { return };
    let link = setup.shared.join("logs");
    as_nobody(&["ln", "-s", setup.private.to_str().unwrap(), link.to_str().unwrap()]);
    let (code, stderr, _) = launch_with_log(&link.join("kawrap.log"));
    assert_eq!(code, Some(125), "{stderr}");
    assert!(
        stderr.contains(&format!("{} is a symbolic link owned by uid 65534", link.display())),
        "{stderr}"
    );
    assert!(!setup.private.join("kawrap.log").exists());
}

#[test]
fn a_device_is_refused() {
    let Some(_setup) = setup() else { return };
    let (code, stderr, _) = launch_with_log(Path::new("/dev/null"));
    assert_eq!(code, Some(125), "{stderr}");
    assert!(stderr.contains("not a regular file (a character device)"), "{stderr}");
}

#[test]
fn a_regular_file_is_created_or_appended_to() {
    let Some(setup) = setup() else { return };
    let log = setup.shared.join("new.log");
    let (code, stderr, _) = launch_with_log(&log);
    assert_eq!(code, Some(0), "{stderr}");
    let meta = fs::symlink_metadata(&log).expect("the log was created");
    assert!(meta.file_type().is_file());
    // nobody's own file in nobody's directory: root appends to it.
    let theirs = setup.shared.join("theirs.log");
    as_nobody(&["touch", theirs.to_str().unwrap()]);
    assert_eq!(launch_with_log(&theirs).0, Some(0));
    // A link root made itself (owned by root) is followed, as /var/run is.
    let env = TestEnv::new();
    let real = env.root().join("real");
    fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, env.root().join("alias")).unwrap();
    let (code, stderr, _) = launch_with_log(&env.root().join("alias/k.log"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(real.join("k.log").is_file());
}
