//! `kawrap check` against processes that try to hide a socket from it, or
//! that it must find first: a socket left behind in another network
//! namespace, more owners than the checker may hold descriptors, a process
//! name made of terminal escapes, a service's processes selected by unit,
//! cgroup or parent. Judged by the kernel: the sockets' options are set by
//! `kaprobe` with setsockopt and read back by `kawrap check` with
//! getsockopt on a copy.
use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use kawrap_integration::cgroup::TestCgroup;
use kawrap_integration::cli::{describe, json, kawrap, kawrap_as_nobody, may_copy_sockets, stdout};
use kawrap_integration::netns::{self, NetnsPair, SERVER_ADDR};
use kawrap_integration::probe::{self, keepalive_socket};
use kawrap_integration::process::{expect_line, expect_line_starting_with, spawn_with_lines};
use kawrap_integration::{is_root, kawrap_bin, loopback_listener, skip_unless, without_kawrap_env};
use serde_json::Value;

const CLIENT: &str = env!("CARGO_BIN_EXE_blocking_client");
const PROBE: &str = env!("CARGO_BIN_EXE_kaprobe");

/// kaprobe running `steps`, once it printed a line starting with `ready`.
fn probe(steps: &[&str], ready: &str) -> probe::Running {
    probe::start(probe::command(Path::new(PROBE), steps), ready)
}

fn strings(steps: &[String]) -> Vec<&str> {
    steps.iter().map(String::as_str).collect()
}

fn socket_with_remote<'a>(report: &'a Value, remote: &str) -> &'a Value {
    report["sockets"]
        .as_array()
        .expect("sockets")
        .iter()
        .find(|s| s["remote"] == remote)
        .unwrap_or_else(|| panic!("no socket to {remote} in {report:#}"))
}

/// A process with a socket without keepalive in the client namespace of a
/// pair, which then went back home for one with 2/1/3 to `host`: the first
/// socket lives where neither kawrap nor its owner is any more. `then`:
/// more steps before it settles.
struct Moved {
    probe: probe::Running,
    host: String,
    _listener: TcpListener,
    _server: kawrap_integration::process::KillOnDrop,
    _pair: NetnsPair,
}

impl Moved {
    fn start(then: &[&str]) -> Moved {
        let (listener, host) = loopback_listener();
        let pair = NetnsPair::new().expect("create namespace pair");
        let mut server = pair.server().command(CLIENT);
        server.args(["--listen", &format!("{SERVER_ADDR}:7000")]);
        let (server, lines) = spawn_with_lines(server);
        expect_line(&lines, "listening", "server");
        let mut steps = vec![format!("netns:/run/netns/{}", pair.client().name())];
        steps.extend(["socket:inet:stream".to_owned(), format!("connect:{SERVER_ADDR}:7000")]);
        steps.push(format!("netns:/proc/{}/ns/net", std::process::id()));
        steps.extend(keepalive_socket(2, 1, 3, &host));
        steps.extend(then.iter().map(|step| step.to_string()));
        steps.extend(["print".to_owned(), "sleep:60".to_owned()]);
        let probe = probe(&strings(&steps), "keepalive=1");
        Moved { probe, host, _listener: listener, _server: server, _pair: pair }
    }
}

#[test]
fn a_socket_left_behind_in_another_network_namespace_is_judged() {
    let reason = netns::unavailable_reason();
    if skip_unless(reason.is_none(), reason.as_deref().unwrap_or_default()) {
        return;
    }
    let moved = Moved::start(&[]);
    let (running, host) = (&moved.probe, &moved.host);
    let pid = running.pid.to_string();

    let check = kawrap(&["check", "--pid", &pid, "--expect", "2/1/3"]);
    assert_eq!(check.status.code(), Some(1), "a socket without keepalive passed:\n{}", describe(&check));
    let text = stdout(&check);
    assert!(text.contains("FAIL: 1 of 2 established sockets do not have 2/1/3"), "{text}");
    assert!(text.contains(&format!("-> {SERVER_ADDR}:7000 {pid}/kaprobe: SO_KEEPALIVE is off")), "{text}");

    let report = json(&kawrap(&["check", "--pid", &pid, "--json"]));
    let hidden = socket_with_remote(&report, &format!("{SERVER_ADDR}:7000"));
    assert_eq!(hidden["state"], "ESTAB", "{hidden:#}");
    assert_eq!(hidden["options"]["keepalive"], false, "{hidden:#}");
    assert_eq!(socket_with_remote(&report, host)["options"]["idle_secs"], 2, "{report:#}");
}

#[test]
fn without_root_a_socket_in_another_namespace_is_judged_from_its_copy() {
    let reason = netns::unavailable_reason();
    if skip_unless(reason.is_none(), reason.as_deref().unwrap_or_default()) {
        return;
    }
    // As above, then the process becomes nobody: a checker run by nobody
    // may copy its sockets, but not ask one for its namespace (that needs
    // CAP_NET_ADMIN there), nor list that namespace.
    let moved = Moved::start(&["drop:65534"]);
    let running = &moved.probe;

    let dir = kawrap_integration::temp_dir("nobody");
    let pid = running.pid.to_string();
    let output = kawrap_as_nobody(dir.path(), &["check", "--pid", &pid, "--expect", "2/1/3", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report = json(&output);
    let hidden = socket_with_remote(&report, &format!("{SERVER_ADDR}:7000"));
    assert_eq!(hidden["listed_by"], Value::Null, "{hidden:#}");
    assert_eq!(hidden["options"]["keepalive"], false, "{hidden:#}");
    assert_eq!(hidden["problems"][0], "SO_KEEPALIVE is off", "{hidden:#}");
    assert_eq!(report["expect"]["failed"], 1, "{report:#}");
    assert_eq!(report["expect"]["checked"], 2, "{report:#}");
}

#[test]
fn every_owner_is_read_even_past_the_checkers_descriptor_limit() {
    if skip_unless(may_copy_sockets(), "needs root or kernel.yama.ptrace_scope=0") {
        return;
    }
    let have_prlimit = Command::new("prlimit").arg("--version").output().is_ok_and(|o| o.status.success());
    if skip_unless(have_prlimit, "needs prlimit (util-linux)") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("address");
    // 100 owners, each with one socket whose keepalive timer (200 s) is
    // shorter than the expected idle (300 s) but whose options are wrong:
    // only getsockopt on a copy can tell.
    let steps = keepalive_socket(200, 30, 5, &addr.to_string());
    let owners: Vec<probe::Running> = (0..100)
        .map(|_| {
            let mut steps = strings(&steps);
            steps.extend(["print", "sleep:120"]);
            probe(&steps, "keepalive=1")
        })
        .collect();
    let pids: HashSet<u64> = owners.iter().map(|running| u64::from(running.pid)).collect();

    // Far fewer descriptors than owners.
    let output = Command::new("prlimit")
        .args(["--nofile=40:40", "--"])
        .arg(kawrap_bin())
        .args(["check", "--port", &addr.port().to_string(), "--expect", "300/30/5", "--json"])
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run prlimit kawrap");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let report = json(&output);
    let ours: Vec<&Value> = report["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["owners"][0]["pid"].as_u64().is_some_and(|pid| pids.contains(&pid)))
        .collect();
    assert_eq!(ours.len(), 100, "{report:#}");
    for socket in &ours {
        assert_eq!(socket["options"]["idle_secs"], 200, "not read: {socket:#}");
        assert_eq!(socket["problems"][0], "idle 200 s, expected 300 s", "{socket:#}");
    }
}

#[test]
fn a_checker_out_of_descriptors_says_so_and_judges_nothing() {
    if skip_unless(may_copy_sockets(), "needs root or kernel.yama.ptrace_scope=0") {
        return;
    }
    let (_listener, addr) = loopback_listener();
    let mut steps = keepalive_socket(200, 30, 5, &addr);
    steps.extend(["print".to_owned(), "sleep:60".to_owned()]);
    let running = probe(&strings(&steps), "keepalive=1");
    let pid = running.pid.to_string();
    // The fewest descriptors with which kawrap gets as far as copying the
    // socket, and no further: how many it needs before depends on the
    // libraries, so a few limits are tried.
    let out_of_descriptors = (3..12).find_map(|limit| {
        let output = Command::new("prlimit")
            .arg(format!("--nofile={limit}:{limit}"))
            .arg("--")
            .arg(kawrap_bin())
            .args(["check", "--pid", &pid, "--expect", "300/30/5"])
            .env_remove("LD_PRELOAD")
            .output()
            .expect("run prlimit kawrap");
        stdout(&output).contains("no file descriptor left").then_some(output)
    });
    let output = out_of_descriptors.expect("some limit leaves kawrap without a descriptor for the copy");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = stdout(&output);
    assert!(
        text.contains("NOT JUDGED: options not readable: pidfd_getfd: kawrap has no file descriptor left"),
        "{text}"
    );
    assert!(text.contains("FAIL: 1 socket of the selection could not be judged"), "{text}");
    assert!(!text.contains("ptrace") && !text.contains("run as root"), "permissions blamed:\n{text}");
}

#[test]
fn control_characters_in_a_process_name_are_escaped() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("address").to_string();
    // Hides what follows on a terminal, then forges the start of a row.
    let name = "\x1b[8mhide\nESTAB";
    let connect = format!("connect:{addr}");
    let running =
        probe(&[&format!("name:{name}"), "socket:inet:stream", &connect, "print", "sleep:60"], "keepalive=");
    let pid = running.pid;
    let check = kawrap(&["check", "--pid", &pid.to_string(), "--expect", "2/1/3"]);
    assert_eq!(check.status.code(), Some(1), "{}", describe(&check));
    let text = stdout(&check);
    assert!(!text.contains('\x1b'), "an escape reached the terminal:\n{text:?}");
    assert!(text.contains(&format!("{pid}/?[8mhide?ESTAB")), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("ESTAB")).count(), 1, "a forged row:\n{text}");
    // JSON keeps the exact bytes, escaped by the JSON encoder.
    let report = json(&kawrap(&["check", "--pid", &pid.to_string(), "--json"]));
    assert_eq!(report["sockets"][0]["owners"][0]["comm"], name, "{report:#}");
}

#[test]
fn a_pipeline_shell_names_its_child_and_children_selects_it() {
    if skip_unless(may_copy_sockets(), "needs root or kernel.yama.ptrace_scope=0") {
        return;
    }
    let (_listener, addr) = loopback_listener();
    let mut steps = keepalive_socket(2, 1, 3, &addr);
    steps.extend(["print".to_owned(), "sleep:60".to_owned()]);
    let (shell, lines) = spawn_with_lines(probe::under_shell(Path::new(PROBE), &strings(&steps), "| cat"));
    let child = expect_line_starting_with(&lines, "pid=", "kaprobe")["pid=".len()..].to_owned();
    expect_line_starting_with(&lines, "keepalive=1", "kaprobe");
    let sh = shell.id().to_string();

    let alone = kawrap(&["check", "--pid", &sh, "--expect", "2/1/3"]);
    assert_eq!(alone.status.code(), Some(1), "{}", describe(&alone));
    let text = stdout(&alone);
    assert!(text.contains(&format!("process {sh} (sh) holds no TCP socket")), "{text}");
    assert!(text.contains(&format!("{child} (kaprobe): 1")) && text.contains("--children"), "{text}");

    let family = kawrap(&["check", "--pid", &sh, "--children", "--expect", "2/1/3"]);
    assert_eq!(family.status.code(), Some(0), "{}", describe(&family));
    assert!(stdout(&family).contains(&format!("{child}/kaprobe")), "{}", describe(&family));

    // --pid again adds a process: a bare socket in another one fails the check.
    let bare = probe(&["socket:inet:stream", &format!("connect:{addr}"), "print", "sleep:60"], "keepalive=0");
    let both = kawrap(&["check", "--pid", &child, "--pid", &bare.pid.to_string(), "--expect", "2/1/3"]);
    assert_eq!(both.status.code(), Some(1), "{}", describe(&both));
    let text = stdout(&both);
    assert!(text.contains("FAIL: 1 of 2 established sockets"), "{text}");
    assert!(text.contains(&format!("{}/kaprobe: SO_KEEPALIVE is off", bare.pid)), "{text}");
}

#[test]
fn a_unit_or_a_cgroup_selects_every_process_in_it() {
    if skip_unless(is_root(), "needs root to create a cgroup") {
        return;
    }
    let unit = format!("kawrap-probe-{}", std::process::id());
    let Some(cgroup) = TestCgroup::new(&format!("{unit}.service")) else {
        skip_unless(false, "no cgroup v2 mount to create a test cgroup in");
        return;
    };
    let (_listener, addr) = loopback_listener();
    // As `ExecStart=sh -c '…'` runs it: a shell, and the program under it.
    let mut steps = keepalive_socket(2, 1, 3, &addr);
    steps.extend(["print".to_owned(), "sleep:60".to_owned()]);
    let mut shell = probe::under_shell(Path::new(PROBE), &strings(&steps), "; true");
    cgroup.enter_on_spawn(&mut shell);
    let (_shell, lines) = spawn_with_lines(shell);
    let child = expect_line_starting_with(&lines, "pid=", "kaprobe")["pid=".len()..].to_owned();
    expect_line_starting_with(&lines, "keepalive=1", "kaprobe");

    let service = format!("{unit}.service");
    for selection in [["--unit", &unit], ["--unit", &service], ["--cgroup", cgroup.path().to_str().unwrap()]]
    {
        let mut args = vec!["check", "--expect", "2/1/3"];
        args.extend(selection);
        let check = kawrap(&args);
        assert_eq!(check.status.code(), Some(0), "{args:?}: {}", describe(&check));
        let text = stdout(&check);
        assert!(text.contains(&format!("{child}/kaprobe")) && text.contains("ok: all 1"), "{args:?}: {text}");
    }
    let nothing = kawrap(&["check", "--unit", &format!("{unit}-gone"), "--expect", "2/1/3"]);
    assert_eq!(nothing.status.code(), Some(1), "{}", describe(&nothing));
    assert!(
        stdout(&nothing).contains(&format!("no process is in a cgroup named {unit}-gone.service")),
        "{}",
        describe(&nothing)
    );
    let not_cgroup = kawrap(&["check", "--cgroup", "/tmp"]);
    assert_eq!(not_cgroup.status.code(), Some(125), "{}", describe(&not_cgroup));
    assert!(
        String::from_utf8_lossy(&not_cgroup.stderr).contains("--cgroup \"/tmp\": not a cgroup directory"),
        "{}",
        describe(&not_cgroup)
    );
}

#[test]
fn check_shows_whether_kawrap_is_loaded_in_each_owner() {
    if skip_unless(may_copy_sockets(), "needs root or kernel.yama.ptrace_scope=0") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("address").to_string();
    let port = listener.local_addr().expect("address").port().to_string();
    // Both set their own keepalive: under respect they look the same to
    // the kernel; only the mapped library tells them apart.
    let steps = keepalive_socket(15, 5, 3, &addr);
    let mut steps = strings(&steps);
    steps.extend(["print", "sleep:60"]);
    let bare = probe(&steps, "keepalive=1");
    let mut under = Command::new(kawrap_bin());
    without_kawrap_env(&mut under).args(["--profile", "2/1/3", "--", PROBE, "pid"]).args(&steps);
    let under = probe::start(under, "keepalive=1");
    let (bare, under) = (bare.pid, under.pid);

    let report = json(&kawrap(&["check", "--port", &port, "--json"]));
    let owner = |pid: u32| {
        report["sockets"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|s| s["owners"].as_array()?.iter().find(|o| o["pid"] == pid).cloned())
            .unwrap_or_else(|| panic!("no socket of {pid}: {report:#}"))
    };
    assert_eq!(owner(bare)["kawrap"]["preload"], false, "{report:#}");
    assert_eq!(owner(under)["kawrap"]["preload"], true, "{report:#}");

    let text = stdout(&kawrap(&["check", "--port", &port]));
    let header = text.lines().next().unwrap_or_default();
    assert!(header.split_whitespace().any(|c| c == "KAWRAP"), "{text}");
    let row = |pid: u32| {
        text.lines().find(|l| l.contains(&format!(" {pid}/kaprobe "))).unwrap_or_else(|| panic!("{text}"))
    };
    assert!(row(under).contains(" preload "), "{text}");
    assert!(row(bare).contains(" no "), "{text}");
}

#[test]
fn check_shows_whether_kawraps_ebpf_mode_covers_an_owner() {
    let mode = kawrap(&["bpf", "status"]);
    if skip_unless(mode.status.success(), "needs the eBPF mode (root, a kawrap built with clang)") {
        return;
    }
    let (_listener, addr) = loopback_listener();
    let port = addr.rsplit(':').next().expect("a port").to_owned();
    let mut steps =
        vec!["socket:inet:stream".to_owned(), format!("connect:{addr}"), "print".into(), "sleep:30".into()];
    steps.insert(0, "pid".to_owned());
    let mut covered = Command::new(kawrap_bin());
    without_kawrap_env(&mut covered).args(["--bpf", "--profile", "2/1/3", "--", PROBE]).args(&steps);
    let mut running = probe::start(covered, "keepalive=1");

    let report = json(&kawrap(&["check", "--port", &port, "--json"]));
    let owner = report["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|s| s["owners"].as_array()?.iter().find(|o| o["pid"] == running.pid).cloned())
        .unwrap_or_else(|| panic!("no socket of {}: {report:#}", running.pid));
    assert_eq!(owner["kawrap"], serde_json::json!({ "preload": false, "bpf": true }), "{report:#}");
    let text = stdout(&kawrap(&["check", "--port", &port]));
    let process = format!("{}/kaprobe", running.pid);
    let row: Vec<&str> =
        text.lines().find(|l| l.contains(&process)).expect("its row").split_whitespace().collect();
    assert_eq!(row[4], "bpf", "{text}");

    // kawrap --bpf removes its cgroup when the command ends: let it.
    // SAFETY: kill has no memory-safety preconditions; the child is ours and not reaped.
    unsafe { libc::kill(running.child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(
        running.child.wait_timeout(std::time::Duration::from_secs(10)).is_some(),
        "kawrap --bpf did not end"
    );
}
