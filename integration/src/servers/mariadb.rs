//! MariaDB ([`MariaDb`]): `mariadb` and `mysqldump` clients.
use std::fs;
use std::net::Ipv4Addr;
use std::process::{Command, Output};

use tempfile::TempDir;

use super::client::Client;
use super::daemon::{Daemon, run_checked, start_on_free_port, temp_dir};
use super::host::missing_program;
use crate::netns::Namespace;

/// Why MariaDB cannot be started here, if it cannot.
pub fn mariadb_missing() -> Option<String> {
    if !crate::is_root() {
        return Some("MariaDB tests run mariadbd --user=root: run as root".into());
    }
    missing_program(
        &["mariadb-install-db", "mariadbd", "mariadb", "mysqldump"],
        "mariadb-server mariadb-client",
    )
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
