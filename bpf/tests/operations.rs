//! The four operations as the CLI uses them: `run` (exit status, signals,
//! clean-up), `attach` (pinned, live update), `detach`, `status`.
mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use kawrap_bpf::{AttachOutcome, Error};
use kawrap_core::Config;
use kawrap_integration::poll;
use support::{Client, Options, Server, options_of};

/// `run` forwards signals through one process-wide slot: one at a time.
static RUN: Mutex<()> = Mutex::new(());

fn config(profile: &str) -> Config {
    Config::from_values(Some(profile), None, None).expect("valid test config")
}

/// Transient scopes of this test process still present in the cgroup tree.
fn own_scopes() -> Vec<PathBuf> {
    let prefix = format!("kawrap-{}-", std::process::id());
    kawrap_bpf::status()
        .expect("status")
        .into_iter()
        .filter_map(|a| a.cgroup)
        .filter(|path| path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix)))
        .collect()
}

#[test]
fn run_returns_the_exit_status_and_leaves_nothing_behind() {
    if support::skip() {
        return;
    }
    let _one = RUN.lock().unwrap_or_else(|e| e.into_inner());
    let outcome = kawrap_bpf::run(&config("2/1/3"), Command::new("sh").args(["-c", "exit 7"])).expect("run");
    assert_eq!(outcome.status.code(), Some(7));
    assert!(!outcome.cgroup.exists(), "{} left behind", outcome.cgroup.display());

    let error = kawrap_bpf::run(&config("2/1/3"), &mut Command::new("/nonexistent/kawrap-test")).unwrap_err();
    match &error {
        Error::Spawn { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{error}"),
        other => panic!("expected a spawn error, got {other}"),
    }
    assert_eq!(own_scopes(), Vec::<PathBuf>::new(), "a failed spawn removes its scope");
}

#[test]
fn run_moves_daemonised_descendants_out_and_still_removes_the_scope() {
    if support::skip() {
        return;
    }
    let _one = RUN.lock().unwrap_or_else(|e| e.into_inner());
    let outcome =
        kawrap_bpf::run(&config("2/1/3"), Command::new("sh").args(["-c", "sleep 30 & exit 0"])).expect("run");
    assert!(outcome.status.success());
    let moved = outcome.cleanup.moved_out.clone();
    for pid in &moved {
        // SAFETY: kill has no memory preconditions; the pid is the sleep.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    assert_eq!(moved.len(), 1, "the background sleep: {:?}", outcome.cleanup);
    assert!(!outcome.cgroup.exists(), "{} left behind", outcome.cgroup.display());
}

#[test]
fn run_forwards_sigterm_to_the_command() {
    if support::skip() {
        return;
    }
    let _one = RUN.lock().unwrap_or_else(|e| e.into_inner());
    let runner = std::thread::spawn(|| {
        let script = "trap 'exit 42' TERM; while :; do sleep 0.05; done";
        kawrap_bpf::run(&config("2/1/3"), Command::new("sh").args(["-c", script]))
    });
    // Once the command is in its scope, SIGTERM this process, as a service
    // manager stopping kawrap would.
    let started = poll(Duration::from_secs(5), || {
        own_scopes()
            .into_iter()
            .find(|dir| std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty()))
    });
    assert!(started.is_some(), "the command never appeared in a scope");
    // SAFETY: kill has no memory preconditions; run() has a handler installed.
    unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    let outcome = runner.join().expect("runner thread").expect("run");
    assert_eq!(outcome.status.code(), Some(42), "the command's TERM trap ran");
    assert!(!outcome.cgroup.exists());
}

fn cgroup2_root() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    mountinfo
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            (right.starts_with("cgroup2 ") && fields.get(3) == Some(&"/")).then(|| PathBuf::from(fields[4]))
        })
        .unwrap_or_else(|| PathBuf::from("/run/kawrap/cgroup2"))
}

/// Starts `command` inside the cgroup `dir` (as any service manager would).
fn in_cgroup(dir: &Path, command: &mut Command) {
    let procs =
        std::ffi::CString::new(dir.join("cgroup.procs").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            let ok = fd >= 0 && libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            libc::close(fd);
            if ok { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
    }
}

#[test]
fn attach_update_status_detach_on_an_existing_cgroup() {
    if support::skip() {
        return;
    }
    // An existing cgroup, such as a systemd service's. Created after the
    // first status() call, which mounts cgroup v2 if the system has not.
    kawrap_bpf::status().expect("status");
    let cgroup = cgroup2_root().join(format!("kawrap-test-{}", std::process::id()));
    std::fs::create_dir(&cgroup).expect("create cgroup");
    struct Remove(PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = kawrap_bpf::detach(&self.0);
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _remove = Remove(cgroup.clone());

    let outcome = kawrap_bpf::attach(&cgroup, &config("7/3/4")).expect("attach");
    let AttachOutcome::Attached { cgroup_id } = outcome else { panic!("expected Attached, got {outcome:?}") };
    let entry = |cgroup: &Path| {
        kawrap_bpf::status().expect("status").into_iter().find(|a| a.cgroup.as_deref() == Some(cgroup))
    };
    let shown = entry(&cgroup).expect("status lists the attachment");
    assert!(shown.pinned, "{shown}");
    assert_eq!(shown.cgroup_id, cgroup_id);
    assert_eq!(shown.config.as_ref().map(|c| c.profile.to_string()), Ok("7/3/4".to_string()), "{shown}");

    let helpers = support::helpers().as_ref().expect("helpers");
    let run_pair = |expected: Options, why: &str| {
        let mut server_cmd = Command::new(&helpers.server);
        in_cgroup(&cgroup, &mut server_cmd);
        let mut server = Server::start_command(server_cmd, "127.0.0.1");
        let mut client_cmd = Command::new(&helpers.client);
        in_cgroup(&cgroup, &mut client_cmd);
        let client = Client::connect_command(client_cmd, "127.0.0.1", server.port, &[]);
        let accepted = server.accepted_fd();
        assert_eq!(options_of(client.pid(), client.fd), expected, "client: {why}");
        assert_eq!(options_of(server.pid(), accepted), expected, "server: {why}");
    };
    run_pair(Options::on(7, 3, 4, 0), "attached");

    // Attaching again changes the values live, without re-attaching.
    let outcome = kawrap_bpf::attach(&cgroup, &config("9/2/5/3s")).expect("update");
    assert_eq!(outcome, AttachOutcome::Updated { cgroup_id });
    run_pair(Options::on(9, 2, 5, 3000), "updated");
    let shown = entry(&cgroup).expect("status lists the attachment");
    assert_eq!(shown.config.as_ref().map(|c| c.profile.to_string()), Ok("9/2/5/3000".to_string()));
    assert_eq!((shown.counters.connect, shown.counters.passive), (2, 2), "{shown}");

    kawrap_bpf::detach(&cgroup).expect("detach");
    assert!(entry(&cgroup).is_none(), "status after detach");
    run_pair(support::kernel_defaults(), "detached");
    match kawrap_bpf::detach(&cgroup) {
        Err(Error::NotAttached { .. }) => {}
        other => panic!("detach twice: {other:?}"),
    }
}

#[test]
fn attach_refuses_what_is_not_a_cgroup_v2_directory() {
    if support::skip() {
        return;
    }
    let error = kawrap_bpf::attach(Path::new("/tmp"), &config("2/1/3")).unwrap_err();
    assert!(matches!(error, Error::NotCgroup2 { .. }), "{error}");
    assert!(error.to_string().contains("not a cgroup v2 directory"), "{error}");
    let error = kawrap_bpf::attach(Path::new("/nonexistent/cgroup"), &config("2/1/3")).unwrap_err();
    assert!(error.to_string().contains("/nonexistent/cgroup"), "{error}");
}
