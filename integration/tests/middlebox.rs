//! Keeping connections under a middlebox's idle timeout, end to end, and
//! the fleet's view of it: the shim reads `under:240s` and the middlebox
//! names as the launcher does; `kawrap check --keep-under` flags exactly the
//! live sockets such a box would drop (keepalive off, idle equal to or above
//! the timeout), as root and from the timer alone; node_exporter serves
//! `kawrap check --format prometheus --output` without a parse error.
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kawrap_integration::cgroup::TestCgroup;
use kawrap_integration::cli::{describe, kawrap, kawrap_as_nobody, may_copy_sockets};
use kawrap_integration::probe::{Run, kernel_default_line, options_line, prints};
use kawrap_integration::process::{KillOnDrop, expect_line, spawn_with_lines};
use kawrap_integration::servers::free_port;
use kawrap_integration::{is_root, kawrap_bin, loopback_listener, poll, skip_unless, without_kawrap_env};

const CLIENT: &str = env!("CARGO_BIN_EXE_blocking_client");
const PROBE: &str = env!("CARGO_BIN_EXE_kaprobe");
const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

#[test]
fn the_shim_reads_under_and_middlebox_names_as_the_launcher_does() {
    let (_listener, addr) = loopback_listener();
    let connect = format!("connect:{addr}");
    let steps = ["socket:inet:stream", connect.as_str(), "print"];
    let azure = options_line(1, 180, 24, 5, 0);
    for profile in ["under:240s", "UNDER: 4m ", "azure-lb", "under:azure-nat"] {
        let lines = Run::shim(profile).steps(Path::new(PROBE), &steps);
        assert_eq!(prints(&lines), [azure.as_str()], "KAWRAP_PROFILE={profile:?}");
    }
    // The launcher's --keep-under puts the same numbers in the environment.
    let output = without_kawrap_env(Command::new(kawrap_bin()).args(["--keep-under", "350s", "--", PROBE]))
        .args(steps)
        .output()
        .expect("run kawrap");
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
    assert_eq!(prints(&lines), [options_line(1, 262, 30, 5, 0).as_str()], "{}", describe(&output));
    // A layer-7 proxy: the shim leaves the program alone and says why.
    let dir = kawrap_integration::temp_dir("middlebox-shim");
    let log = dir.path().join("kawrap.log");
    let lines =
        Run::shim("aws-alb").with("KAWRAP_LOG", log.to_str().unwrap()).steps(Path::new(PROBE), &steps);
    assert_eq!(prints(&lines), [kernel_default_line().as_str()]);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("disabled: profile \"aws-alb\": aws-alb") && text.contains("layer-7 proxy"),
        "{text}"
    );
}

/// A listener on loopback held by the test itself, so that no other
/// program can take its port first; with `idle`, SO_KEEPALIVE and that
/// TCP_KEEPIDLE, which the sockets it accepts inherit.
fn listener(idle: Option<i32>) -> (TcpListener, u16) {
    let (listener, _) = loopback_listener();
    if let Some(idle) = idle {
        let fd = listener.as_raw_fd();
        for (level, option, value) in
            [(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1), (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle)]
        {
            // SAFETY: `value` lives across the call and its size is passed.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    level,
                    option,
                    (&raw const value).cast(),
                    size_of::<i32>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "setsockopt {option}: {}", std::io::Error::last_os_error());
        }
    }
    let port = listener.local_addr().expect("local_addr").port();
    (listener, port)
}

/// The server's ends of `count` connections, held until dropped.
fn accept(listener: &TcpListener, count: usize) -> Vec<TcpStream> {
    (0..count).map(|_| listener.accept().expect("accept").0).collect()
}

/// A client connected to `port` that set `keepalive` (I/V/C) on its socket
/// itself, or left keepalive off.
fn client(port: u16, keepalive: Option<&str>) -> KillOnDrop {
    let mut cmd = Command::new(CLIENT);
    without_kawrap_env(&mut cmd).arg(format!("127.0.0.1:{port}"));
    if let Some(values) = keepalive {
        cmd.args(["--keepalive", values]);
    }
    let (client, lines) = spawn_with_lines(cmd);
    expect_line(&lines, "connected", "client");
    client
}

/// One established socket's line in `kawrap check --keep-under`'s table.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Judged {
    local: String,
    remote: String,
    /// The owner's pid, or `-`.
    pid: String,
    /// dropped, kept or unknown.
    verdict: &'static str,
}

/// The verdict of each established socket in `kawrap check --keep-under`'s table.
fn verdicts(text: &str) -> Vec<Judged> {
    text.lines()
        .filter(|line| line.starts_with("ESTAB "))
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let pid = words[3].split('/').next().unwrap_or("-").to_owned();
            let verdict = if line.contains(" DROPPED: ") {
                "dropped"
            } else if line.contains(" NOT JUDGED: ") {
                "unknown"
            } else if line.contains(" kept") {
                "kept"
            } else {
                panic!("no verdict in {line:?}")
            };
            Judged { local: words[1].to_owned(), remote: words[2].to_owned(), pid, verdict }
        })
        .collect()
}

#[test]
fn check_keep_under_flags_exactly_the_sockets_a_box_would_drop() {
    if skip_unless(may_copy_sockets(), "needs root or kernel.yama.ptrace_scope=0") {
        return;
    }
    // The server's ends inherit idle 100 s from its listener: kept.
    let (server, port) = listener(Some(100));
    // Idle below, at and above a 240 s timeout, and keepalive off.
    let below = client(port, Some("239/1/1"));
    let equal = client(port, Some("240/1/1"));
    let above = client(port, Some("300/1/1"));
    let off = client(port, None);
    let _accepted = accept(&server, 4);

    let output = kawrap(&["check", "--port", &port.to_string(), "--keep-under", "240s"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut found = verdicts(&text);
    found.sort();
    let of = |pid: u32| -> Vec<&str> {
        found.iter().filter(|judged| judged.pid == pid.to_string()).map(|judged| judged.verdict).collect()
    };
    assert_eq!(of(below.id()), ["kept"], "{text}");
    assert_eq!(of(equal.id()), ["dropped"], "{text}");
    assert_eq!(of(above.id()), ["dropped"], "{text}");
    assert_eq!(of(off.id()), ["dropped"], "{text}");
    assert_eq!(of(std::process::id()), ["kept"; 4], "{text}");
    assert_eq!(found.len(), 8, "exactly these sockets were judged: {text}");
    assert!(text.contains("FAIL: 3 of 8 established sockets would be silently dropped"), "{text}");
    assert!(text.contains("A profile that keeps connections under 240 s: 180/24/5"), "{text}");

    // The same box by name; and a process whose sockets would all be kept passes.
    let named = kawrap(&["check", "--port", &port.to_string(), "--keep-under", "azure-lb"]);
    let mut by_name = verdicts(&String::from_utf8_lossy(&named.stdout));
    by_name.sort();
    assert_eq!(by_name, found);
    let pass = kawrap(&["check", "--pid", &below.id().to_string(), "--keep-under", "240s"]);
    assert_eq!(pass.status.code(), Some(0), "{}", describe(&pass));
    assert!(String::from_utf8_lossy(&pass.stdout).contains("ok: none of the 1 established sockets"));

    // Without the right to copy the sockets, only the kernel's timer is
    // known: it settles "off" (no timer) and "300 s" (more than 240 s left),
    // and says so; the others it cannot judge, and it says that too.
    let local_of =
        |pid: u32| found.iter().find(|judged| judged.pid == pid.to_string()).unwrap().local.clone();
    if !is_root() || !have("setpriv") {
        skip_unless(false, "the timer-only judgement needs root and setpriv (util-linux) to drop privileges");
        return;
    }
    let dir = kawrap_integration::temp_dir("middlebox-nobody");
    let output =
        kawrap_as_nobody(dir.path(), &["check", "--port", &port.to_string(), "--keep-under", "240s"]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let by_timer: BTreeMap<String, &str> =
        verdicts(&text).into_iter().map(|judged| (judged.local, judged.verdict)).collect();
    assert_eq!(by_timer[&local_of(off.id())], "dropped", "{text}");
    assert_eq!(by_timer[&local_of(above.id())], "dropped", "{text}");
    assert_eq!(by_timer[&local_of(equal.id())], "unknown", "{text}");
    assert_eq!(by_timer[&local_of(below.id())], "unknown", "{text}");
    assert!(text.contains("judged by the kernel's timer"), "{text}");
    assert!(text.contains("could not be judged:"), "{text}");
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---- node_exporter ----

/// `GET path` over HTTP/1.0; the body of a 200 answer.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.lines().next()?.contains(" 200 ").then(|| body.to_owned())
}

/// node_exporter with only the textfile collector, reading `dir`, on a
/// free loopback port; its address once it answers. A port another
/// program took in the meantime is given up for the next one.
fn node_exporter(dir: &Path) -> (KillOnDrop, String) {
    for _ in 0..3 {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(NODE_EXPORTER);
        cmd.arg(format!("--web.listen-address={addr}"))
            .args(["--collector.disable-defaults", "--collector.textfile"])
            .arg(format!("--collector.textfile.directory={}", dir.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut exporter = KillOnDrop::spawn(&mut cmd).expect("start node_exporter");
        let answered = poll(Duration::from_secs(10), || {
            http_get(&addr, "/metrics").map(|_| true).or_else(|| exporter.try_wait().map(|_| false))
        });
        if answered == Some(true) {
            return (exporter, addr);
        }
    }
    panic!("node_exporter did not answer on /metrics");
}

/// The value of the one series written exactly as `series` in a scrape.
fn value(scrape: &str, series: &str) -> Option<String> {
    scrape.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
}

/// A process named `comm` (quotes, backslash, line break: everything a
/// label value must escape) holding one connection to `port`.
fn oddly_named_client(port: u16) -> Option<KillOnDrop> {
    let script = format!(
        "import ctypes, socket, sys, time\n\
         ctypes.CDLL(None).prctl(15, b'k\"a\\\\w\\nr', 0, 0, 0)\n\
         s = socket.create_connection(('127.0.0.1', {port}))\n\
         print('connected', flush=True)\n\
         time.sleep(60)\n"
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &script]);
    let (child, lines) = spawn_with_lines(cmd);
    expect_line(&lines, "connected", "python3 client");
    Some(child)
}

/// A cgroup with kawrap's eBPF programs attached; detached, then removed, on drop.
struct Attached {
    cgroup: TestCgroup,
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = kawrap(&["bpf", "detach", "--cgroup", &self.cgroup.path().to_string_lossy()]);
    }
}

/// Attaches kawrap to a new cgroup and makes one connection from inside
/// it; `None` (after saying why) when this kawrap or machine cannot.
fn bpf_attachment_with_one_connection() -> Option<Attached> {
    let status = kawrap(&["bpf", "status"]);
    let built = !String::from_utf8_lossy(&status.stderr).contains("built without the eBPF mode");
    if skip_unless(built, "kawrap was built without the eBPF mode (make builds it when clang is installed)") {
        return None;
    }
    let Some(cgroup) = TestCgroup::new("kawrap-metrics.service") else {
        skip_unless(false, "no cgroup2 mount to create a test cgroup in");
        return None;
    };
    let attached = Attached { cgroup };
    let path = attached.cgroup.path().to_string_lossy().into_owned();
    let output = kawrap(&["bpf", "attach", "--cgroup", &path, "--keep-under", "240s"]);
    assert!(output.status.success(), "{}", describe(&output));
    let (_listener, addr) = loopback_listener();
    let mut probe = Command::new(PROBE);
    probe.args(["socket:inet:stream", &format!("connect:{addr}"), "print"]);
    attached.cgroup.enter_on_spawn(&mut probe);
    let output = probe.output().expect("run kaprobe in the cgroup");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains(&options_line(1, 180, 24, 5, 0)), "the eBPF program set the profile: {text}");
    Some(attached)
}

#[test]
fn node_exporter_serves_kawrap_metrics_from_the_textfile() {
    let available = Path::new(NODE_EXPORTER).is_file() && have("python3");
    if skip_unless(available, "needs prometheus-node-exporter and python3 (Debian packages)")
        || skip_unless(may_copy_sockets(), "needs root or kernel.yama.ptrace_scope=0")
    {
        return;
    }
    let (server, port) = listener(None);
    let _on = client(port, Some("2/1/3"));
    let _off = client(port, None);
    let _odd = oddly_named_client(port);
    let _accepted = accept(&server, 3);
    // This test process holds the server's ends.
    let ours = std::fs::read_to_string("/proc/self/comm").expect("our comm").trim_end().to_owned();
    let attached = if is_root() { bpf_attachment_with_one_connection() } else { None };

    let dir = kawrap_integration::temp_dir("textfile");
    let file = dir.path().join("kawrap.prom");
    // Written under umask 077: the collector (another user, on real
    // systems) must still be able to read it.
    let port_text = port.to_string();
    let mut check = Command::new("sh");
    without_kawrap_env(&mut check)
        .args(["-c", "umask 077 && exec \"$0\" \"$@\""])
        .arg(kawrap_bin())
        .args(["check", "--port", &port_text, "--keep-under", "240s", "--format", "prometheus", "--output"])
        .arg(&file);
    let output = check.output().expect("run kawrap check");
    // Sockets with keepalive off would be dropped: exit 1, as for the table.
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644);

    let (_exporter, addr) = node_exporter(dir.path());
    let scrape = http_get(&addr, "/metrics").expect("a scrape");
    let series = |name: &str, labels: &str| format!("{name}{{{labels}}}");
    let by_process = |comm: &str, keepalive: &str| {
        series(
            "kawrap_tcp_established_sockets_by_process",
            &format!(r#"comm="{comm}",keepalive="{keepalive}""#),
        )
    };
    let dropped_by = |comm: &str| {
        series(
            "kawrap_keep_under_dropped_sockets_by_process",
            &format!(r#"comm="{comm}",idle_timeout_seconds="240""#),
        )
    };
    let odd = r#"k\"a\\w\nr"#;
    let expected = [
        // Three clients and the three server ends this process accepted;
        // only the 2/1/3 client has keepalive on.
        (series("kawrap_tcp_established_sockets", r#"keepalive="on""#), "1"),
        (series("kawrap_tcp_established_sockets", r#"keepalive="off""#), "5"),
        (series("kawrap_tcp_established_sockets", r#"keepalive="unknown""#), "0"),
        (by_process("blocking_client", "on"), "1"),
        (by_process("blocking_client", "off"), "1"),
        (by_process(&ours, "off"), "3"),
        (by_process(odd, "off"), "1"),
        (series("kawrap_keep_under_sockets", r#"idle_timeout_seconds="240",verdict="dropped""#), "5"),
        (series("kawrap_keep_under_sockets", r#"idle_timeout_seconds="240",verdict="kept""#), "1"),
        (series("kawrap_keep_under_sockets", r#"idle_timeout_seconds="240",verdict="unknown""#), "0"),
        (dropped_by("blocking_client"), "1"),
        (dropped_by(&ours), "3"),
        (dropped_by(odd), "1"),
        ("node_textfile_scrape_error".to_owned(), "0"),
    ];
    for (series, want) in expected {
        assert_eq!(value(&scrape, &series).as_deref(), Some(want), "{series} in:\n{scrape}");
    }
    assert!(scrape.contains("# TYPE kawrap_tcp_established_sockets gauge"), "{scrape}");
    if let Some(attached) = &attached {
        let cgroup = attached.cgroup.path().to_string_lossy();
        let series = format!(r#"kawrap_bpf_connections_total{{cgroup="{cgroup}","#);
        let connects = scrape
            .lines()
            .find(|line| line.starts_with(&series) && line.contains(r#"direction="connect""#))
            .unwrap_or_else(|| panic!("no connect counter for {cgroup} in:\n{scrape}"));
        assert!(connects.ends_with(" 1"), "one connection was made in the cgroup: {connects}");
        assert!(scrape.contains("# TYPE kawrap_bpf_connections_total counter"), "{scrape}");
        // node_exporter sorts the labels by name.
        let info = format!(r#"kawrap_bpf_attachment_info{{attached_by="attach",cgroup="{cgroup}","#);
        let info = scrape.lines().find(|line| line.starts_with(&info)).expect("the attachment's info");
        assert!(info.contains(r#"profile="180/24/5""#) && info.ends_with(" 1"), "{info}");
    }

    // The same scrape notices a file it cannot parse: the check above can fail.
    std::fs::write(dir.path().join("broken.prom"), "kawrap_broken{label=\"unterminated} 1\n").unwrap();
    let scrape = http_get(&addr, "/metrics").expect("a scrape");
    assert_eq!(value(&scrape, "node_textfile_scrape_error").as_deref(), Some("1"), "{scrape}");
}
