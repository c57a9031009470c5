//! `kawrap check` and `kawrap attach` details, on this test process's own
//! sockets and threads: what `ss` prints and what the kernel reports must
//! read the same through kawrap.
mod testenv;

use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use testenv::{TestEnv, have, skip_unless};

fn pid() -> String {
    std::process::id().to_string()
}

fn connected_pair() -> (TcpListener, TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (listener, client, server)
}

fn json(out: &testenv::Outcome) -> serde_json::Value {
    serde_json::from_str(&out.stdout()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout()))
}

#[test]
fn time_wait_sockets_show_the_time_they_have_left() {
    let (listener, client, server) = connected_pair();
    let client_addr = client.local_addr().unwrap().to_string();
    // The side that closes first waits in TIME-WAIT (60 s on Linux).
    client.shutdown(Shutdown::Both).unwrap();
    drop(client);
    let mut buf = [0u8; 1];
    let _ = std::io::Read::read(&mut &server, &mut buf);
    drop(server);
    let port = listener.local_addr().unwrap().port().to_string();
    let env = TestEnv::new();
    let socket = (0..50)
        .find_map(|_| {
            let report = json(&env.kawrap().args(["check", "--port", &port, "--json"]).run().code(0));
            let found = report["sockets"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["local"] == client_addr.as_str() && s["state"] == "TIME-WAIT")
                .cloned();
            if found.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            found
        })
        .expect("the client's socket in TIME-WAIT");
    assert_eq!(socket["timer"]["kind"], "timewait", "{socket:#}");
    let left = socket["timer"]["remaining_ms"].as_u64().unwrap();
    assert!((50_000..=60_000).contains(&left), "TIME-WAIT with {left} ms left: {socket:#}");
}

#[test]
fn dst_accepts_an_ipv4_mapped_address_as_ss_prints_it() {
    let (listener, client, _server) = connected_pair();
    let port = listener.local_addr().unwrap().port().to_string();
    let env = TestEnv::new();
    for dst in ["::ffff:127.0.0.1", "::ffff:127.0.0.0/104", "127.0.0.1"] {
        let report = json(
            &env.kawrap()
                .args(["check", "--pid", &pid(), "--port", &port, "--dst", dst, "--json"])
                .run()
                .code(0),
        );
        let locals: Vec<&str> =
            report["sockets"].as_array().unwrap().iter().filter_map(|s| s["local"].as_str()).collect();
        assert!(
            locals.contains(&client.local_addr().unwrap().to_string().as_str()),
            "--dst {dst}: {report:#}"
        );
    }
    env.kawrap()
        .args(["check", "--dst", "::ffff:127.0.0.1/200"])
        .run()
        .code(125)
        .stderr_contains("prefix length \"200\" is out of range 0..=128");
}

#[test]
fn children_needs_processes_to_start_from() {
    TestEnv::new()
        .kawrap()
        .args(["check", "--children"])
        .run()
        .code(125)
        .stderr_contains("--children: of which processes?")
        .stderr_contains("--pid PID, --unit UNIT or --cgroup DIR");
}

#[test]
fn a_thread_id_is_not_a_process() {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tx.send(unsafe { libc::gettid() }).unwrap();
        let _ = stop_rx.recv();
    });
    let tid = rx.recv().unwrap().to_string();
    let env = TestEnv::new();
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap().trim_end().to_owned();
    let expected = format!("kawrap: {tid} is a thread of process {} ({comm}), not a process", pid());
    env.kawrap()
        .args(["check", "--pid", &tid])
        .run()
        .code(125)
        .stderr_contains(&expected)
        .stderr_contains(&format!("--pid {}", pid()));
    env.kawrap()
        .args(["attach", "--dry-run", &tid])
        .run()
        .code(125)
        .stderr_contains(&expected)
        .stderr_contains(&format!("kawrap attach {}", pid()));
    stop_tx.send(()).unwrap();
    thread.join().unwrap();
}

/// The TIMER column of `kawrap check` for the socket whose local port is `port`.
fn kawrap_timer(port: u16) -> String {
    let out = TestEnv::new().kawrap().args(["check", "--pid", &pid()]).run().code(0);
    let text = out.stdout();
    let row = text
        .lines()
        .find(|l| l.split_whitespace().nth(1).is_some_and(|local| local.ends_with(&format!(":{port}"))))
        .unwrap_or_else(|| panic!("no row for :{port}:\n{text}"))
        .to_owned();
    row.split_whitespace().find(|w| w.starts_with("keepalive,")).unwrap_or_else(|| panic!("{row}")).to_owned()
}

/// `timer:(keepalive,…,0)` as `ss -tno` prints it for the socket from `port`.
fn ss_timer(port: u16, peer: u16) -> String {
    let filter = format!("( sport = :{port} and dport = :{peer} )");
    let out = Command::new("ss").args(["-tnoH", "state", "established", &filter]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let timer = text.split("timer:(").nth(1).unwrap_or_else(|| panic!("{text}"));
    let timer = timer.split(')').next().unwrap();
    timer.rsplit_once(',').unwrap().0.to_owned()
}

#[test]
fn timers_read_like_ss() {
    if !skip_unless(have("ss"), "needs ss (iproute2)") {
        return;
    }
    let (_listener, long, _a) = connected_pair();
    let (_listener2, short, _b) = connected_pair();
    let set = |socket: &TcpStream, idle| {
        SockRef::from(socket)
            .set_tcp_keepalive(&TcpKeepalive::new().with_time(Duration::from_secs(idle)))
            .unwrap();
    };
    // 11 min 40 s: ss leaves out the seconds once the minutes are above 9.
    set(&long, 700);
    // Under 10 s: seconds and milliseconds, written `8.688ms`.
    set(&short, 9);
    let port = |s: &TcpStream| s.local_addr().unwrap().port();
    let peer = |s: &TcpStream| s.peer_addr().unwrap().port();
    assert_eq!(ss_timer(port(&long), peer(&long)), "keepalive,11min");
    assert_eq!(kawrap_timer(port(&long)), "keepalive,11min");
    let theirs = ss_timer(port(&short), peer(&short));
    let ours = kawrap_timer(port(&short));
    for timer in [&theirs, &ours] {
        let value = timer
            .strip_prefix("keepalive,8.")
            .and_then(|t| t.strip_suffix("ms"))
            .unwrap_or_else(|| panic!("{timer}"));
        assert!(value.len() == 3 && value.chars().all(|c| c.is_ascii_digit()), "ss {theirs}, kawrap {ours}");
    }
}
