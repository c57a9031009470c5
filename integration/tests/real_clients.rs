//! Real clients and servers under `kawrap`, checked from outside.
//!
//! Each test starts a throwaway server on loopback, runs a real client's
//! long operation once under `kawrap --profile 300/30/5` and once without,
//! and reads the client's established socket with `ss -tnoH` while it runs:
//! under kawrap the keepalive timer is armed and counts down from at most
//! 300 s; without it there is no timer, or the kernel default's 7200 s one.
//! Clients that choose their own keepalive (redis-cli 15 s, curl 60 s) keep
//! it under the default `respect` policy and get the profile under `force`.
//! The dump tests also prove kawrap changes nothing in what flows through
//! the socket: the dumps are byte-identical with and without it.
//!
//! Every observed `ss` line is printed (`--nocapture`) as `OBSERVED …`.
use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kawrap_integration::process::KillOnDrop;
use kawrap_integration::servers::{
    Client, MariaDb, Postgres, Redis, SlowHttp, Sshd, have_program, mariadb_missing, postgres_missing,
    python3, redis_missing, sshd_missing,
};
use kawrap_integration::skip_unless;
use kawrap_integration::ss::{self, SsLine};

/// The profile the tests apply, and its idle time.
const PROFILE: &str = "300/30/5";
const PROFILE_IDLE: Duration = Duration::from_secs(300);

/// A kernel-default keepalive timer counts down from 7200 s; anything above
/// this is "kawrap did not touch it".
const KERNEL_DEFAULT_FLOOR: Duration = Duration::from_secs(7000);

/// The longest a watched client may run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A dump client blocks on its full stdout pipe within moments of
/// starting, so its timer is there to see well before this.
const DUMP_WATCH_TIMEOUT: Duration = Duration::from_secs(20);

/// How often `ss` is sampled while a client runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Which end of the connections to `port` to look at.
#[derive(Clone, Copy, Debug)]
enum End {
    /// The client's socket (peer port = the server's port).
    Client(u16),
    /// The server's accepted socket (local port = the server's port).
    Server(u16),
}

fn established(end: End) -> Vec<SsLine> {
    match end {
        End::Client(port) => ss::established_to_port(port),
        End::Server(port) => ss::established_from_port(port),
    }
}

/// Everything `ss` showed for `end` while one client ran, and its output.
struct Watched {
    label: String,
    samples: Vec<SsLine>,
    output: Output,
}

impl Watched {
    fn keepalives(&self) -> impl Iterator<Item = (&SsLine, Duration)> {
        self.samples.iter().filter_map(|l| l.keepalive().map(|k| (l, k)))
    }

    fn describe(&self) -> String {
        let mut lines: Vec<&str> = self.samples.iter().map(|l| l.raw.as_str()).collect();
        lines.dedup();
        let shown = if lines.len() > 12 {
            [&lines[..6], &["…"], &lines[lines.len() - 5..]].concat()
        } else {
            lines
        };
        format!(
            "{}: {} ss samples:\n  {}\nexit: {}\nstdout: {}\nstderr: {}",
            self.label,
            self.samples.len(),
            shown.join("\n  "),
            self.output.status,
            String::from_utf8_lossy(&self.output.stdout[..self.output.stdout.len().min(2000)]),
            String::from_utf8_lossy(&self.output.stderr),
        )
    }

    /// Prints one representative line: the last one with a keepalive
    /// timer, else the last one seen.
    fn print_observed(&self) {
        let line = self.keepalives().last().map(|(l, _)| l).or(self.samples.last());
        match line {
            Some(line) => println!("OBSERVED {}: {}", self.label, line.raw),
            None => println!("OBSERVED {}: (no established socket seen)", self.label),
        }
    }

    fn assert_success(&self) {
        assert!(self.output.status.success(), "client failed\n{}", self.describe());
    }

    /// At least one sample had a keepalive timer, and every one was in `range`.
    fn assert_keepalive_within(&self, low: Duration, high: Duration) {
        assert!(self.keepalives().next().is_some(), "no keepalive timer seen\n{}", self.describe());
        for (line, remaining) in self.keepalives() {
            assert!(
                remaining > low && remaining <= high,
                "keepalive timer {remaining:?} not in ({low:?}, {high:?}]: {}\n{}",
                line.raw,
                self.describe()
            );
        }
    }

    /// The socket was seen, and never with a keepalive timer below the kernel default's.
    fn assert_untouched(&self) {
        assert!(!self.samples.is_empty(), "the client's socket was never seen\n{}", self.describe());
        for (line, remaining) in self.keepalives() {
            assert!(
                remaining > KERNEL_DEFAULT_FLOOR,
                "keepalive timer {remaining:?} without kawrap: {}\n{}",
                line.raw,
                self.describe()
            );
        }
    }
}

/// Runs `cmd` to completion, sampling `ss` for `end` until it exits.
fn watch(label: &str, mut cmd: Command, end: End) -> Watched {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut running = KillOnDrop::spawn(&mut cmd).unwrap_or_else(|e| panic!("{label}: spawn {cmd:?}: {e}"));
    let started = Instant::now();
    let mut samples = Vec::new();
    while running.try_wait().is_none() {
        assert!(started.elapsed() < CLIENT_TIMEOUT, "{label}: still running after {CLIENT_TIMEOUT:?}");
        samples.extend(established(end));
        std::thread::sleep(SAMPLE_EVERY);
    }
    let output = running.wait_with_output().expect("collect client output");
    Watched { label: label.to_string(), samples, output }
}

/// The `kawrap --profile 300/30/5` run and the plain run of `client`, with
/// the standard expectations; returns both for extra checks.
fn profile_applies_and_default_otherwise(name: &str, client: &Client, end: End) -> (Watched, Watched) {
    let wrapped = watch(
        &format!("{name} under kawrap --profile {PROFILE}"),
        client.kawrap(&["--profile", PROFILE]),
        end,
    );
    wrapped.print_observed();
    wrapped.assert_success();
    // The timer counts down from the profile's idle time; the operation
    // takes seconds, so anything far below 300 s would be someone else's value.
    wrapped.assert_keepalive_within(PROFILE_IDLE - Duration::from_secs(60), PROFILE_IDLE);

    let plain = watch(&format!("{name} without kawrap"), client.plain(), end);
    plain.print_observed();
    plain.assert_success();
    plain.assert_untouched();
    (wrapped, plain)
}

/// Tests that need root and a server package: skip (fail under CI) when one is missing.
fn missing(reason: Option<String>) -> bool {
    match reason {
        Some(reason) => skip_unless(false, &reason),
        None => false,
    }
}

#[test]
fn psql_long_query() {
    if missing(postgres_missing()) {
        return;
    }
    let pg = Postgres::start();
    let psql = pg.psql("postgres", "select pg_sleep(5)");
    let (_, plain) = profile_applies_and_default_otherwise("psql", &psql, End::Client(pg.port));
    // libpq turns SO_KEEPALIVE on itself, with the kernel's timings.
    assert!(plain.keepalives().next().is_some(), "libpq enables keepalive itself\n{}", plain.describe());
}

#[test]
fn mariadb_long_query() {
    if missing(mariadb_missing()) {
        return;
    }
    let db = MariaDb::start();
    let client = db.client("mariadb").args(["-e", "select sleep(5)"]);
    let (_, plain) = profile_applies_and_default_otherwise("mariadb", &client, End::Client(db.port));
    // libmariadb turns SO_KEEPALIVE on itself, with the kernel's timings.
    assert!(plain.keepalives().next().is_some(), "libmariadb enables keepalive itself\n{}", plain.describe());
}

#[test]
fn ssh_remote_sleep() {
    if missing(sshd_missing()) {
        return;
    }
    let sshd = Sshd::start();
    let client = sshd.ssh(&["sleep", "5"]);
    let (_, plain) = profile_applies_and_default_otherwise("ssh", &client, End::Client(sshd.port));
    // OpenSSH's TCPKeepAlive (default yes) enables keepalive with the kernel's timings.
    assert!(plain.keepalives().next().is_some(), "ssh enables keepalive itself\n{}", plain.describe());
}

#[test]
fn python_socket_recv_timeout() {
    let python = python3();
    if skip_unless(python.is_file(), "python3 missing (apt-get install python3)") {
        return;
    }
    let http = SlowHttp::start(Duration::from_secs(30));
    let script = "import socket, sys\n\
                  s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
                  s.settimeout(5)\n\
                  try:\n    s.recv(1)\nexcept socket.timeout:\n    print('timed out')\n";
    let client = Client::new(&python).args(["-c", script, &http.port.to_string()]);
    let (wrapped, plain) = profile_applies_and_default_otherwise("python3", &client, End::Client(http.port));
    for run in [&wrapped, &plain] {
        assert_eq!(String::from_utf8_lossy(&run.output.stdout), "timed out\n", "{}", run.describe());
    }
    // Python leaves keepalive off: no timer at all without kawrap.
    assert!(plain.keepalives().next().is_none(), "{}", plain.describe());
}

#[test]
fn python_server_accepted_socket() {
    let python = python3();
    if skip_unless(python.is_file(), "python3 missing (apt-get install python3)") {
        return;
    }
    // The server binds port 0 itself and prints the port: no race for a free port.
    let script = "import socket\n\
                  s = socket.socket()\n\
                  s.bind(('127.0.0.1', 0))\n\
                  s.listen(1)\n\
                  print(s.getsockname()[1], flush=True)\n\
                  c, _ = s.accept()\n\
                  c.settimeout(5)\n\
                  try:\n    c.recv(1)\nexcept socket.timeout:\n    print('timed out', flush=True)\n";
    let server = Client::new(&python).args(["-c", script]);
    let wrapped =
        serve_one("python3 server under kawrap --profile 300/30/5", server.kawrap(&["--profile", PROFILE]));
    wrapped.print_observed();
    wrapped.assert_success();
    wrapped.assert_keepalive_within(PROFILE_IDLE - Duration::from_secs(60), PROFILE_IDLE);

    let plain = serve_one("python3 server without kawrap", server.plain());
    plain.print_observed();
    plain.assert_success();
    plain.assert_untouched();
    assert!(plain.keepalives().next().is_none(), "{}", plain.describe());
}

/// Starts a one-connection server that prints its port, connects to it
/// with a plain socket (no keepalive), and samples the server's accepted socket.
fn serve_one(label: &str, mut cmd: Command) -> Watched {
    use std::io::BufRead;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut running = KillOnDrop::spawn(&mut cmd).unwrap_or_else(|e| panic!("{label}: spawn: {e}"));
    let mut stdout = std::io::BufReader::new(running.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read the server's port");
    let port: u16 = first.trim().parse().unwrap_or_else(|_| panic!("{label}: printed {first:?}, not a port"));
    let _client = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    let end = End::Server(port);
    let started = Instant::now();
    let mut samples = Vec::new();
    while running.try_wait().is_none() {
        assert!(started.elapsed() < CLIENT_TIMEOUT, "{label}: still running after {CLIENT_TIMEOUT:?}");
        samples.extend(established(end));
        std::thread::sleep(SAMPLE_EVERY);
    }
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("read the server's output");
    let mut output = running.wait_with_output().expect("collect server output");
    output.stdout = rest;
    Watched { label: label.to_string(), samples, output }
}

#[test]
fn redis_cli_blpop_keeps_its_own_keepalive() {
    if missing(redis_missing()) {
        return;
    }
    let redis = Redis::start();
    let end = End::Client(redis.port);
    let client = redis.cli(&["BLPOP", "kawrap-test-key", "3"]);
    // redis-cli sets TCP_KEEPIDLE 15 s itself (REDIS_CLI_KEEPALIVE_INTERVAL).
    let own = Duration::from_secs(15);

    let plain = watch("redis-cli without kawrap", client.plain(), end);
    plain.print_observed();
    plain.assert_success();
    plain.assert_keepalive_within(Duration::ZERO, own);

    let respect = watch(
        "redis-cli under kawrap --profile 300/30/5 (respect)",
        client.kawrap(&["--profile", PROFILE]),
        end,
    );
    respect.print_observed();
    respect.assert_success();
    assert_settles_at_own(&respect, own, PROFILE_IDLE);

    let forced = watch(
        "redis-cli under kawrap --profile 300/30/5 --policy force",
        client.kawrap(&["--profile", PROFILE, "--policy", "force"]),
        end,
    );
    forced.print_observed();
    forced.assert_success();
    forced.assert_keepalive_within(PROFILE_IDLE - Duration::from_secs(60), PROFILE_IDLE);
}

/// Under `respect`, the program's own setting stands once it has made it:
/// the timer may show the profile's value only in the instant between
/// connect and the program's own setsockopt, and at most the profile's idle.
fn assert_settles_at_own(run: &Watched, own: Duration, profile_idle: Duration) {
    let timers: Vec<(&SsLine, Duration)> = run.keepalives().collect();
    let first_own = timers
        .iter()
        .position(|(_, k)| *k <= own)
        .unwrap_or_else(|| panic!("the program's own keepalive ≤ {own:?} never showed\n{}", run.describe()));
    for (line, remaining) in &timers[..first_own] {
        assert!(*remaining <= profile_idle, "{}\n{}", line.raw, run.describe());
    }
    for (line, remaining) in &timers[first_own..] {
        assert!(*remaining <= own, "own keepalive replaced: {}\n{}", line.raw, run.describe());
    }
}

#[test]
fn curl_slow_response_keeps_its_own_keepalive() {
    if skip_unless(have_program("curl"), "curl missing (apt-get install curl)") {
        return;
    }
    let http = SlowHttp::start(Duration::from_secs(3));
    let end = End::Client(http.port);
    let client = http.curl();
    // curl sets TCP_KEEPIDLE/KEEPINTVL 60 s itself (--keepalive-time default).
    let own = Duration::from_secs(60);
    let check_body = |run: &Watched| {
        assert_eq!(String::from_utf8_lossy(&run.output.stdout), SlowHttp::BODY, "{}", run.describe());
    };

    let plain = watch("curl without kawrap", client.plain(), end);
    plain.print_observed();
    plain.assert_success();
    check_body(&plain);
    plain.assert_keepalive_within(Duration::ZERO, own);

    let respect = watch(
        "curl under kawrap --profile 100/10/5 (respect)",
        client.kawrap(&["--profile", "100/10/5"]),
        end,
    );
    respect.print_observed();
    respect.assert_success();
    check_body(&respect);
    assert_settles_at_own(&respect, own, Duration::from_secs(100));

    let forced = watch(
        "curl under kawrap --profile 100/10/5 --policy force",
        client.kawrap(&["--profile", "100/10/5", "--policy", "force"]),
        end,
    );
    forced.print_observed();
    forced.assert_success();
    check_body(&forced);
    forced.assert_keepalive_within(own, Duration::from_secs(100));
}

#[test]
fn redis_server_accepted_sockets_respect_and_force() {
    if missing(redis_missing()) {
        return;
    }
    // redis-server sets its own keepalive (tcp-keepalive 300 s) on every
    // accepted socket: `respect` keeps it, `force` gives the profile's 100 s.
    let own = Duration::from_secs(300);
    let profile = "100/10/5";
    for policy in ["respect", "force"] {
        let kawrap = kawrap_integration::kawrap_bin();
        let wrap = [
            kawrap.as_os_str(),
            "--profile".as_ref(),
            profile.as_ref(),
            "--policy".as_ref(),
            policy.as_ref(),
            "--".as_ref(),
        ];
        let redis = Redis::start_with(&wrap);
        let client = redis.cli(&["BLPOP", "kawrap-test-key", "2"]);
        let run = watch(
            &format!("redis-server under kawrap --profile {profile} --policy {policy}"),
            client.plain(),
            End::Server(redis.port),
        );
        run.print_observed();
        run.assert_success();
        if policy == "respect" {
            // For an instant between accept and redis's own setsockopt the
            // socket carries the listener's 100 s; then redis's 300 s stands.
            run.assert_keepalive_within(Duration::ZERO, own);
            let last = run.keepalives().last().map(|(_, remaining)| remaining);
            assert!(last.is_some_and(|k| k > Duration::from_secs(100)), "{}", run.describe());
        } else {
            run.assert_keepalive_within(Duration::from_secs(40), Duration::from_secs(100));
        }
    }
}

/// Runs a dump client with its stdout held unread until `ss` shows a
/// keepalive timer satisfying `wanted` (the client blocks on the full pipe,
/// so its socket stays established and idle), then reads the whole dump.
fn dump_while_watching(
    label: &str,
    mut cmd: Command,
    port: u16,
    wanted: impl Fn(Duration) -> bool,
) -> (Vec<u8>, SsLine) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut running = KillOnDrop::spawn(&mut cmd).unwrap_or_else(|e| panic!("{label}: spawn: {e}"));
    let started = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    let line = loop {
        let lines = ss::established_to_port(port);
        if let Some(line) = lines.iter().find(|l| l.keepalive().is_some_and(&wanted)) {
            break line.clone();
        }
        seen.extend(lines.into_iter().map(|l| l.raw));
        seen.dedup();
        if running.try_wait().is_some() || started.elapsed() > DUMP_WATCH_TIMEOUT {
            let exited = running.try_wait().is_some();
            let _ = running.kill();
            let stderr = running.stderr.take().map(|mut e| {
                let mut text = String::new();
                let _ = e.read_to_string(&mut text);
                text
            });
            panic!(
                "{label}: no wanted keepalive timer before the client {}; ss showed:\n  {}\nstderr: {}",
                if exited { "exited" } else { "timed out" },
                seen.join("\n  "),
                stderr.unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("OBSERVED {label}: {}", line.raw);
    let mut dump = Vec::new();
    running.stdout.take().expect("piped stdout").read_to_end(&mut dump).expect("read the dump");
    let output = running.wait_with_output().expect("wait for the dump client");
    assert!(
        output.status.success(),
        "{label} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    (dump, line)
}

/// Lines a dump stamps with the time it ran, or (pg_dump ≥ 15.14's
/// `\restrict KEY`) with a key drawn at random for each run.
const VARYING_LINES: [&[u8]; 5] =
    [b"-- Dump completed", b"-- Started on", b"-- Completed on", b"\\restrict ", b"\\unrestrict "];

/// The dump without the lines that differ from run to run by design.
fn without_varying_lines(dump: &[u8]) -> Vec<u8> {
    dump.split_inclusive(|b| *b == b'\n')
        .filter(|line| !VARYING_LINES.iter().any(|prefix| line.starts_with(prefix)))
        .flatten()
        .copied()
        .collect()
}

fn assert_same_dump(name: &str, wrapped: &[u8], plain: &[u8], min_len: usize) {
    assert!(plain.len() >= min_len, "{name}: dump only {} bytes, expected ≥ {min_len}", plain.len());
    let (wrapped, plain) = (without_varying_lines(wrapped), without_varying_lines(plain));
    if wrapped != plain {
        let at =
            wrapped.iter().zip(&plain).position(|(a, b)| a != b).unwrap_or(wrapped.len().min(plain.len()));
        panic!(
            "{name}: dumps differ at byte {at} (lengths {} and {}): {:?} vs {:?}",
            wrapped.len(),
            plain.len(),
            String::from_utf8_lossy(&wrapped[at..(at + 80).min(wrapped.len())]),
            String::from_utf8_lossy(&plain[at..(at + 80).min(plain.len())]),
        );
    }
    println!("OBSERVED {name}: identical dumps with and without kawrap, {} bytes", plain.len());
}

#[test]
fn mysqldump_identical_and_keepalive_shortened() {
    if missing(mariadb_missing()) {
        return;
    }
    let db = MariaDb::start();
    db.create_generated_db("kawrap_gen", 200_000);
    let client = db.client("mysqldump").args([
        "--skip-dump-date",
        "--single-transaction",
        "--databases",
        "kawrap_gen",
    ]);
    let low = PROFILE_IDLE - Duration::from_secs(60);
    let (wrapped, line) = dump_while_watching(
        "mysqldump under kawrap --profile 300/30/5",
        client.kawrap(&["--profile", PROFILE]),
        db.port,
        |k| k > Duration::ZERO && k <= PROFILE_IDLE,
    );
    assert!(line.keepalive().is_some_and(|k| k > low), "{}", line.raw);
    // The seed case: mysqldump sets SO_KEEPALIVE=1 itself, with the kernel's 7200 s.
    let (plain, _) = dump_while_watching("mysqldump without kawrap", client.plain(), db.port, |k| {
        k > KERNEL_DEFAULT_FLOOR
    });
    assert_same_dump("mysqldump", &wrapped, &plain, 20 << 20);
}

#[test]
fn pg_dump_identical_and_keepalive_shortened() {
    if missing(postgres_missing()) {
        return;
    }
    let pg = Postgres::start();
    pg.create_generated_db("kawrap_gen", 100_000);
    let client = pg.client("pg_dump", "kawrap_gen");
    let (wrapped, _) = dump_while_watching(
        "pg_dump under kawrap --profile 300/30/5",
        client.kawrap(&["--profile", PROFILE]),
        pg.port,
        |k| k > PROFILE_IDLE - Duration::from_secs(60) && k <= PROFILE_IDLE,
    );
    let (plain, _) =
        dump_while_watching("pg_dump without kawrap", client.plain(), pg.port, |k| k > KERNEL_DEFAULT_FLOOR);
    assert_same_dump("pg_dump", &wrapped, &plain, 10 << 20);
}
