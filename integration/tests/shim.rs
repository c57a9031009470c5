//! libkawrap.so as the kernel sees it: options read back with getsockopt
//! from inside a program under the shim, compared with the same program
//! without it.
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use kawrap_integration::loopback_listener as listener_v4;
use kawrap_integration::probe::{Run, kernel_default_line, options_line, prints};
use kawrap_integration::process::spawn_with_lines;
use kawrap_integration::servers::have_program;

fn probe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_kaprobe"))
}

#[test]
fn tcp_socket_gets_profile_after_socket_and_connect_ipv4() {
    let (_listener, addr) = listener_v4();
    let connect = format!("connect:{addr}");
    for flags in ["-", "cloexec", "nonblock", "cloexec,nonblock"] {
        let socket = format!("socket:inet:stream:{flags}");
        let lines = Run::shim("300/30/5").steps(probe(), &[&socket, "print", &connect, "print"]);
        let want = options_line(1, 300, 30, 5, 0);
        assert_eq!(prints(&lines), [want.as_str(), want.as_str()], "flags {flags}: {lines:?}");
    }
}

#[test]
fn tcp_socket_gets_profile_ipv6() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        if kawrap_integration::skip_unless(false, "no IPv6 loopback") {
            return;
        }
        unreachable!()
    };
    let connect = format!("connect:{}", listener.local_addr().unwrap());
    let lines = Run::shim("firewall")
        .steps(probe(), &["socket:inet6:stream:cloexec,nonblock", "print", &connect, "print"]);
    let want = options_line(1, 60, 10, 6, 0);
    assert_eq!(prints(&lines), [want.as_str(), want.as_str()], "{lines:?}");
}

#[test]
fn without_the_shim_the_kernel_defaults_stay() {
    let (_listener, addr) = listener_v4();
    let lines =
        Run::bare().steps(probe(), &["socket:inet:stream", "print", &format!("connect:{addr}"), "print"]);
    let want = kernel_default_line();
    assert_eq!(prints(&lines), [want.as_str(), want.as_str()]);
    assert_ne!(want, options_line(1, 300, 30, 5, 0));
}

#[test]
fn user_timeout_only_when_the_profile_asks() {
    let lines = Run::shim("2/1/3/auto").steps(probe(), &["socket:inet:stream", "print"]);
    assert_eq!(prints(&lines), [options_line(1, 2, 1, 3, 5000)]);
    let lines = Run::shim("2/1/3/7m30s").steps(probe(), &["socket:inet:stream", "print"]);
    assert_eq!(prints(&lines), [options_line(1, 2, 1, 3, 450_000)]);
}

#[test]
fn non_tcp_sockets_are_untouched() {
    for socket in [
        "socket:inet:dgram",
        "socket:inet6:dgram",
        "socket:unix:stream",
        "socket:unix:dgram",
        // MPTCP: a stream socket that is not plain TCP.
        "socket:inet:stream:-:262",
    ] {
        let steps = [socket, "print", "connect:127.0.0.1:9", "print"];
        let with = Run::shim("300/30/5").steps(probe(), &steps);
        let without = Run::bare().steps(probe(), &steps);
        assert_eq!(with, without, "{socket} differs under the shim");
    }
}

#[test]
fn respect_keeps_the_programs_own_values() {
    let (_listener, addr) = listener_v4();
    let connect = format!("connect:{addr}");
    // Like curl: its own TCP_KEEPIDLE stands, the rest is kawrap's.
    let lines =
        Run::shim("300/30/5").steps(probe(), &["socket:inet:stream", "set:idle=60", &connect, "print"]);
    assert_eq!(prints(&lines), [options_line(1, 60, 30, 5, 0)]);
    // A program that turns keepalive off keeps it off.
    let lines =
        Run::shim("300/30/5").steps(probe(), &["socket:inet:stream", "set:keepalive=0", &connect, "print"]);
    assert_eq!(prints(&lines), [options_line(0, 300, 30, 5, 0)]);
    // Like mysqldump: a bare SO_KEEPALIVE=1 after connect gets kawrap's timings.
    let lines =
        Run::shim("300/30/5").steps(probe(), &["socket:inet:stream", &connect, "set:keepalive=1", "print"]);
    assert_eq!(prints(&lines), [options_line(1, 300, 30, 5, 0)]);
}

#[test]
fn respect_survives_a_rule_applied_at_connect() {
    let (_listener, addr) = listener_v4();
    let port = addr.rsplit(':').next().unwrap();
    let lines = Run::shim("300/30/5")
        .with("KAWRAP_RULES", &format!(":{port}=60/10/6"))
        .steps(probe(), &["socket:inet:stream", "set:idle=45", &format!("connect:{addr}"), "print"]);
    assert_eq!(prints(&lines), [options_line(1, 45, 10, 6, 0)]);
}

#[test]
fn force_overrides_the_programs_own_values() {
    let (_listener, addr) = listener_v4();
    let connect = format!("connect:{addr}");
    let force = Run::shim("300/30/5").with("KAWRAP_POLICY", "force");
    let lines =
        force.steps(probe(), &["socket:inet:stream", "set:idle=60", &connect, "set:intvl=1", "print"]);
    assert_eq!(prints(&lines), [options_line(1, 300, 30, 5, 0)]);
    assert!(lines.iter().filter(|l| l.starts_with("set=")).all(|l| l == "set=0 errno=0"), "{lines:?}");
    let lines = force.steps(probe(), &["socket:inet:stream", &connect, "set:keepalive=0", "print"]);
    assert_eq!(prints(&lines), [options_line(1, 300, 30, 5, 0)]);
    // Force never reaches beyond TCP: a UDP socket's SO_KEEPALIVE is the program's.
    let lines = force.steps(probe(), &["socket:inet:dgram", "set:keepalive=1", "print"]);
    assert_eq!(prints(&lines)[0].split(' ').next(), Some("keepalive=1"));
    let lines = force.steps(probe(), &["socket:inet:dgram", "set:keepalive=0", "print"]);
    assert_eq!(prints(&lines)[0].split(' ').next(), Some("keepalive=0"));
}

#[test]
fn rules_choose_the_profile_by_destination() {
    let (_a, addr_a) = listener_v4();
    let (_b, addr_b) = listener_v4();
    let port_a = addr_a.rsplit(':').next().unwrap();
    let run =
        Run::shim("300/30/5").with("KAWRAP_RULES", &format!("10.0.0.0/8=30/30/10,:{port_a}=60/10/6/auto"));
    let lines = run.steps(
        probe(),
        &[
            "socket:inet:stream",
            &format!("connect:{addr_a}"),
            "print",
            "socket:inet:stream",
            &format!("connect:{addr_b}"),
            "print",
        ],
    );
    assert_eq!(prints(&lines), [options_line(1, 60, 10, 6, 120_000), options_line(1, 300, 30, 5, 0)]);
    let by_network = Run::shim("300/30/5").with("KAWRAP_RULES", "127.0.0.0/8=60/10/6");
    let lines = by_network.steps(probe(), &["socket:inet:stream", &format!("connect:{addr_b}"), "print"]);
    assert_eq!(prints(&lines), [options_line(1, 60, 10, 6, 0)]);
}

#[test]
fn a_rule_without_user_timeout_clears_the_profiles() {
    let (_listener, addr) = listener_v4();
    let port = addr.rsplit(':').next().unwrap();
    let lines = Run::shim("300/30/5/9000")
        .with("KAWRAP_RULES", &format!(":{port}=60/10/6"))
        .steps(probe(), &["socket:inet:stream", "print", &format!("connect:{addr}"), "print"]);
    assert_eq!(prints(&lines), [options_line(1, 300, 30, 5, 9000), options_line(1, 60, 10, 6, 0)]);
}

#[test]
fn sockets_the_shim_did_not_create_get_the_profile_at_connect_and_listen() {
    let (_listener, addr) = listener_v4();
    let lines = Run::shim("300/30/5")
        .steps(probe(), &["rawsocket:inet:stream", "print", &format!("connect:{addr}"), "print"]);
    let prints = prints(&lines);
    assert_eq!(prints[0], kernel_default_line(), "raw syscall bypasses the hook");
    assert_eq!(prints[1], options_line(1, 300, 30, 5, 0));
    let lines = Run::shim("300/30/5").steps(probe(), &["rawsocket:inet:stream", "listen", "print"]);
    assert!(lines.contains(&options_line(1, 300, 30, 5, 0)), "{lines:?}");
}

#[test]
fn accepted_sockets_inherit_the_listeners_profile() {
    use std::io::Write;
    use std::process::Command;
    // Find a free port, then let the probe listen on it under the shim.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // A python3 server under the shim: its listen() socket carries the
    // profile and the kernel copies it to every accepted socket.
    let script = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('127.0.0.1',{port}))\ns.listen()\nprint('ready',flush=True)\nc,_=s.accept()\n\
         print(c.getsockopt(socket.SOL_SOCKET,socket.SO_KEEPALIVE),c.getsockopt(6,socket.TCP_KEEPIDLE),\
         c.getsockopt(6,socket.TCP_KEEPINTVL),c.getsockopt(6,socket.TCP_KEEPCNT),flush=True)\n"
    );
    if kawrap_integration::skip_unless(have_program("python3"), "python3 not found") {
        return;
    }
    let mut server = Command::new("python3");
    server
        .args(["-c", &script])
        .env("LD_PRELOAD", kawrap_integration::shim_path())
        .env("KAWRAP_PROFILE", "firewall");
    let (mut server, lines) = spawn_with_lines(server);
    let next_line = || lines.recv_timeout(Duration::from_secs(10)).expect("a line from the python3 server");
    assert_eq!(next_line().trim(), "ready");
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(b"x").ok();
    let line = next_line();
    server.wait().ok();
    assert_eq!(line.trim(), "1 60 10 6");
}

#[test]
fn errno_and_results_are_the_real_calls() {
    // Refused (nothing listens on port 1), EINPROGRESS (non-blocking),
    // EAFNOSUPPORT (bad family), a failing setsockopt of the program's own.
    let cases: [&[&str]; 5] = [
        &["socket:inet:stream", "connect:127.0.0.1:1"],
        &["socket:inet:stream:nonblock", "connect:127.0.0.1:1"],
        &["socket:9999:stream"],
        &["socket:inet:stream", "set:idle=0", "set:cnt=128", "print"],
        &["socket:inet6:stream", "connect:127.0.0.1:1"],
    ];
    for steps in cases {
        let with = Run::shim("300/30/5").steps(probe(), steps);
        let without = Run::bare().steps(probe(), steps);
        let results = |lines: &[String]| -> Vec<String> {
            lines.iter().filter(|l| !l.starts_with("keepalive=")).cloned().collect()
        };
        assert_eq!(results(&with), results(&without), "{steps:?}");
    }
}

#[test]
fn invalid_or_disabled_configuration_leaves_the_program_alone_and_says_why() {
    let dir = kawrap_integration::temp_dir("shim-test");
    let log = dir.path().join("kawrap.log");
    let steps = ["socket:inet:stream", "print"];
    let bare = Run::bare().steps(probe(), &steps);
    for (key, value) in [
        ("KAWRAP_PROFILE", "300/30/500"),
        ("KAWRAP_RULES", ":70000=ssh"),
        ("KAWRAP_POLICY", "always"),
        ("KAWRAP_DISABLE", "1"),
    ] {
        let run = Run::shim("300/30/5").with(key, value).with("KAWRAP_LOG", log.to_str().unwrap());
        assert_eq!(run.steps(probe(), &steps), bare, "{key}={value}");
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains(r#"disabled: profile "300/30/500": count 500 is out of range 1..=127"#), "{text}");
    assert!(text.contains("disabled: rule \":70000=ssh\""), "{text}");
    assert!(text.contains("disabled: policy \"always\""), "{text}");
}

#[test]
fn log_has_one_line_per_socket_with_what_was_applied() {
    let dir = kawrap_integration::temp_dir("log-test");
    let log = dir.path().join("kawrap.log");
    let (_listener, addr) = listener_v4();
    let port = addr.rsplit(':').next().unwrap();
    Run::shim("300/30/5")
        .with("KAWRAP_LOG", log.to_str().unwrap())
        .with("KAWRAP_RULES", &format!(":{port}=60/10/6"))
        .steps(
            probe(),
            &["socket:inet:stream", "set:cnt=3", &format!("connect:{addr}"), "socket:inet:dgram"],
        );
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("fd=3 event=socket rule=- profile=300/30/5 set=SO_KEEPALIVE,TCP_KEEPIDLE,TCP_KEEPINTVL,TCP_KEEPCNT"), "{text}");
    assert!(lines[1].contains(&format!("event=connect dest={addr} rule=0 profile=60/10/6 set=SO_KEEPALIVE,TCP_KEEPIDLE,TCP_KEEPINTVL kept=TCP_KEEPCNT")), "{text}");
    assert!(lines.iter().all(|l| l.split_once(' ').is_some_and(|(_, rest)| rest.starts_with("kawrap pid="))));
}

#[test]
fn the_shim_exports_only_its_hooks_and_stays_small() {
    let shim = kawrap_integration::shim_path();
    let size = std::fs::metadata(&shim).unwrap().len();
    assert!(size <= 64 * 1024, "libkawrap.so is {size} bytes; the budget is 64 KiB");
    let nm = std::process::Command::new("nm").args(["-D", "--defined-only"]).arg(&shim).output();
    let Ok(nm) = nm else {
        kawrap_integration::skip_unless(false, "nm (binutils) not installed");
        return;
    };
    let text = String::from_utf8_lossy(&nm.stdout);
    let mut exported: Vec<&str> =
        text.lines().filter(|l| l.contains(" T ")).filter_map(|l| l.split_whitespace().last()).collect();
    exported.sort_unstable();
    assert_eq!(
        exported,
        ["accept", "accept4", "connect", "listen", "sendmsg", "sendto", "setsockopt", "socket"]
    );
    let sections = std::process::Command::new("readelf").args(["-SW"]).arg(&shim).output().unwrap();
    assert!(!String::from_utf8_lossy(&sections.stdout).contains(".symtab"), "the release shim is stripped");
}

/// Functions libc.so.6 of glibc 2.17 (x86_64 base version GLIBC_2.2.5;
/// clock_gettime moved there from librt in 2.17, as GLIBC_2.17) and musl 1.2
/// both export (dlsym: libdl.so.2 before glibc 2.34, which the library
/// names as needed), plus the weak references every shared object
/// carries. A hard reference to anything else (glibc ≥ 2.34's
/// `pthread_atfork`, for one) makes the loader refuse the library on some
/// supported system, and with it the host program.
const IMPORTS_EVERY_LIBC_HAS: [&str; 17] = [
    "__cxa_finalize",
    "__errno_location",
    "__gmon_start__",
    "_ITM_deregisterTMCloneTable",
    "_ITM_registerTMCloneTable",
    "abort",
    "bcmp",
    "clock_gettime",
    "dlsym",
    "getauxval",
    "memcmp",
    "memcpy",
    "memmove",
    "memset",
    "secure_getenv",
    "strlen",
    "syscall",
];

#[test]
fn the_shim_imports_only_what_glibc_2_17_and_musl_both_have() {
    let nm = std::process::Command::new("nm")
        .args(["-D", "--undefined-only"])
        .arg(kawrap_integration::shim_path())
        .output();
    let Ok(nm) = nm else {
        kawrap_integration::skip_unless(false, "nm (binutils) not installed");
        return;
    };
    let text = String::from_utf8_lossy(&nm.stdout);
    let imports: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|symbol| symbol.split('@').next().unwrap_or(symbol))
        .collect();
    assert!(imports.contains(&"dlsym"), "nm listed the imports: {text}");
    let foreign: Vec<&&str> = imports.iter().filter(|s| !IMPORTS_EVERY_LIBC_HAS.contains(s)).collect();
    assert!(foreign.is_empty(), "libkawrap.so needs {foreign:?}, which glibc 2.17 or musl 1.2 lacks");
}
