//! Every warning kawrap gives before it runs a program is true: under
//! `kawrap --profile 300/30/5` the program's socket has exactly what it has
//! without kawrap — its own getsockopt and `ss -o` on the host say so —
//! never the profile. (The wording of each warning is tested in
//! cli/tests/reach.rs; musl programs, which kawrap does reach and no longer
//! warns about, in tests/portability.rs.)
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use kawrap_integration::cli::{SETPRIV_NOBODY, copy_for_other_users};
use kawrap_integration::clients::{self, hold};
use kawrap_integration::servers::have_program;
use kawrap_integration::{is_root, kawrap_bin, skip_unless, temp_dir, without_kawrap_env};

const PROFILE: &str = "300/30/5";
const PROFILE_LINE: &str = "keepalive=1 idle=300 intvl=30 cnt=5 ut=0";

/// What one run of a client showed.
#[derive(Debug, PartialEq)]
struct Seen {
    /// Its own getsockopt line.
    options: Vec<String>,
    /// Whether `ss -o` showed a keepalive timer.
    timer: bool,
}

/// Runs `argv + [127.0.0.1, PORT]` holding a connection; returns what it
/// showed and its stderr.
fn run(argv: &[OsString]) -> (Seen, String) {
    let held = hold(|port| {
        let mut command = Command::new(&argv[0]);
        command.args(&argv[1..]).args(["127.0.0.1", &port.to_string()]);
        without_kawrap_env(&mut command);
        command
    });
    let timer = held.keepalive_timer().is_some();
    let finished = held.finish();
    (Seen { options: finished.lines, timer }, finished.stderr)
}

/// How the program is started: `outer` runs kawrap (setpriv as another
/// user), kawrap runs `inner` (sudo), which runs the program.
#[derive(Default)]
struct Start<'a> {
    outer: &'a [&'a str],
    inner: &'a [&'a str],
}

/// `OUTER… kawrap --profile 300/30/5 INNER… PROGRAM` and `OUTER… INNER…
/// PROGRAM`: kawrap must warn `warning`, and the socket must be the same
/// both times, and not the profile's.
fn assert_unreached(kawrap: &Path, start: Start<'_>, program: &Path, warning: &str) {
    let argv = |with_kawrap: bool| -> Vec<OsString> {
        let mut argv: Vec<OsString> = start.outer.iter().map(OsString::from).collect();
        if with_kawrap {
            argv.extend(
                [kawrap.as_os_str(), OsStr::new("--profile"), OsStr::new(PROFILE)].map(OsString::from),
            );
        }
        argv.extend(start.inner.iter().map(OsString::from));
        argv.push(program.into());
        argv
    };
    let (bare, bare_stderr) = run(&argv(false));
    assert_eq!(bare_stderr, "", "without kawrap");
    let under = argv(true);
    let (seen, stderr) = run(&under);
    assert!(stderr.starts_with("kawrap: warning: ") && stderr.contains(warning), "{under:?}: {stderr}");
    assert_eq!(seen, bare, "{under:?} differs from the program alone");
    assert_ne!(seen.options, [PROFILE_LINE], "{under:?} got the profile: the warning is false");
}

#[test]
fn static_programs_keep_the_kernels_settings() {
    let dir = temp_dir("unreached-static");
    for (name, flags) in [("static", &["-static"][..]), ("static-pie", &["-static-pie", "-fPIE"][..])] {
        let Some(program) = clients::c_client("cc", flags, dir.path(), name) else { return };
        assert_unreached(&kawrap_bin(), Start::default(), &program, "is statically linked");
    }
}

#[test]
fn go_programs_keep_their_own_settings() {
    let dir = temp_dir("unreached-go");
    // With cgo the program has glibc's loader, the shim is loaded into it,
    // and its sockets still come from Go's own system calls.
    for cgo in [false, true] {
        let name = if cgo { "go-cgo" } else { "go-static" };
        let Some(program) = clients::go_client(cgo, dir.path(), name) else { return };
        assert_unreached(&kawrap_bin(), Start::default(), &program, "is a Go program");
    }
}

#[test]
fn setuid_and_setgid_programs_keep_the_kernels_settings() {
    if skip_unless(is_root(), "giving a program to another user needs root") {
        return;
    }
    let dir = temp_dir("unreached-setid");
    let Some(program) = clients::c_client("cc", &[], dir.path(), "setuid") else { return };
    let setgid = dir.path().join("setgid");
    fs::copy(&program, &setgid).unwrap();
    std::os::unix::fs::chown(&program, Some(65534), None).unwrap();
    fs::set_permissions(&program, fs::Permissions::from_mode(0o4755)).unwrap();
    assert_unreached(&kawrap_bin(), Start::default(), &program, "is setuid: the loader ignores LD_PRELOAD");
    std::os::unix::fs::chown(&setgid, None, Some(65534)).unwrap();
    fs::set_permissions(&setgid, fs::Permissions::from_mode(0o2755)).unwrap();
    assert_unreached(&kawrap_bin(), Start::default(), &setgid, "is setgid: the loader ignores LD_PRELOAD");
}

#[test]
fn file_capabilities_keep_the_kernels_settings_for_a_caller_that_is_not_root() {
    if skip_unless(
        is_root() && have_program("setcap") && have_program("setpriv"),
        "needs root, setcap (libcap2-bin) and setpriv (util-linux)",
    ) {
        return;
    }
    // Everything `nobody` runs sits in a directory it can reach.
    let dir = temp_dir("unreached-caps");
    let kawrap = copy_for_other_users(dir.path());
    let Some(program) = clients::c_client("cc", &[], dir.path(), "caps") else { return };
    let setcap = Command::new("setcap").arg("cap_net_raw+ep").arg(&program).status().unwrap();
    if skip_unless(setcap.success(), "this file system does not keep security.capability") {
        return;
    }
    let outer: Vec<&str> = ["setpriv"].into_iter().chain(SETPRIV_NOBODY).collect();
    let nobody = Start { outer: &outer, inner: &[] };
    assert_unreached(&kawrap, nobody, &program, "has file capabilities (security.capability)");
}

#[test]
fn sudo_and_doas_remove_the_preload() {
    if skip_unless(is_root(), "sudo and doas are run as root here (no password to give)") {
        return;
    }
    let dir = temp_dir("unreached-sudo");
    let Some(program) = clients::c_client("cc", &[], dir.path(), "plain") else { return };
    for (wrapper, package, ready) in [
        ("sudo", "sudo", "root may run commands (Debian's /etc/sudoers)"),
        ("doas", "opendoas", "/etc/doas.conf permits root (`permit nopass root`)"),
    ] {
        let works =
            have_program(wrapper) && Command::new(wrapper).arg("true").status().is_ok_and(|s| s.success());
        if skip_unless(works, &format!("needs {wrapper} (Debian: {package}) where {ready}")) {
            continue;
        }
        let warning = format!("{wrapper} starts the program with a cleaned environment");
        assert_unreached(&kawrap_bin(), Start { outer: &[], inner: &[wrapper] }, &program, &warning);
    }
}
