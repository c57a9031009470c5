//! The four operations as the CLI uses them: `run` (exit status, signals,
//! clean-up), `attach` (pinned, live update), `detach`, `status`.
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use kawrap_bpf::{AttachOutcome, Error};
use kawrap_core::Config;
use kawrap_integration::poll;
use support::{Client, Options, Place, Server, options_of};

/// `run` forwards signals through one process-wide slot: one at a time.
static RUN: Mutex<()> = Mutex::new(());

fn config(profile: &str) -> Config {
    Config::from_values(Some(profile), None, None).expect("valid test config")
}

/// Transient scopes `run` made for this test process (children of its own
/// cgroup) still present in the cgroup tree.
fn own_scopes() -> Vec<PathBuf> {
    let prefix = format!("kawrap-{}-", std::process::id());
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let relative = cgroup.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/").trim_start_matches('/');
    let own = cgroup2_root().join(relative);
    kawrap_bpf::status()
        .expect("status")
        .into_iter()
        .filter_map(|a| a.cgroup)
        .filter(|path| path.parent() == Some(own.as_path()))
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
    let ready =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kawrap-bpf-ready-{}", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let script = format!("trap 'exit 42' TERM; touch '{}'; while :; do sleep 0.05; done", ready.display());
    let runner = std::thread::spawn(move || {
        kawrap_bpf::run(&config("2/1/3"), Command::new("sh").args(["-c", &script]))
    });
    // Once the command is running in its scope with its trap set, SIGTERM
    // this process, as a service manager stopping kawrap would.
    let started = poll(Duration::from_secs(5), || {
        let in_scope = own_scopes()
            .into_iter()
            .any(|dir| std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty()));
        (in_scope && ready.exists()).then_some(())
    });
    assert!(started.is_some(), "the command never started in a scope");
    let _ = std::fs::remove_file(&ready);
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

/// A cgroup directly under the cgroup v2 root, standing for an existing
/// one such as a systemd service's; on drop kawrap is detached from it and
/// it is removed.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn create(label: &str) -> TestCgroup {
        // The first status() mounts cgroup v2 if the system has not.
        kawrap_bpf::status().expect("status");
        let path = cgroup2_root().join(format!("kawrap-test-{label}{}", std::process::id()));
        std::fs::create_dir(&path).expect("create cgroup");
        TestCgroup(path)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = kawrap_bpf::detach(&self.0);
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn attach_update_status_detach_on_an_existing_cgroup() {
    if support::skip() {
        return;
    }
    let test_cgroup = TestCgroup::create("");
    let cgroup = test_cgroup.0.as_path();

    let outcome = kawrap_bpf::attach(cgroup, &config("7/3/4")).expect("attach");
    let AttachOutcome::Attached { cgroup_id } = outcome else { panic!("expected Attached, got {outcome:?}") };
    let entry = |cgroup: &Path| {
        kawrap_bpf::status().expect("status").into_iter().find(|a| a.cgroup.as_deref() == Some(cgroup))
    };
    let shown = entry(cgroup).expect("status lists the attachment");
    assert!(shown.pinned, "{shown}");
    assert_eq!(shown.cgroup_id, cgroup_id);
    assert_eq!(shown.config.as_ref().map(|c| c.profile.to_string()), Ok("7/3/4".to_string()), "{shown}");

    let run_pair = |expected: Options, why: &str| {
        let mut server = Server::start(Place::Cgroup(cgroup), "127.0.0.1");
        let client = Client::connect(Place::Cgroup(cgroup), "127.0.0.1", server.port, &[]);
        let accepted = server.accepted_fd();
        assert_eq!(options_of(client.pid(), client.fd), expected, "client: {why}");
        assert_eq!(options_of(server.pid(), accepted), expected, "server: {why}");
    };
    run_pair(Options::on(7, 3, 4, 0), "attached");

    // Attaching again changes the values live, without re-attaching.
    let outcome = kawrap_bpf::attach(cgroup, &config("9/2/5/3s")).expect("update");
    assert_eq!(outcome, AttachOutcome::Updated { cgroup_id });
    run_pair(Options::on(9, 2, 5, 3000), "updated");
    let shown = entry(cgroup).expect("status lists the attachment");
    assert_eq!(shown.config.as_ref().map(|c| c.profile.to_string()), Ok("9/2/5/3000".to_string()));
    assert_eq!((shown.counters.connect, shown.counters.passive), (2, 2), "{shown}");

    kawrap_bpf::detach(cgroup).expect("detach");
    assert!(entry(cgroup).is_none(), "status after detach");
    run_pair(support::kernel_defaults(), "detached");
    match kawrap_bpf::detach(cgroup) {
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

#[test]
fn the_innermost_kawrap_wins_in_nested_cgroups() {
    if support::skip() {
        return;
    }
    // A service's cgroup with kawrap attached, and `kawrap --bpf` run by
    // something inside that service: the command gets its own profile,
    // the rest of the service the attached one.
    let test_cgroup = TestCgroup::create("nested-");
    let outer = test_cgroup.0.as_path();
    kawrap_bpf::attach(outer, &config("9/9/9")).expect("attach");
    let scope = kawrap_bpf::Scope::create_under(outer, &config("7/3/4")).expect("nested scope");
    assert!(scope.path().starts_with(outer));

    let mut server = Server::start(Place::Scope(&scope), "127.0.0.1");
    let inner = Client::connect(Place::Scope(&scope), "127.0.0.1", server.port, &[]);
    let inner_accepted = server.accepted_fd();
    let outside = Client::connect(Place::Cgroup(outer), "127.0.0.1", server.port, &[]);
    server.accepted_fd();
    assert_eq!(options_of(inner.pid(), inner.fd), Options::on(7, 3, 4, 0), "in the nested scope");
    assert_eq!(options_of(server.pid(), inner_accepted), Options::on(7, 3, 4, 0), "accepted in the scope");
    assert_eq!(options_of(outside.pid(), outside.fd), Options::on(9, 9, 9, 0), "in the outer cgroup only");
    drop((inner, outside, server));
    scope.close().expect("close");
}
