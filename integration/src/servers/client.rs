//! [`Client`]: the program a server's users run, with what reaches it.
use std::ffi::{OsStr, OsString};
use std::process::{Command, Stdio};

use crate::netns::Namespace;

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
