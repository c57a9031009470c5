//! Throwaway real servers on loopback, started by the test that needs them.
//!
//! Each server lives in its own temporary directory, listens on a free port
//! of 127.0.0.1, is waited for by polling its own readiness signal (never by
//! sleeping), and is stopped and its directory removed on drop — also when
//! the test panics. The server runs in its own process group, so the drop
//! also reaches the processes it forked (PostgreSQL's backends, sshd's
//! per-connection children), and with `PR_SET_PDEATHSIG` so that a test
//! binary killed before its destructors run does not leave servers behind
//! (that signal follows the thread that started the server: a server must
//! not outlive the thread that called `start`).
//!
//! Every server hands out [`Client`]s: the program its users run (`psql`,
//! `mysqldump`, `ssh`…) with the arguments and environment to reach it,
//! runnable plainly or under the `kawrap` launcher.
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tempfile::TempDir;

use crate::netns::Namespace;
use crate::poll;

/// Where Debian's PostgreSQL 15 server binaries are.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How many fresh ports a server start tries: a port found free can be
/// taken by another test's connection before the server binds it.
const START_ATTEMPTS: usize = 3;

/// A free TCP port on 127.0.0.1 (the kernel's choice for a bind to port 0).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// True if `program` is an executable file, given as a path or found in `PATH`.
pub fn have_program(program: &str) -> bool {
    find_program(program).is_some()
}

/// `program` as a path: itself if it contains a `/`, else its first match in `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let executable =
        |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        let path = PathBuf::from(program);
        return executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| executable(p))
}

/// The system's Python 3, not a version manager's shim script in `PATH`
/// (the distribution's interpreter is what the tests are about).
pub fn python3() -> PathBuf {
    let system = PathBuf::from("/usr/bin/python3");
    if system.is_file() { system } else { find_program("python3").unwrap_or_else(|| "python3".into()) }
}

/// A user's uid and gid from the password database.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let cname = CString::new(name).ok()?;
    // SAFETY: getpwnam returns NULL or a pointer to a static record, read at once;
    // the tests do not call getpw* concurrently with a meaning that could race.
    let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: pw is non-NULL and points at a valid passwd record.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

/// A client program with the arguments and environment that reach one server.
#[derive(Clone, Debug)]
pub struct Client {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Client {
    /// `program`, by name (looked up in `PATH`) or path.
    pub fn new(program: impl AsRef<OsStr>) -> Client {
        Client { program: program.as_ref().to_owned(), args: Vec::new(), env: Vec::new() }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Client {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Client
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the client.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Client {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The client run directly, with no preloaded library and no `KAWRAP_*`
    /// variable inherited from the test's environment.
    pub fn plain(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        self.apply_env(&mut cmd);
        cmd
    }

    /// [`Client::plain`] inside network namespace `ns`.
    pub fn plain_in(&self, ns: &Namespace) -> Command {
        let mut cmd = ns.command(&self.program);
        cmd.args(&self.args);
        self.apply_env(&mut cmd);
        cmd
    }

    /// The client run as `kawrap OPTIONS… -- PROGRAM ARGS…` with the release launcher.
    pub fn kawrap(&self, options: &[&str]) -> Command {
        self.under_kawrap(Command::new(crate::kawrap_bin()), options)
    }

    /// [`Client::kawrap`] inside network namespace `ns`.
    pub fn kawrap_in(&self, ns: &Namespace, options: &[&str]) -> Command {
        self.under_kawrap(ns.command(crate::kawrap_bin()), options)
    }

    fn under_kawrap(&self, mut kawrap: Command, options: &[&str]) -> Command {
        kawrap.args(options).arg("--").arg(&self.program).args(&self.args);
        self.apply_env(&mut kawrap);
        kawrap
    }

    /// The command line, for messages.
    pub fn describe(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn apply_env(&self, cmd: &mut Command) {
        crate::without_kawrap_env(cmd).stdin(Stdio::null());
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
    }
}

/// A server process in its own process group, logging to a file; on drop
/// it gets its stop signal, then the whole group SIGKILL if it lingers.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
    stop_signal: i32,
}

impl Daemon {
    fn spawn(name: &'static str, mut cmd: Command, log: &Path, stop_signal: i32) -> Result<Daemon, String> {
        let out = fs::File::create(log).map_err(|e| format!("{name}: create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("{name}: {e}"))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("{name}: spawn {cmd:?}: {e}"))?;
        Ok(Daemon { name, child, log: log.to_path_buf(), stop_signal })
    }

    /// An error if the server has exited, with its log.
    fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited ({status}):\n{}", self.name, self.log_tail())),
            Err(e) => Err(format!("{}: wait: {e}", self.name)),
        }
    }

    /// Polls `ready` until it holds, failing early if the server exits.
    fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let mut died = None;
        let ok = poll(READY_TIMEOUT, || {
            if let Err(e) = self.check_alive() {
                died = Some(e);
                return Some(false);
            }
            ready().then_some(true)
        });
        match (ok, died) {
            (_, Some(e)) => Err(e),
            (Some(true), None) => Ok(()),
            _ => Err(format!("{} not ready after {READY_TIMEOUT:?}:\n{}", self.name, self.log_tail())),
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Has the leader exited? Checked without reaping it, so its pid (the
    /// process group id) cannot be reused before the group is killed.
    fn leader_exited(&self) -> bool {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with WNOWAIT only inspects it.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                self.child.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid to read after a successful waitid.
        rc != 0 || unsafe { info.si_pid() } != 0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child and its process group.
        unsafe { libc::kill(pid, self.stop_signal) };
        if poll(Duration::from_secs(10), || self.leader_exited().then_some(())).is_none() {
            eprintln!("{} ignored signal {}; killing its process group", self.name, self.stop_signal);
        }
        // SAFETY: the leader is not reaped yet, so `pid` still names its group.
        unsafe { libc::killpg(pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// A server's private directory (see [`crate::temp_dir`]).
fn temp_dir(label: &str) -> Result<TempDir, String> {
    crate::temp_dir_in(&std::env::temp_dir(), label).map_err(|e| format!("temp dir: {e}"))
}

/// Tries `start` with up to [`START_ATTEMPTS`] fresh ports.
fn start_on_free_port<T>(name: &str, mut start: impl FnMut(u16) -> Result<T, String>) -> T {
    let mut errors = Vec::new();
    for _ in 0..START_ATTEMPTS {
        match start(free_port()) {
            Ok(server) => return server,
            Err(e) => errors.push(e),
        }
    }
    panic!("could not start {name}:\n{}", errors.join("\n---\n"));
}

fn run_checked(what: &str, cmd: &mut Command) -> Result<Output, String> {
    let output = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{what}: spawn {cmd:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output)
}

/// Why PostgreSQL 15 cannot be started here, if it cannot.
pub fn postgres_missing() -> Option<String> {
    if !crate::is_root() {
        return Some("PostgreSQL tests start the server as user postgres: run as root".into());
    }
    for bin in ["initdb", "postgres"] {
        if !Path::new(PG_BIN).join(bin).is_file() {
            return Some(format!("{PG_BIN}/{bin} missing (apt-get install postgresql-15)"));
        }
    }
    for bin in ["psql", "pg_dump"] {
        if !have_program(bin) {
            return Some(format!("{bin} missing (apt-get install postgresql-client-15)"));
        }
    }
    if user_ids("postgres").is_none() {
        return Some("no user `postgres` (installed with postgresql)".into());
    }
    None
}

/// A PostgreSQL 15 cluster run as user `postgres`; TCP logins authenticate
/// user `postgres` by password (scram-sha-256), from loopback and from the
/// subnets of the server's namespace (`samenet`).
pub struct Postgres {
    daemon: Daemon,
    /// The address the server listens on.
    pub host: Ipv4Addr,
    /// The TCP port.
    pub port: u16,
    password: String,
    dir: TempDir,
}

impl Postgres {
    /// initdb + postgres on a free port of 127.0.0.1; panics (with the server's log) if it cannot start.
    pub fn start() -> Postgres {
        start_on_free_port("PostgreSQL", |port| Postgres::start_on(None, Ipv4Addr::LOCALHOST, port))
    }

    /// initdb + postgres listening on `host:port` inside network namespace `ns`
    /// (where every port is free); panics (with the server's log) if it cannot start.
    pub fn start_in(ns: &Namespace, host: Ipv4Addr, port: u16) -> Postgres {
        Postgres::start_on(Some(ns), host, port)
            .unwrap_or_else(|e| panic!("could not start PostgreSQL:\n{e}"))
    }

    fn start_on(ns: Option<&Namespace>, host: Ipv4Addr, port: u16) -> Result<Postgres, String> {
        let (uid, gid) = user_ids("postgres").ok_or("no user postgres")?;
        let dir = temp_dir("pg")?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        let password = format!("kawrap-{}", std::process::id());
        let pwfile = dir.path().join("pwfile");
        fs::write(&pwfile, &password).map_err(|e| format!("write {}: {e}", pwfile.display()))?;
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        let as_postgres = |mut cmd: Command| {
            cmd.current_dir(dir.path()).env("LC_ALL", "C").env_remove("LD_PRELOAD");
            cmd
        };
        let mut initdb = Command::new(Path::new(PG_BIN).join("initdb"));
        initdb.uid(uid).gid(gid);
        run_checked(
            "initdb",
            as_postgres(initdb)
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", pwfile.display()))
                .args(["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]),
        )?;
        // initdb allows TCP logins from loopback only; a server in a
        // namespace is reached from the other end of its veth.
        let hba = data.join("pg_hba.conf");
        let mut rules = fs::read_to_string(&hba).map_err(|e| format!("read {}: {e}", hba.display()))?;
        rules.push_str("host all all samenet scram-sha-256\n");
        fs::write(&hba, rules).map_err(|e| format!("write {}: {e}", hba.display()))?;
        let postgres = Path::new(PG_BIN).join("postgres");
        let server = match ns {
            None => {
                let mut cmd = Command::new(postgres);
                cmd.uid(uid).gid(gid);
                cmd
            }
            // `ip netns exec` needs root, so the user changes after it, by
            // setpriv (which execs: postgres stays the process Daemon
            // signals; its PR_SET_PDEATHSIG does not survive the change).
            Some(ns) => {
                let mut cmd = ns.command("setpriv");
                cmd.args([&format!("--reuid={uid}"), &format!("--regid={gid}"), "--clear-groups", "--"]);
                cmd.arg(postgres);
                cmd
            }
        };
        let mut server = as_postgres(server);
        server.arg("-D").arg(&data).args(["-p", &port.to_string(), "-k"]).arg(dir.path()).args([
            "-c",
            &format!("listen_addresses={host}"),
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "logging_collector=off",
        ]);
        let mut daemon = Daemon::spawn("postgres", server, &dir.path().join("server.log"), libc::SIGINT)?;
        // postmaster.pid's 8th line is the server's state; "ready" once it accepts connections.
        let pidfile = data.join("postmaster.pid");
        daemon.wait_ready(|| {
            fs::read_to_string(&pidfile).is_ok_and(|t| t.lines().nth(7).is_some_and(|s| s.trim() == "ready"))
        })?;
        let pg = Postgres { daemon, host, port, password, dir };
        let check = pg.psql("postgres", "select 1");
        let mut check = match ns {
            None => check.plain(),
            Some(ns) => check.plain_in(ns),
        };
        run_checked("psql select 1", &mut check)?;
        Ok(pg)
    }

    /// `program` (`psql`, `pg_dump`…) set up through libpq's environment to
    /// log in to database `dbname` over TCP with a password.
    pub fn client(&self, program: &str, dbname: &str) -> Client {
        Client::new(program)
            .env("PGHOST", self.host.to_string())
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", &self.password)
            .env("PGDATABASE", dbname)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGSSLMODE", "disable")
            .env("PGAPPNAME", "kawrap-test")
    }

    /// `psql -X -v ON_ERROR_STOP=1 -At -c SQL` in database `dbname`.
    pub fn psql(&self, dbname: &str, sql: &str) -> Client {
        self.client("psql", dbname).args(["-X", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
    }

    /// Creates database `name` with `rows` rows of deterministic generated data.
    pub fn create_generated_db(&self, name: &str, rows: u32) {
        let create = format!("create database {name}");
        if let Err(e) = run_checked("create database", &mut self.psql("postgres", &create).plain()) {
            panic!("{e}");
        }
        let fill = format!(
            "create table items (id integer primary key, name text not null, body text, price numeric(12,2));
             insert into items select g, md5(g::text), repeat(md5((g * 7)::text), 4), (g % 100000) / 7.0
               from generate_series(1, {rows}) g;
             create table notes as select g as id, 'note ' || g as text from generate_series(1, 1000) g;"
        );
        if let Err(e) = run_checked("generate data", &mut self.psql(name, &fill).plain()) {
            panic!("{e}");
        }
    }

    /// Runs `query` as `postgres` over the server's unix socket, which no
    /// network cut reaches; returns psql's unaligned output.
    pub fn sql(&self, query: &str) -> Result<String, String> {
        let mut psql = Command::new("psql");
        psql.args(["-X", "-At", "-U", "postgres", "-d", "postgres", "-p", &self.port.to_string(), "-h"])
            .arg(self.dir.path())
            .args(["-c", query])
            .env_remove("LD_PRELOAD");
        let output = run_checked("psql (unix socket)", &mut psql)?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// The end of the server's log, for messages.
    pub fn log_tail(&self) -> String {
        self.daemon.log_tail()
    }
}

/// Why MariaDB cannot be started here, if it cannot.
pub fn mariadb_missing() -> Option<String> {
    if !crate::is_root() {
        return Some("MariaDB tests run mariadbd --user=root: run as root".into());
    }
    for bin in ["mariadb-install-db", "mariadbd", "mariadb", "mysqldump"] {
        if !have_program(bin) {
            return Some(format!("{bin} missing (apt-get install mariadb-server mariadb-client)"));
        }
    }
    None
}

/// A MariaDB server with user `kawrap` (password login over TCP) and `root`
/// on the server's unix socket (which no network cut reaches).
pub struct MariaDb {
    /// Stopped on drop.
    _daemon: Daemon,
    /// The address the server listens on.
    pub host: Ipv4Addr,
    /// The TCP port.
    pub port: u16,
    dir: TempDir,
}

/// The TCP user's password (a throwaway server on loopback or in a test's namespace).
const MARIADB_PASSWORD: &str = "kawrap-test-pw";

impl MariaDb {
    /// mariadb-install-db + mariadbd in a fresh directory; panics (with the log) if it cannot start.
    pub fn start() -> MariaDb {
        start_on_free_port("MariaDB", |port| MariaDb::start_on(None, Ipv4Addr::LOCALHOST, port))
    }

    /// mariadb-install-db + mariadbd listening on `host:port` inside network
    /// namespace `ns` (where every port is free); panics (with the log) if it cannot start.
    pub fn start_in(ns: &Namespace, host: Ipv4Addr, port: u16) -> MariaDb {
        MariaDb::start_on(Some(ns), host, port).unwrap_or_else(|e| panic!("could not start MariaDB:\n{e}"))
    }

    fn start_on(ns: Option<&Namespace>, host: Ipv4Addr, port: u16) -> Result<MariaDb, String> {
        let dir = temp_dir("mariadb")?;
        let data = dir.path().join("data");
        run_checked(
            "mariadb-install-db",
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .args(["--user=root", "--auth-root-authentication-method=socket", "--skip-test-db"])
                .env_remove("LD_PRELOAD"),
        )?;
        let path = |name: &str| dir.path().join(name).display().to_string();
        // mariadbd runs as root (--user=root), so it can be `ip netns exec`'s
        // program directly: the pid Daemon signals is still mariadbd's.
        let mut server = match ns {
            None => Command::new("mariadbd"),
            Some(ns) => ns.command("mariadbd"),
        };
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", path("mysqld.sock")))
            .arg(format!("--pid-file={}", path("mysqld.pid")))
            .arg(format!("--tmpdir={}", dir.path().display()))
            .arg(format!("--bind-address={host}"))
            .args([
                "--user=root",
                "--skip-log-bin",
                "--skip-name-resolve",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-buffer-pool-size=128M",
            ])
            .env_remove("LD_PRELOAD");
        let log = dir.path().join("server.log");
        let mut daemon = Daemon::spawn("mariadbd", server, &log, libc::SIGTERM)?;
        daemon.wait_ready(|| fs::read_to_string(&log).is_ok_and(|t| t.contains("ready for connections")))?;
        let db = MariaDb { _daemon: daemon, host, port, dir };
        // On loopback the client comes from 127.0.0.1; in a namespace from
        // the other end of the veth, the only host that can reach it.
        let from = if ns.is_some() { "%".to_string() } else { host.to_string() };
        db.admin(&format!(
            "create user kawrap@'{from}' identified by '{MARIADB_PASSWORD}';
             grant all on *.* to kawrap@'{from}';"
        ))?;
        let check = db.client("mariadb").args(["-e", "select 1"]);
        let mut check = match ns {
            None => check.plain(),
            Some(ns) => check.plain_in(ns),
        };
        run_checked("mariadb select 1", &mut check)?;
        Ok(db)
    }

    /// Runs SQL as root over the server's unix socket.
    fn admin(&self, sql: &str) -> Result<Output, String> {
        run_checked(
            "mariadb (admin)",
            Command::new("mariadb")
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.dir.path().join("mysqld.sock").display()))
                .args(["-u", "root", "-e", sql])
                .env_remove("LD_PRELOAD"),
        )
    }

    /// `program` (`mariadb`, `mysqldump`…) logging in as `kawrap` over TCP.
    pub fn client(&self, program: &str) -> Client {
        Client::new(program)
            .arg("--no-defaults")
            .args(["--protocol=tcp", "-h", &self.host.to_string(), "-P", &self.port.to_string()])
            .args(["-u", "kawrap", &format!("--password={MARIADB_PASSWORD}")])
    }

    /// Creates database `name` with one table of `rows` deterministic rows
    /// (about 200 bytes each in a dump) from the built-in sequence engine.
    pub fn create_generated_db(&self, name: &str, rows: u32) {
        let sql = format!(
            "create database {name};
             use {name};
             create table {name}.items (id int primary key, name char(32) not null,
                 body varchar(200), price decimal(12,2)) engine=InnoDB;
             insert into {name}.items select seq, md5(seq), repeat(sha1(seq), 4), (seq % 100000) / 7
                 from seq_1_to_{rows};
             create table {name}.notes engine=InnoDB as select seq as id, concat('note ', seq) as text
                 from seq_1_to_1000;"
        );
        if let Err(e) = self.admin(&sql) {
            panic!("{e}");
        }
    }
}

/// Why sshd cannot be started here, if it cannot.
pub fn sshd_missing() -> Option<String> {
    if !crate::is_root() {
        return Some("sshd tests log in as root and create /run/sshd: run as root".into());
    }
    if !Path::new("/usr/sbin/sshd").is_file() {
        return Some("/usr/sbin/sshd missing (apt-get install openssh-server)".into());
    }
    for bin in ["ssh", "ssh-keygen"] {
        if !have_program(bin) {
            return Some(format!("{bin} missing (apt-get install openssh-client)"));
        }
    }
    None
}

/// An OpenSSH server accepting root's throwaway key.
pub struct Sshd {
    daemon: Daemon,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    dir: TempDir,
}

/// A base directory for sshd's files where no ancestor is group- or
/// world-writable, so StrictModes accepts the key there: under the target
/// directory rather than /tmp (mode 1777). None if there is no such place.
fn strict_modes_base() -> Option<PathBuf> {
    let base = crate::release_dir().parent()?.join("kawrap-test-servers");
    fs::create_dir_all(&base).ok()?;
    fs::set_permissions(&base, fs::Permissions::from_mode(0o755)).ok()?;
    // sshd's check: every directory owned by root (the user logging in) and not group/world-writable.
    let safe =
        base.ancestors().all(|dir| dir.metadata().is_ok_and(|m| m.mode() & 0o022 == 0 && m.uid() == 0));
    safe.then_some(base)
}

impl Sshd {
    /// sshd -D on a fresh config, host key and user key; panics (with the log) if it cannot start.
    pub fn start() -> Sshd {
        start_on_free_port("sshd", Sshd::start_on)
    }

    fn start_on(port: u16) -> Result<Sshd, String> {
        // sshd refuses to start without its privilege-separation directory.
        fs::create_dir_all("/run/sshd").map_err(|e| format!("mkdir /run/sshd: {e}"))?;
        let (base, strict) = match strict_modes_base() {
            Some(base) => (base, "yes"),
            None => (std::env::temp_dir(), "no"),
        };
        let dir = crate::temp_dir_in(&base, "sshd").map_err(|e| format!("temp dir: {e}"))?;
        let path = |name: &str| dir.path().join(name);
        for key in ["host_key", "user_key"] {
            run_checked(
                "ssh-keygen",
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", "kawrap-test", "-f"])
                    .arg(path(key)),
            )?;
        }
        fs::copy(path("user_key.pub"), path("authorized_keys"))
            .map_err(|e| format!("authorized_keys: {e}"))?;
        let config = format!(
            "ListenAddress 127.0.0.1\n\
             Port {port}\n\
             HostKey {host_key}\n\
             AuthorizedKeysFile {authorized}\n\
             PidFile {pidfile}\n\
             StrictModes {strict}\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             PrintMotd no\n\
             LogLevel ERROR\n",
            host_key = path("host_key").display(),
            authorized = path("authorized_keys").display(),
            pidfile = path("sshd.pid").display(),
        );
        fs::write(path("sshd_config"), config).map_err(|e| format!("sshd_config: {e}"))?;
        let mut server = Command::new("/usr/sbin/sshd");
        server.arg("-D").arg("-e").arg("-f").arg(path("sshd_config")).env_remove("LD_PRELOAD");
        let mut daemon = Daemon::spawn("sshd", server, &path("server.log"), libc::SIGTERM)?;
        // sshd writes its pid file once it listens.
        let pidfile = path("sshd.pid");
        daemon.wait_ready(|| fs::metadata(&pidfile).is_ok_and(|m| m.len() > 0))?;
        let sshd = Sshd { daemon, port, dir };
        run_checked("ssh true", &mut sshd.ssh(&["true"]).plain())
            .map_err(|e| format!("{e}\nsshd log:\n{}", sshd.daemon.log_tail()))?;
        Ok(sshd)
    }

    /// `ssh … root@127.0.0.1 REMOTE_COMMAND`, non-interactive, with the throwaway key.
    pub fn ssh(&self, remote_command: &[&str]) -> Client {
        Client::new("ssh")
            .args(["-F", "/dev/null", "-T", "-p", &self.port.to_string(), "-i"])
            .arg(self.dir.path().join("user_key"))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
                "root@127.0.0.1",
            ])
            .args(remote_command)
            .env("SSH_AUTH_SOCK", "")
    }
}

/// Why Redis cannot be started here, if it cannot.
pub fn redis_missing() -> Option<String> {
    for bin in ["redis-server", "redis-cli"] {
        if !have_program(bin) {
            return Some(format!("{bin} missing (apt-get install redis-server redis-tools)"));
        }
    }
    None
}

/// A Redis server without persistence.
pub struct Redis {
    /// Stopped on drop.
    _daemon: Daemon,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    _dir: TempDir,
}

impl Redis {
    /// `redis-server` on a free port; panics (with the log) if it cannot start.
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// `redis-server` with extra arguments, under `wrap` (e.g. a kawrap
    /// invocation ending in `--`) if given.
    pub fn start_with(wrap: &[&OsStr]) -> Redis {
        start_on_free_port("redis-server", |port| Redis::start_on(port, wrap))
    }

    fn start_on(port: u16, wrap: &[&OsStr]) -> Result<Redis, String> {
        let dir = temp_dir("redis")?;
        let mut args: Vec<OsString> = wrap.iter().map(|a| a.to_os_string()).collect();
        args.push("redis-server".into());
        for arg in ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"] {
            args.push(arg.into());
        }
        args.extend(["--daemonize".into(), "no".into(), "--dir".into(), dir.path().into()]);
        let mut server = Command::new(&args[0]);
        server.args(&args[1..]);
        if wrap.is_empty() {
            server.env_remove("LD_PRELOAD");
        }
        let mut daemon =
            Daemon::spawn("redis-server", server, &dir.path().join("server.log"), libc::SIGTERM)?;
        daemon.wait_ready(|| redis_ping(port))?;
        Ok(Redis { _daemon: daemon, port, _dir: dir })
    }

    /// `redis-cli -h 127.0.0.1 -p PORT ARGS…`.
    pub fn cli(&self, args: &[&str]) -> Client {
        Client::new("redis-cli").args(["-h", "127.0.0.1", "-p", &self.port.to_string()]).args(args)
    }
}

/// PING over RESP; true on `+PONG`.
fn redis_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// A tiny HTTP/1.1 server in a thread: reads a request's headers, waits
/// `delay`, answers 200 with a fixed body, closes. A connection that sends
/// no request is held open until the client closes it.
pub struct SlowHttp {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlowHttp {
    /// The body every response carries.
    pub const BODY: &'static str = "kawrap slow response\n";

    /// Listens on a free port of 127.0.0.1.
    pub fn start(delay: Duration) -> SlowHttp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    std::thread::spawn(move || serve_slowly(conn, delay));
                }
            }
        });
        SlowHttp { port, stop, thread: Some(thread) }
    }

    /// `curl` fetching `/` (fails on HTTP errors, gives up after 30 s).
    pub fn curl(&self) -> Client {
        Client::new("curl")
            .args(["-sS", "--fail", "--max-time", "30"])
            .arg(format!("http://127.0.0.1:{}/", self.port))
    }
}

fn serve_slowly(conn: TcpStream, delay: Duration) {
    let mut reader = BufReader::new(&conn);
    let mut line = String::new();
    let complete = loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break false,
            Ok(_) if line == "\r\n" || line == "\n" => break true,
            Ok(_) => {}
        }
    };
    if !complete {
        return;
    }
    std::thread::sleep(delay);
    let body = SlowHttp::BODY;
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut conn = &conn;
    let _ = conn.write_all(response.as_bytes());
    let _ = conn.shutdown(Shutdown::Write);
}

impl Drop for SlowHttp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
