//! `kawrap attach` on running processes, judged by the kernel: what it
//! reports having changed is what getsockopt reads back (`kawrap check
//! --json` on a copy of the socket, or the program's own getsockopt in
//! `kaprobe print`); a failure halfway leaves a record of what was already
//! changed; the policy keeps what the program set itself, as the launcher's.
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

use kawrap_integration::cli::{describe, json, kawrap, may_copy_sockets, stdout};
use kawrap_integration::probe;
use kawrap_integration::process::{expect_line_starting_with, spawn_with_lines};
use kawrap_integration::{kawrap_bin, loopback_listener, skip_unless};

const PROBE: &str = env!("CARGO_BIN_EXE_kaprobe");

/// kaprobe running `steps`, once it printed a line starting with `ready`.
fn probe(steps: &[&str], ready: &str) -> probe::Running {
    probe::start(probe::command(Path::new(PROBE), steps), ready)
}

/// The options `kawrap check` reads back (getsockopt on a copy) for the
/// socket of `pid` whose local port is `port`, as `on I/V/C`.
fn options_of(pid: u32, local_port: u16) -> String {
    let report = json(&kawrap(&["check", "--pid", &pid.to_string(), "--json"]));
    let socket = report["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["local"] == format!("127.0.0.1:{local_port}"))
        .unwrap_or_else(|| panic!("no socket from :{local_port}: {report:#}"));
    let o = &socket["options"];
    format!(
        "{} {}/{}/{}",
        if o["keepalive"] == true { "on" } else { "off" },
        o["idle_secs"],
        o["interval_secs"],
        o["count"]
    )
}

/// The local ports kaprobe's connected sockets got, in order: the peers
/// the listener accepted.
fn accepted_ports(listener: &TcpListener, count: usize) -> Vec<(u16, TcpStream)> {
    (0..count)
        .map(|_| {
            let (stream, peer) = listener.accept().expect("accept");
            (peer.port(), stream)
        })
        .collect()
}

#[test]
fn a_failure_halfway_still_reports_each_change_made() {
    if skip_unless(may_copy_sockets(), "needs root or kernel.yama.ptrace_scope=0") {
        return;
    }
    // Far more output than a pipe holds: while the test does not read,
    // attach blocks mid-run, and the process it works on is killed then.
    let mut target = probe(&["sockets:3000", "sleep:60"], "sockets=3000");
    let pid = target.pid;
    let mut attach = Command::new(kawrap_bin())
        .args(["attach", "--profile", "2/1/3", &pid.to_string()])
        .env_remove("LD_PRELOAD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kawrap attach");
    let mut out = BufReader::new(attach.stdout.take().expect("stdout"));
    let mut seen = Vec::new();
    while seen.iter().filter(|l: &&String| l.contains("-> on 2/1/3")).count() < 5 {
        let mut line = String::new();
        if out.read_line(&mut line).expect("read attach's output") == 0 {
            break;
        }
        seen.push(line);
    }
    target.child.kill().expect("kill the target");
    target.child.wait().expect("reap the target");
    for line in out.lines() {
        seen.push(line.expect("read") + "\n");
    }
    let output = attach.wait_with_output().expect("wait for attach");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = seen.concat();
    assert_eq!(
        output.status.code(),
        Some(125),
        "stdout:\n{}\nstderr:\n{stderr}",
        &text[..text.len().min(3000)]
    );
    let changed = seen.iter().filter(|l| l.contains("-> on 2/1/3")).count();
    assert!(changed >= 5, "{text}");
    let summary = format!("process {pid} (kaprobe): stopped after {changed} changed");
    assert!(text.contains(&summary), "no {summary:?} in:\n{}", &text[text.len().saturating_sub(2000)..]);
    assert!(stderr.contains(&format!("no such process: {pid}")), "{stderr}");
}

#[test]
fn a_changed_listener_passes_the_profile_to_connections_accepted_afterwards() {
    if skip_unless(may_copy_sockets(), "needs root or kernel.yama.ptrace_scope=0") {
        return;
    }
    let (_target, lines) = spawn_with_lines(probe::command(
        Path::new(PROBE),
        &["socket:inet:stream", "listen", "port", "accept", "print", "sleep:60"],
    ));
    let pid = expect_line_starting_with(&lines, "pid=", "kaprobe")["pid=".len()..].to_owned();
    let port = expect_line_starting_with(&lines, "port=", "kaprobe");
    let port: u16 = port["port=".len()..].split(' ').next().and_then(|p| p.parse().ok()).expect("a port");
    let attach = kawrap(&["attach", "--profile", "2/1/3", &pid]);
    assert!(attach.status.success(), "{}", describe(&attach));
    let text = stdout(&attach);
    assert!(text.contains("LISTEN") && text.contains("-> on 2/1/3"), "{text}");
    assert!(
        text.contains(
            "Connections it accepts from now on on the 1 listening socket changed above get its new values too"
        ),
        "{text}"
    );
    assert!(!text.contains("Sockets it opens from now on keep the kernel's defaults;"), "{text}");

    // The kernel copies the listener's options to what it accepts.
    let _client = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let accepted = expect_line_starting_with(&lines, "keepalive=", "kaprobe");
    assert_eq!(accepted, "keepalive=1 idle=2 intvl=1 cnt=3 ut=0");
}

#[test]
fn respect_keeps_what_the_program_set_itself_and_force_replaces_it() {
    if skip_unless(may_copy_sockets(), "needs root or kernel.yama.ptrace_scope=0") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("address").to_string();
    let connect = format!("connect:{addr}");
    // Its own 15/5/3 (as redis-cli sets 15 s); a bare SO_KEEPALIVE=1; its own idle only.
    let steps = [
        "socket:inet:stream",
        "set:keepalive=1",
        "set:idle=15",
        "set:intvl=5",
        "set:cnt=3",
        &connect,
        "socket:inet:stream",
        "set:keepalive=1",
        &connect,
        "socket:inet:stream",
        "set:keepalive=1",
        "set:idle=100",
        &connect,
        "print",
        "sleep:60",
    ];
    let target = probe(&steps, "keepalive=1");
    let pid = target.pid;
    let ports: Vec<u16> = accepted_ports(&listener, 3)
        .into_iter()
        .map(|(port, stream)| {
            std::mem::forget(stream);
            port
        })
        .collect();
    let (own, bare, idle_only) = (ports[0], ports[1], ports[2]);

    let attach = kawrap(&["attach", "--profile", "60/10/6", &pid.to_string()]);
    assert!(attach.status.success(), "{}", describe(&attach));
    let text = stdout(&attach);
    let line = |port: u16| {
        text.lines()
            .find(|l| l.contains(&format!(":{port} -> ")))
            .unwrap_or_else(|| panic!("{text}"))
            .to_owned()
    };
    assert!(
        line(own).ends_with(
            "on 15/5/3: kept, the program set idle, interval and count itself (--policy force replaces them)"
        ),
        "{text}"
    );
    assert!(line(bare).ends_with("on 7200/75/9 -> on 60/10/6"), "{text}");
    assert!(line(idle_only).ends_with("on 100/75/9 -> on 100/10/6 (kept its own idle)"), "{text}");
    assert_eq!(options_of(pid, own), "on 15/5/3");
    assert_eq!(options_of(pid, bare), "on 60/10/6");
    assert_eq!(options_of(pid, idle_only), "on 100/10/6");

    let forced = kawrap(&["attach", "--profile", "60/10/6", "--policy", "force", &pid.to_string()]);
    assert!(forced.status.success(), "{}", describe(&forced));
    for port in [own, bare, idle_only] {
        assert_eq!(options_of(pid, port), "on 60/10/6");
    }
    let bad = kawrap(&["attach", "--policy", "sometimes", &pid.to_string()]);
    assert_eq!(bad.status.code(), Some(125), "{}", describe(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("policy \"sometimes\": expected `respect` (default) or `force`"),
        "{}",
        describe(&bad)
    );
}

#[test]
fn a_pipeline_shell_names_its_child_and_several_pids_are_attached() {
    if skip_unless(may_copy_sockets(), "needs root or kernel.yama.ptrace_scope=0") {
        return;
    }
    let (listener, addr) = loopback_listener();
    let connect = format!("connect:{addr}");
    let steps = ["socket:inet:stream", &connect, "print", "sleep:60"];
    let (shell, lines) = spawn_with_lines(probe::under_shell(Path::new(PROBE), &steps, "| cat"));
    let child: u32 = expect_line_starting_with(&lines, "pid=", "kaprobe")["pid=".len()..].parse().unwrap();
    expect_line_starting_with(&lines, "keepalive=0", "kaprobe");
    let sh = shell.id().to_string();

    let alone = kawrap(&["attach", "--profile", "2/1/3", &sh]);
    assert!(alone.status.success(), "{}", describe(&alone));
    let text = stdout(&alone);
    assert!(
        text.contains(&format!(
            "process {sh} (sh) has no TCP socket; process {child} (kaprobe) under it has 1: attach {child}, or add --children"
        )),
        "{text}"
    );
    let family = kawrap(&["attach", "--profile", "2/1/3", "--children", &sh]);
    assert!(family.status.success(), "{}", describe(&family));
    assert!(stdout(&family).contains(&format!("process {child} (kaprobe)")), "{}", describe(&family));
    let (_stream, _) = listener.accept().expect("accept");

    // Two processes at once.
    let (a, b) = (probe(&steps, "keepalive=0"), probe(&steps, "keepalive=0"));
    let (a, b) = (a.pid, b.pid);
    let both = kawrap(&["attach", "--profile", "ssh", &a.to_string(), &b.to_string()]);
    assert!(both.status.success(), "{}", describe(&both));
    let text = stdout(&both);
    for pid in [a, b] {
        assert!(text.contains(&format!("process {pid} (kaprobe): 1 TCP socket: 1 changed")), "{text}");
    }
}

#[test]
fn attach_escapes_control_characters_in_process_names() {
    if skip_unless(may_copy_sockets(), "needs root or kernel.yama.ptrace_scope=0") {
        return;
    }
    let target = probe(&["name:\x1b[8mhide\nfd 9", "socket:inet:stream", "print", "sleep:60"], "keepalive=0");
    let pid = target.pid;
    let attach = kawrap(&["attach", "--dry-run", &pid.to_string()]);
    assert!(attach.status.success(), "{}", describe(&attach));
    let text = stdout(&attach);
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(text.starts_with(&format!("process {pid} (?[8mhide?fd 9): ")), "{text}");
    let report = json(&kawrap(&["attach", "--dry-run", "--json", &pid.to_string()]));
    assert_eq!(report["processes"][0]["comm"], "\x1b[8mhide\nfd 9", "{report:#}");
}
