//! A peer that vanishes without a word is detected on time under kawrap.
//!
//! Each scenario gets its own pair of network namespaces (client ↔ server
//! over a veth); "the server vanishes" is an nftables rule in the server's
//! namespace that drops every packet to and from the client (see
//! `kawrap_integration::netns`). The clock starts when that rule is in place
//! and stops when the client process exits with the kernel's error.
//!
//! The control runs (no kawrap, or a profile without TCP_USER_TIMEOUT) run
//! side by side with the wrapped ones inside the same test, in their own
//! namespaces, so the long "still blocked after 20 s" waits overlap instead
//! of adding up.
use std::io::Read;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use kawrap_integration::netns::{self, NetnsPair, SERVER_ADDR};
use kawrap_integration::process::{KillOnDrop, expect_line, spawn_with_lines};
use kawrap_integration::servers::{MariaDb, Postgres, mariadb_missing, postgres_missing};
use kawrap_integration::ss::{self, SsLine};
use kawrap_integration::{kawrap_bin, poll, skip_unless};

/// The test server's port (each scenario has its own namespaces, so all share it).
const PORT: u16 = 7000;
/// Allowed deviation from the expected detection time.
const SLACK: Duration = Duration::from_millis(1500);
/// 2/1/3: idle 2 s, then 3 unanswered probes 1 s apart.
const DETECT_2_1_3: Duration = Duration::from_secs(5);

/// True when the namespaced tests can run here (root, `ip`, `nft`).
fn can_run() -> bool {
    let reason = netns::unavailable_reason();
    !skip_unless(reason.is_none(), reason.as_deref().unwrap_or_default())
}

/// The established sockets to `port` in `ns`, as `ss -tnoH` shows them there.
fn sockets_in(ns: &netns::Namespace, port: u16) -> Vec<SsLine> {
    let out = ns
        .command("ss")
        .args(["-tnoH", "state", "established", &format!("( dport = :{port} )")])
        .output()
        .expect("run ss in the client namespace");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(ss::parse_line).collect()
}

/// The Send-Q column: bytes the peer has not acknowledged.
fn send_q(line: &SsLine) -> u64 {
    let fields: Vec<&str> = line.raw.split_whitespace().collect();
    // With a state filter ss omits the State column.
    let at = if fields[0].parse::<u64>().is_ok() { 1 } else { 2 };
    fields[at].parse().unwrap_or_else(|_| panic!("no Send-Q in {:?}", line.raw))
}

/// How the client is run.
#[derive(Clone, Copy, Debug)]
enum Run {
    /// `kawrap --profile P -- blocking_client …`
    Kawrap(&'static str),
    /// No shim; the client sets `I/V/C[/UT]` on its socket itself (the
    /// control that proves the namespace and nftables mechanics).
    SelfSet(&'static str),
    /// No shim, no options: what users have today.
    Bare,
}

/// One client ↔ server scenario in its own namespaces.
struct Link {
    what: String,
    // Declared before `pair`: the processes die before their namespaces go.
    client: KillOnDrop,
    lines: Receiver<String>,
    _server: KillOnDrop,
    cut_at: Option<Instant>,
    pair: NetnsPair,
}

impl Link {
    /// Starts the server and the client, and waits until they are connected.
    fn start(run: Run, send: bool) -> Link {
        let what = format!("{run:?}{}", if send { " --send" } else { "" });
        let pair = NetnsPair::new().expect("create namespace pair");
        let addr = format!("{SERVER_ADDR}:{PORT}");
        let client_bin = env!("CARGO_BIN_EXE_blocking_client");

        let mut server = pair.server().command(client_bin);
        server.args(["--listen", &addr]);
        let (server, server_lines) = spawn_with_lines(server);
        expect_line(&server_lines, "listening", "server");

        let mut client = match run {
            Run::Kawrap(profile) => {
                let mut cmd = pair.client().command(kawrap_bin());
                cmd.args(["--profile", profile, "--", client_bin]);
                cmd
            }
            Run::SelfSet(_) | Run::Bare => pair.client().command(client_bin),
        };
        client.arg(&addr);
        if send {
            client.arg("--send");
        }
        if let Run::SelfSet(values) = run {
            client.args(["--keepalive", values]);
        }
        let (client, lines) = spawn_with_lines(client);
        expect_line(&lines, "connected", &what);
        Link { what, client, lines, _server: server, cut_at: None, pair }
    }

    /// The client's one established socket, read back from the kernel.
    fn socket(&self) -> SsLine {
        let sockets = sockets_in(self.pair.client(), PORT);
        assert_eq!(sockets.len(), 1, "{}: expected one socket to :{PORT}: {sockets:?}", self.what);
        sockets.into_iter().next().expect("one socket")
    }

    /// The server vanishes; the clock starts.
    fn cut(&mut self) {
        self.pair.cut().expect("install the drop rule");
        self.cut_at = Some(Instant::now());
    }

    fn since_cut(&self) -> Duration {
        self.cut_at.expect("cut first").elapsed()
    }

    /// Waits up to `limit` after the cut for the client to exit; returns
    /// the time from the cut and the client's last line.
    fn wait_exit(&mut self, limit: Duration) -> (Duration, String) {
        let left = limit.saturating_sub(self.since_cut());
        let status = self.client.wait_timeout(left);
        let elapsed = self.since_cut();
        let last = self.lines.try_iter().last().unwrap_or_default();
        match status {
            Some(_) => (elapsed, last),
            None => panic!("{}: still running {elapsed:.2?} after the peer vanished", self.what),
        }
    }

    /// Asserts the client is still blocked `after` the cut (sleeping until then).
    fn assert_still_blocked(&mut self, after: Duration) {
        std::thread::sleep(after.saturating_sub(self.since_cut()));
        if let Some(status) = self.client.try_wait() {
            let last = self.lines.try_iter().last().unwrap_or_default();
            panic!("{}: exited ({status}) {:.2?} after the cut: {last}", self.what, self.since_cut());
        }
    }
}

/// Asserts a detection time `elapsed` is `expected` ± SLACK and the error is ETIMEDOUT.
fn assert_detected(what: &str, (elapsed, last): &(Duration, String), expected: Duration) {
    eprintln!("{what}: exited {elapsed:.2?} after the peer vanished: {last}");
    assert!(last.contains(r#""errno":"ETIMEDOUT""#), "{what}: expected the kernel's ETIMEDOUT, got {last:?}");
    assert!(
        elapsed.abs_diff(expected) <= SLACK,
        "{what}: detected after {elapsed:.2?}, expected {expected:?} ± {SLACK:?}"
    );
}

#[test]
fn idle_connection_to_a_vanished_peer_fails_after_the_profile_time() {
    if !can_run() {
        return;
    }
    let mut wrapped = Link::start(Run::Kawrap("2/1/3"), false);
    let mut control = Link::start(Run::SelfSet("2/1/3"), false);
    let mut bare = Link::start(Run::Bare, false);

    // What the kernel holds before the cut: the shim armed a 2 s keepalive
    // timer on a program that never asked for one.
    for link in [&wrapped, &control] {
        let socket = link.socket();
        let timer = socket.keepalive();
        assert!(
            timer.is_some_and(|t| t <= Duration::from_secs(2)),
            "{}: expected a keepalive timer ≤ 2 s: {}",
            link.what,
            socket.raw
        );
    }
    assert_eq!(bare.socket().timer, None, "bare client has no timer");

    for link in [&mut wrapped, &mut control, &mut bare] {
        link.cut();
    }
    let control_result = control.wait_exit(DETECT_2_1_3 + SLACK);
    let wrapped_result = wrapped.wait_exit(DETECT_2_1_3 + SLACK);
    assert_detected("self-set 2/1/3 (harness control)", &control_result, DETECT_2_1_3);
    assert_detected("kawrap --profile 2/1/3", &wrapped_result, DETECT_2_1_3);

    // Without kawrap the same read() is still waiting (the kernel would
    // wait 2 h 11 min with keepalive on, forever with it off).
    bare.assert_still_blocked(Duration::from_secs(20));
    let socket = bare.socket();
    assert_eq!(socket.timer, None, "bare client after 20 s: {}", socket.raw);
    eprintln!("bare client: still blocked in read() 20 s after the peer vanished: {}", socket.raw);
}

#[test]
fn peer_vanishing_mid_transfer_is_caught_only_by_user_timeout() {
    if !can_run() {
        return;
    }
    // auto: UT = (2 + 1·3) · 1000 ms.
    let user_timeout = Duration::from_millis(5000);
    let mut with_ut = Link::start(Run::Kawrap("2/1/3/auto"), true);
    let mut without_ut = Link::start(Run::Kawrap("2/1/3"), true);
    for link in [&mut with_ut, &mut without_ut] {
        link.cut();
    }

    let result = with_ut.wait_exit(user_timeout + SLACK);
    assert_detected("kawrap --profile 2/1/3/auto, data in flight", &result, user_timeout);

    // Keepalive probes are never sent while data is unacknowledged: the
    // kernel keeps retransmitting (timer "on") for ~15 min (tcp_retries2).
    without_ut.assert_still_blocked(user_timeout + Duration::from_secs(5));
    let socket = without_ut.socket();
    assert!(send_q(&socket) > 0, "expected unacknowledged data: {}", socket.raw);
    assert!(
        matches!(&socket.timer, Some((kind, _)) if kind == "on"),
        "expected the retransmission timer, not keepalive: {}",
        socket.raw
    );
    eprintln!("kawrap 2/1/3 without UT, data in flight: still blocked after 10 s: {}", socket.raw);
}

#[test]
fn psql_waiting_on_a_query_fails_when_the_server_vanishes() {
    if !can_run() {
        return;
    }
    let missing = postgres_missing();
    if skip_unless(missing.is_none(), missing.as_deref().unwrap_or_default()) {
        return;
    }
    let pair = NetnsPair::new().expect("create namespace pair");
    let pg = Postgres::start_in(pair.server(), SERVER_ADDR, 5432);

    let query = "select pg_sleep(600)";
    let mut psql = pg.psql("postgres", query).kawrap_in(pair.client(), &["--profile", "2/1/3"]);
    psql.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut psql = KillOnDrop::spawn(&mut psql).expect("spawn psql under kawrap");

    // Cut only once the query is running on the server (so nothing is in
    // flight and keepalive is what must notice).
    let running =
        format!("select count(*) from pg_stat_activity where state = 'active' and query = '{query}'");
    let started = poll(Duration::from_secs(10), || (pg.sql(&running).ok()? == "1").then_some(()));
    assert!(started.is_some(), "psql's query never started: {}", pg.log_tail());
    // The server acknowledges the query with a delayed ACK (it has no reply
    // to piggyback it on); until then the retransmission timer is armed.
    // Once it arrives the socket must be idle with the profile's timer.
    let idle = poll(Duration::from_secs(2), || {
        let sockets = sockets_in(pair.client(), 5432);
        match sockets.as_slice() {
            [socket] if send_q(socket) == 0 && socket.keepalive().is_some() => Some(socket.clone()),
            _ => None,
        }
    });
    let sockets = sockets_in(pair.client(), 5432);
    let Some(socket) = idle else {
        panic!("psql's socket never became idle with a keepalive timer: {sockets:?}");
    };
    assert!(
        socket.keepalive().is_some_and(|t| t <= Duration::from_secs(2)),
        "psql's socket should carry the 2 s keepalive timer: {}",
        socket.raw
    );

    pair.cut().expect("install the drop rule");
    let cut_at = Instant::now();
    let status = psql.wait_timeout(DETECT_2_1_3 + SLACK);
    let elapsed = cut_at.elapsed();
    let Some(status) = status else {
        panic!("psql still waiting {elapsed:.2?} after the server vanished");
    };
    let mut stderr = String::new();
    let _ = psql.stderr.take().expect("piped stderr").read_to_string(&mut stderr);
    eprintln!("psql under kawrap 2/1/3: exited ({status}) {elapsed:.2?} after the server vanished: {stderr}");
    assert!(!status.success(), "psql should fail: {status}");
    assert!(stderr.contains("timed out"), "expected the kernel's ETIMEDOUT in psql's error: {stderr}");
    assert!(
        elapsed.abs_diff(DETECT_2_1_3) <= SLACK,
        "psql: detected after {elapsed:.2?}, expected {DETECT_2_1_3:?} ± {SLACK:?}"
    );
    drop(psql);
    drop(pg);
}

/// Rows in the dumped table: about 40 MB of dump, far more than the pipe,
/// socket buffers and server buffers hold together, so the dump is still
/// under way on the server when the link goes.
const DUMP_ROWS: u32 = 200_000;
/// Bytes of dump read before the cut: well inside the first table's rows,
/// where mysqldump only reads its socket (its query is long acknowledged).
const DUMP_UNDER_WAY: u64 = 1 << 20;
/// Allowed deviation for mysqldump: the last packet before the cut (when the
/// keepalive idle time starts) may precede the cut by a zero-window probe interval.
const DUMP_SLACK: Duration = Duration::from_secs(2);

/// `mysqldump --quick` of a generated database on MariaDB in its own
/// namespace pair, its stdout drained by a thread that pauses once the dump
/// is under way (so the cut lands mid-dump however fast the link is) and
/// then reads on to the end, so mysqldump is left blocked reading its socket.
struct Dump {
    what: &'static str,
    // Declared before `_db` and `pair`: the client dies before its server and namespaces go.
    client: KillOnDrop,
    received: Arc<AtomicU64>,
    under_way: Receiver<()>,
    resume: Sender<()>,
    cut_at: Option<Instant>,
    _db: MariaDb,
    pair: NetnsPair,
}

/// A namespace pair with MariaDB and the generated database in its server namespace.
fn mariadb_with_data() -> (NetnsPair, MariaDb) {
    let pair = NetnsPair::new().expect("create namespace pair");
    let db = MariaDb::start_in(pair.server(), SERVER_ADDR, 3306);
    db.create_generated_db("kawrap_gen", DUMP_ROWS);
    (pair, db)
}

impl Dump {
    /// Starts mysqldump against `db`, under `kawrap --profile 2/1/3` if `wrapped`.
    fn start(what: &'static str, wrapped: bool, (pair, db): (NetnsPair, MariaDb)) -> Dump {
        // --quick: rows go to stdout as they arrive rather than after the
        // whole table is in memory; either way the client only reads.
        let dump = db.client("mysqldump").args(["--quick", "--skip-dump-date", "--databases", "kawrap_gen"]);
        let mut cmd = if wrapped {
            dump.kawrap_in(pair.client(), &["--profile", "2/1/3"])
        } else {
            dump.plain_in(pair.client())
        };
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut client = KillOnDrop::spawn(&mut cmd).unwrap_or_else(|e| panic!("{what}: spawn: {e}"));
        let mut stdout = client.stdout.take().expect("piped stdout");
        let received = Arc::new(AtomicU64::new(0));
        let (under_way_tx, under_way) = mpsc::channel();
        let (resume, resume_rx) = mpsc::channel::<()>();
        let counter = Arc::clone(&received);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            let mut paused = false;
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                let total = counter.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                if !paused && total >= DUMP_UNDER_WAY {
                    paused = true;
                    let _ = under_way_tx.send(());
                    // Until the cut is in place (or the test is gone).
                    let _ = resume_rx.recv();
                }
            }
        });
        Dump { what, client, received, under_way, resume, cut_at: None, _db: db, pair }
    }

    /// Waits until the dump is under way (its reader paused), then cuts the
    /// link and lets the reader drain mysqldump's stdout again.
    fn cut_when_under_way(&mut self) {
        if self.under_way.recv_timeout(Duration::from_secs(30)).is_err() {
            let status = self.client.try_wait();
            // Killed first: reading the stderr of a live mysqldump would wait for it.
            let _ = self.client.kill();
            let stderr = self.stderr();
            panic!("{}: dump not under way ({status:?}): {stderr}", self.what);
        }
        self.pair.cut().expect("install the drop rule");
        self.cut_at = Some(Instant::now());
        self.resume.send(()).expect("the reader waits for the cut");
    }

    /// mysqldump's established sockets to the server, read back from the kernel.
    fn socket(&self) -> Vec<SsLine> {
        sockets_in(self.pair.client(), 3306)
    }

    /// Asserts mysqldump's one socket has nothing unacknowledged (so only
    /// keepalive can notice the silence) and a keepalive timer `timer_ok` accepts.
    fn assert_quiet_with_timer(&self, timer_ok: impl Fn(Duration) -> bool, wanted: &str) {
        let sockets = self.socket();
        let [socket] = sockets.as_slice() else {
            panic!("{}: expected one socket to :3306: {sockets:?}", self.what);
        };
        assert!(
            socket.keepalive().is_some_and(timer_ok),
            "{}: expected a keepalive timer of {wanted}: {}",
            self.what,
            socket.raw
        );
        assert_eq!(send_q(socket), 0, "{}: the client has nothing unacknowledged: {}", self.what, socket.raw);
    }

    fn since_cut(&self) -> Duration {
        self.cut_at.expect("cut first").elapsed()
    }

    /// What mysqldump printed on stderr (all of it once it has exited).
    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.client.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }
}

/// A keepalive timer still counting down the kernel's default 7200 s idle time.
fn kernel_default_timer(remaining: Duration) -> bool {
    remaining > Duration::from_secs(3600)
}

#[test]
fn mysqldump_mid_dump_fails_fast_when_the_server_vanishes() {
    if !can_run() {
        return;
    }
    let missing = mariadb_missing();
    if skip_unless(missing.is_none(), missing.as_deref().unwrap_or_default()) {
        return;
    }
    // The project's seed story: a long dump over a link that silently dies.
    // Both servers are ready before either dump starts, so neither reader
    // sits paused (its socket quiet) while the other server is set up.
    let (wrapped_site, bare_site) = (mariadb_with_data(), mariadb_with_data());
    let mut wrapped = Dump::start("mysqldump under kawrap --profile 2/1/3", true, wrapped_site);
    let mut bare = Dump::start("mysqldump without kawrap", false, bare_site);

    for dump in [&mut wrapped, &mut bare] {
        dump.cut_when_under_way();
    }
    // Checked after the cut so both cuts land together; the timers were set
    // before it (mysqldump sets SO_KEEPALIVE itself, with the kernel's 2 h
    // unless kawrap's profile replaces it) and nothing is unacknowledged.
    wrapped.assert_quiet_with_timer(|t| t <= Duration::from_secs(2), "≤ 2 s (the profile)");
    bare.assert_quiet_with_timer(kernel_default_timer, "the kernel's 2 h");

    let status = wrapped.client.wait_timeout(DETECT_2_1_3 + DUMP_SLACK);
    let elapsed = wrapped.since_cut();
    let Some(status) = status else {
        panic!("{}: still running {elapsed:.2?} after the server vanished", wrapped.what);
    };
    let stderr = wrapped.stderr();
    let received = wrapped.received.load(Ordering::SeqCst);
    eprintln!(
        "{}: exited ({status}) {elapsed:.2?} after the server vanished, {received} bytes dumped: {}",
        wrapped.what,
        stderr.trim()
    );
    assert!(!status.success(), "{}: should fail: {status}", wrapped.what);
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("lost connection") || lower.contains("timed out"),
        "{}: expected a connection error, got {stderr:?}",
        wrapped.what
    );
    assert!(
        elapsed.abs_diff(DETECT_2_1_3) <= DUMP_SLACK,
        "{}: detected after {elapsed:.2?}, expected {DETECT_2_1_3:?} ± {DUMP_SLACK:?}",
        wrapped.what
    );

    // Without kawrap mysqldump waits in read() for the kernel's 2 h 11 min.
    std::thread::sleep(Duration::from_secs(20).saturating_sub(bare.since_cut()));
    if let Some(status) = bare.client.try_wait() {
        let (since, stderr) = (bare.since_cut(), bare.stderr());
        panic!("{}: exited ({status}) {since:.2?} after the cut: {stderr}", bare.what);
    }
    let sockets = bare.socket();
    eprintln!(
        "{}: still running {:.2?} after the server vanished, {} bytes dumped: {sockets:?}",
        bare.what,
        bare.since_cut(),
        bare.received.load(Ordering::SeqCst)
    );
    assert!(
        matches!(sockets.as_slice(), [s] if s.keepalive().is_some_and(kernel_default_timer)),
        "{}: expected the socket still established with the kernel's 2 h timer: {sockets:?}",
        bare.what
    );
}
