//! PostgreSQL 15 ([`Postgres`]): `psql` and `pg_dump` clients.
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

use super::client::Client;
use super::daemon::{Daemon, run_checked, start_on_free_port, temp_dir};
use super::host::{missing_program, user_ids};
use crate::netns::Namespace;

/// Where Debian's PostgreSQL 15 server binaries are.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

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
    if let Some(missing) = missing_program(&["psql", "pg_dump"], "postgresql-client-15") {
        return Some(missing);
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
