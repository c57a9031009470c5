//! The operator's commands against real processes, judged by the kernel:
//! `kawrap check --expect` passes on a socket set up by kawrap and fails on
//! one that is not; `kawrap attach` changes a running process's socket (read
//! back with getsockopt through `check` and with `ss -tnoH`), and an attached
//! process then notices a vanished peer in the profile's time; `kawrap env`
//! output sourced by a real bash arms the timer of the programs it starts;
//! the systemd drop-in is what systemd accepts.
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kawrap_integration::cli::{describe, kawrap, may_copy_sockets, stdout};
use kawrap_integration::netns::{self, NetnsPair, SERVER_ADDR};
use kawrap_integration::process::{KillOnDrop, expect_line, spawn_with_lines};
use kawrap_integration::servers::free_port;
use kawrap_integration::ss::{self, SsLine};
use kawrap_integration::{kawrap_bin, poll, shim_path, skip_unless, without_kawrap_env};

const CLIENT: &str = env!("CARGO_BIN_EXE_blocking_client");
const PROBE: &str = env!("CARGO_BIN_EXE_kaprobe");

/// A `blocking_client --listen` server on loopback.
fn loopback_server(port: u16) -> KillOnDrop {
    let mut cmd = Command::new(CLIENT);
    cmd.args(["--listen", &format!("127.0.0.1:{port}")]);
    let (server, lines) = spawn_with_lines(cmd);
    expect_line(&lines, "listening", "server");
    server
}

/// A client connected to `127.0.0.1:port`, optionally through `kawrap --profile`.
fn loopback_client(port: u16, kawrap_profile: Option<&str>) -> KillOnDrop {
    let mut cmd = match kawrap_profile {
        Some(profile) => {
            let mut cmd = Command::new(kawrap_bin());
            cmd.args(["--profile", profile, "--", CLIENT]);
            cmd
        }
        None => Command::new(CLIENT),
    };
    cmd.arg(format!("127.0.0.1:{port}")).env_remove("LD_PRELOAD");
    let (client, lines) = spawn_with_lines(cmd);
    expect_line(&lines, "connected", "client");
    client
}

/// The client socket from 127.0.0.1:`local_port` to 127.0.0.1:`port`, as ss shows it.
fn ss_client_socket(port: u16, local_port: u16) -> SsLine {
    let (local, peer) =
        (SocketAddr::from(([127, 0, 0, 1], local_port)), SocketAddr::from(([127, 0, 0, 1], port)));
    ss::connection(local, peer).unwrap_or_else(|| panic!("no socket from {local} to {peer} in ss"))
}

/// The local port of the one client socket `pid` holds, from `kawrap check`.
fn client_local_port(pid: u32, server_port: u16) -> u16 {
    let output = kawrap(&["check", "--pid", &pid.to_string(), "--port", &server_port.to_string()]);
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    let row = text
        .lines()
        .find(|line| line.starts_with("ESTAB") && line.contains(&format!("127.0.0.1:{server_port} ")))
        .unwrap_or_else(|| panic!("no established socket of {pid} in:\n{text}"));
    let local = row.split_whitespace().nth(1).expect("LOCAL column");
    local.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("local port in {row}"))
}

#[test]
fn check_expect_passes_under_kawrap_and_fails_without() {
    if skip_unless(may_copy_sockets(), "needs root or kernel.yama.ptrace_scope=0") {
        return;
    }
    let port = free_port();
    let _server = loopback_server(port);
    let wrapped = loopback_client(port, Some("2/1/3"));
    let bare = loopback_client(port, None);
    let wrapped_port = client_local_port(wrapped.id(), port);
    let bare_port = client_local_port(bare.id(), port);

    // ss, the operator's own tool, agrees on what the two sockets are.
    let ss_wrapped = ss_client_socket(port, wrapped_port);
    assert!(ss_wrapped.keepalive().is_some_and(|t| t <= Duration::from_secs(2)), "{}", ss_wrapped.raw);
    assert_eq!(ss_client_socket(port, bare_port).timer, None);

    let pass = kawrap(&["check", "--pid", &wrapped.id().to_string(), "--expect", "2/1/3"]);
    assert_eq!(pass.status.code(), Some(0), "{}", describe(&pass));
    let text = stdout(&pass);
    assert!(text.contains("ok: all 1 established sockets have 2/1/3"), "{text}");
    // getsockopt on the copy: the exact values, not only the timer.
    let row = text.lines().find(|l| l.contains(&format!(":{wrapped_port} "))).expect("the client's row");
    assert!(row.contains("on 2/1/3") && row.ends_with("ok"), "{row}");

    let fail = kawrap(&["check", "--pid", &bare.id().to_string(), "--expect", "2/1/3"]);
    assert_eq!(fail.status.code(), Some(1), "{}", describe(&fail));
    let text = stdout(&fail);
    let listed = format!("  127.0.0.1:{bare_port} -> 127.0.0.1:{port} {}/", bare.id());
    assert!(text.contains("FAIL: 1 of 1 established sockets do not have 2/1/3"), "{text}");
    assert!(text.contains(&listed), "offending socket not listed as {listed:?}:\n{text}");
    assert!(text.contains("SO_KEEPALIVE is off"), "{text}");

    // Selecting both by port: one passes, one fails, and only that one is listed.
    let both = kawrap(&["check", "--port", &port.to_string(), "--expect", "2/1/3"]);
    assert_eq!(both.status.code(), Some(1), "{}", describe(&both));
    let text = stdout(&both);
    let failures: Vec<&str> = text.lines().filter(|l| l.starts_with("  ")).collect();
    assert!(failures.iter().any(|l| l.contains(&format!(":{bare_port} -> "))), "{text}");
    assert!(!failures.iter().any(|l| l.contains(&format!(":{wrapped_port} -> "))), "{text}");

    // Nothing selected is not a pass.
    let none = kawrap(&["check", "--port", &free_port().to_string(), "--expect", "2/1/3"]);
    assert_eq!(none.status.code(), Some(1), "{}", describe(&none));
}

#[test]
fn attach_changes_the_socket_of_a_process_started_without_kawrap() {
    if skip_unless(may_copy_sockets(), "needs root or kernel.yama.ptrace_scope=0") {
        return;
    }
    let port = free_port();
    let _server = loopback_server(port);
    let client = loopback_client(port, None);
    let pid = client.id().to_string();
    let local_port = client_local_port(client.id(), port);
    assert_eq!(ss_client_socket(port, local_port).timer, None, "a bare client has no keepalive timer");

    let dry = kawrap(&["attach", "--dry-run", "--profile", "2/1/3", &pid]);
    assert!(dry.status.success(), "{}", describe(&dry));
    assert!(stdout(&dry).contains("would become on 2/1/3"), "{}", describe(&dry));
    let still = kawrap(&["check", "--pid", &pid, "--expect", "2/1/3"]);
    assert_eq!(still.status.code(), Some(1), "--dry-run changed the socket:\n{}", describe(&still));

    let attach = kawrap(&["attach", "--profile", "2/1/3", &pid]);
    assert!(attach.status.success(), "{}", describe(&attach));
    let text = stdout(&attach);
    let line =
        text.lines().find(|l| l.contains(&format!("127.0.0.1:{local_port} -> "))).expect("socket line");
    assert!(line.contains("off ") && line.ends_with("-> on 2/1/3"), "{line}");

    // Read back two ways: getsockopt on a copy (check), and ss's timer.
    let check = kawrap(&["check", "--pid", &pid, "--expect", "2/1/3"]);
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
    assert!(stdout(&check).contains("on 2/1/3"), "{}", describe(&check));
    let socket = ss_client_socket(port, local_port);
    assert!(
        socket.keepalive().is_some_and(|t| t <= Duration::from_secs(2)),
        "ss after attach: {}",
        socket.raw
    );
}

#[test]
fn attach_errors_say_what_is_wrong() {
    let missing = kawrap(&["attach", "4194305"]);
    assert_eq!(missing.status.code(), Some(125), "{}", describe(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no such process: 4194305"),
        "{}",
        describe(&missing)
    );
    let bad = kawrap(&["attach", "--profile", "2/1/300", "1"]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("count 300 is out of range 1..=127"),
        "{}",
        describe(&bad)
    );
}

#[test]
fn attach_with_2_1_3_then_a_vanished_peer_is_noticed_in_5_seconds() {
    let reason = netns::unavailable_reason();
    if skip_unless(reason.is_none(), reason.as_deref().unwrap_or_default()) {
        return;
    }
    let pair = NetnsPair::new().expect("create namespace pair");
    let addr = format!("{SERVER_ADDR}:7000");
    let mut server = pair.server().command(CLIENT);
    server.args(["--listen", &addr]);
    let (_server, server_lines) = spawn_with_lines(server);
    expect_line(&server_lines, "listening", "server");

    // Started without kawrap: no shim, no keepalive.
    let mut client = pair.client().command(CLIENT);
    client.arg(&addr).env_remove("LD_PRELOAD");
    let (mut client, lines) = spawn_with_lines(client);
    expect_line(&lines, "connected", "client");
    let pid = client.id().to_string();

    // From the host's namespace: pidfd_getfd reaches across namespaces.
    let attach = kawrap(&["attach", "--profile", "2/1/3", &pid]);
    assert!(attach.status.success(), "{}", describe(&attach));
    assert!(stdout(&attach).contains("-> on 2/1/3"), "{}", describe(&attach));
    // check enters the client's namespace to list its sockets.
    let check = kawrap(&["check", "--pid", &pid, "--expect", "2/1/3"]);
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));

    pair.cut().expect("install the drop rule");
    let cut_at = Instant::now();
    let limit = Duration::from_millis(6500);
    let status = client.wait_timeout(limit);
    let elapsed = cut_at.elapsed();
    let last = lines.try_iter().last().unwrap_or_default();
    assert!(status.is_some(), "attached client still blocked {elapsed:.2?} after the peer vanished");
    eprintln!("attached client: exited {elapsed:.2?} after the peer vanished: {last}");
    assert!(last.contains(r#""errno":"ETIMEDOUT""#), "expected the kernel's ETIMEDOUT, got {last:?}");
    let expected = Duration::from_secs(5);
    assert!(
        elapsed.abs_diff(expected) <= Duration::from_millis(1500),
        "detected after {elapsed:.2?}, expected {expected:?} ± 1.5 s"
    );
}

/// The C library this process runs on: a real shared object that can be
/// preloaded without effect, standing for "some other preload" below.
fn harmless_preload() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    let path = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| Path::new(path).file_name().is_some_and(|n| n == "libc.so.6"))
        .expect("this process maps libc.so.6");
    std::fs::canonicalize(path).expect("canonical libc").to_string_lossy().into_owned()
}

#[test]
fn env_output_sourced_by_bash_arms_the_timer_of_what_bash_starts() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("address").port();
    let other = harmless_preload();
    let script = format!(
        r#"export LD_PRELOAD={other}
eval "$("$KAWRAP" env --profile 2/1/3)" || exit 99
echo "preload=$LD_PRELOAD profile=$KAWRAP_PROFILE"
exec "$PROBE" socket:inet:stream connect:127.0.0.1:{port} print sleep:3"#
    );
    let mut bash = Command::new("bash");
    without_kawrap_env(&mut bash).args(["-c", &script]).env("KAWRAP", kawrap_bin()).env("PROBE", PROBE);
    let (mut bash, lines) = spawn_with_lines(bash);
    let (_server_side, peer) = listener.accept().expect("the probe connects");

    // While the probe sleeps, its socket as ss sees it: both ends matched,
    // so another program's connection from the same port is never taken.
    let server = listener.local_addr().expect("address");
    let socket =
        poll(Duration::from_secs(2), || ss::connection(peer, server)).expect("the probe's socket in ss");
    assert!(
        socket.keepalive().is_some_and(|t| t <= Duration::from_secs(2)),
        "expected a keepalive timer ≤ 2 s: {}",
        socket.raw
    );
    assert!(bash.wait_timeout(Duration::from_secs(10)).is_some_and(|s| s.success()), "bash failed");
    let output: Vec<String> = lines.try_iter().collect();
    let shim = shim_path().canonicalize().expect("canonical shim");
    assert_eq!(output[0], format!("preload={}:{other} profile=2/1/3", shim.display()), "{output:?}");
    assert!(output.contains(&"keepalive=1 idle=2 intvl=1 cnt=3 ut=0".to_owned()), "{output:?}");
}

#[test]
fn env_unset_removes_only_kawrap() {
    let other = harmless_preload();
    let script = format!(
        r#"export LD_PRELOAD={other}
eval "$("$KAWRAP" env --profile firewall)" || exit 99
eval "$("$KAWRAP" env --unset)" || exit 98
echo "preload=$LD_PRELOAD profile=${{KAWRAP_PROFILE-unset}} policy=${{KAWRAP_POLICY-unset}}"
exec "$PROBE" socket:inet:stream print"#
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .env("KAWRAP", kawrap_bin())
        .env("PROBE", PROBE)
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run bash");
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("preload={other} profile=unset policy=unset"));
    // The socket the program opens after --unset is the kernel's default again.
    assert!(lines[2].starts_with("keepalive=0 "), "{text}");
}

#[test]
fn env_output_for_fish_sets_up_a_real_fish_and_undoes_it() {
    let have = Command::new("fish").arg("--version").output().is_ok_and(|o| o.status.success());
    if skip_unless(have, "needs fish (package fish)") {
        return;
    }
    let script = r#"eval ("$KAWRAP" env --shell fish --profile 2/1/3); or exit 99
"$PROBE" socket:inet:stream print
"$KAWRAP" env --shell fish --unset | source; or exit 98
echo "profile=$KAWRAP_PROFILE preload=$LD_PRELOAD"
"$PROBE" socket:inet:stream print"#;
    let mut fish = Command::new("fish");
    without_kawrap_env(&mut fish)
        .args(["--no-config", "-c", script])
        .env("KAWRAP", kawrap_bin())
        .env("PROBE", PROBE);
    let output = fish.output().expect("run fish");
    assert!(output.status.success(), "{}", describe(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[1], "keepalive=1 idle=2 intvl=1 cnt=3 ut=0", "{text}");
    assert_eq!(lines[2], "profile= preload=", "{text}");
    assert!(lines[4].starts_with("keepalive=0 "), "{text}");
}

#[test]
fn systemd_drop_in_is_accepted_by_systemd() {
    let have = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if skip_unless(have, "needs systemd-analyze (package systemd)") {
        return;
    }
    let dir = kawrap_integration::temp_dir("systemd");
    let dir = dir.path();
    let unit = dir.join("kawrap-probe.service");
    std::fs::write(&unit, "[Unit]\nDescription=probe\n[Service]\nExecStart=/bin/true\n").expect("write unit");
    let dir_text = dir.to_string_lossy().into_owned();

    let write = kawrap(&[
        "env",
        "--systemd",
        "--profile",
        "2/1/3/auto",
        "--rule",
        ":3306=firewall",
        "--unit",
        "kawrap-probe",
        "--unit-dir",
        &dir_text,
        "--write",
    ]);
    assert!(write.status.success(), "{}", describe(&write));
    let drop_in = dir.join("kawrap-probe.service.d/50-kawrap.conf");
    let text = std::fs::read_to_string(&drop_in).expect("the drop-in was written");
    assert!(text.contains("Environment=\"KAWRAP_PROFILE=2/1/3/5000\""), "{text}");

    let verify = |what: &str| {
        let output = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&unit)
            .env("SYSTEMD_UNIT_PATH", format!("{dir_text}:"))
            .output()
            .expect("run systemd-analyze");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        eprintln!("systemd-analyze verify ({what}): {}\n{stderr}", output.status);
        stderr
    };
    let stderr = verify("kawrap's drop-in");
    assert!(!stderr.contains("50-kawrap.conf"), "systemd complains about the drop-in:\n{stderr}");

    // The same check notices a broken drop-in, so it can fail.
    std::fs::write(&drop_in, format!("{text}\nEnvironment=\"BROKEN\nNoSuchSetting=1\n")).expect("break it");
    let stderr = verify("a broken drop-in");
    assert!(stderr.contains("50-kawrap.conf"), "a broken drop-in went unnoticed:\n{stderr}");
}
