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
//!
//! One file per server (`postgres`, `mariadb`, `sshd`, `redis`, `http`);
//! below them what they share: `daemon` (the process, its directory, fresh
//! ports), `client` ([`Client`]) and `host` (what this machine has).

mod client;
mod daemon;
mod host;
mod http;
mod mariadb;
mod postgres;
mod redis;
mod sshd;

pub use client::Client;
pub use host::{find_program, free_port, have_program, python3, user_ids};
pub use http::SlowHttp;
pub use mariadb::{MariaDb, mariadb_missing};
pub use postgres::{PG_BIN, Postgres, postgres_missing};
pub use redis::{Redis, redis_missing};
pub use sshd::{Sshd, sshd_missing};
