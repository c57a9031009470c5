//! `kawrap attach`: gives the TCP sockets of a running process a keepalive
//! profile, without restarting it.
//!
//! For each socket descriptor of the process, pidfd_getfd(2) gives us a
//! duplicate; a duplicate is the same kernel socket, so setsockopt on it
//! changes the process's connection, and closing it changes nothing else.
//! The process is neither stopped nor traced.
use std::fmt::Write as _;

use kawrap_core::KeepaliveProfile;
use serde::Serialize;

use crate::args::attach::AttachArgs;
use crate::error::Error;
use crate::exit_codes::ExitCode;
use crate::output::write_stdout;
use crate::sockets::owners;
use crate::sockets::remote::{self, AccessError, KeepaliveOptions, Pidfd, TcpEndpoint};
use crate::sockets::show_addr;

/// What happened to one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Outcome {
    Changed,
    Unchanged,
    WouldChange,
    Failed,
}

/// One TCP socket of the process.
#[derive(Debug, Serialize)]
struct SocketReport {
    fd: i32,
    state: &'static str,
    local: Option<String>,
    remote: Option<String>,
    before: Option<KeepaliveOptions>,
    after: Option<KeepaliveOptions>,
    outcome: Outcome,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Report {
    pid: u32,
    comm: String,
    profile: String,
    dry_run: bool,
    sockets: Vec<SocketReport>,
    /// Socket descriptors that are not TCP (unix, UDP, netlink…): left alone.
    other_sockets: usize,
}

/// Runs `kawrap attach`.
pub fn run(args: &AttachArgs) -> Result<ExitCode, Error> {
    let profile = crate::user_profiles::resolve_profile(&args.profile)?;
    let report = attach(args.pid, &profile, args.dry_run)?;
    let text = if args.json { json(&report) } else { table(&report, &profile) };
    write_stdout(text.as_bytes())?;
    let failed = report.sockets.iter().filter(|s| s.outcome == Outcome::Failed).count();
    if failed > 0 {
        return Err(Error::Refused {
            message: format!(
                "{failed} of {} TCP sockets of process {} could not be changed (see above)",
                report.sockets.len(),
                args.pid
            ),
            hint: String::new(),
        });
    }
    Ok(ExitCode::Success)
}

/// Copies each socket of `pid`, and applies `profile` to its TCP ones
/// unless `dry_run`. Fails as a whole only when the process cannot be
/// reached at all (gone, not permitted, kernel too old).
fn attach(pid: u32, profile: &KeepaliveProfile, dry_run: bool) -> Result<Report, AccessError> {
    let pidfd = Pidfd::open(pid)?;
    let fds = owners::sockets_of(pid).map_err(|error| AccessError::from_proc(pid, error))?;
    let mut report = Report {
        pid,
        comm: owners::comm(pid),
        profile: profile.to_string(),
        dry_run,
        sockets: Vec::new(),
        other_sockets: 0,
    };
    for (fd, _inode) in fds {
        let copy = match pidfd.dup(fd) {
            Ok(copy) => copy,
            // Closed since /proc was read: nothing to do.
            Err(AccessError::Closed) => continue,
            Err(error) => return Err(error),
        };
        let Some(endpoint) = remote::tcp_endpoint(&copy) else {
            report.other_sockets += 1;
            continue;
        };
        report.sockets.push(attach_one(fd, &copy, endpoint, profile, dry_run));
    }
    Ok(report)
}

fn attach_one(
    fd: i32,
    copy: &std::os::fd::OwnedFd,
    endpoint: TcpEndpoint,
    profile: &KeepaliveProfile,
    dry_run: bool,
) -> SocketReport {
    let mut report = SocketReport {
        fd,
        state: endpoint.state.name(),
        local: endpoint.local.as_ref().map(show_addr),
        remote: endpoint.remote.as_ref().map(show_addr),
        before: None,
        after: None,
        outcome: Outcome::Failed,
        error: None,
    };
    let before = match KeepaliveOptions::read(copy) {
        Ok(before) => before,
        Err(error) => {
            report.error = Some(format!("getsockopt: {error}"));
            return report;
        }
    };
    report.before = Some(before);
    if before.differences(profile).is_empty() {
        report.outcome = Outcome::Unchanged;
        return report;
    }
    if dry_run {
        report.outcome = Outcome::WouldChange;
        return report;
    }
    if let Err(error) = remote::apply(copy, profile) {
        report.error = Some(error.to_string());
        return report;
    }
    // Read back: the report shows what the kernel now holds, not what was asked.
    match KeepaliveOptions::read(copy) {
        Ok(after) if after.differences(profile).is_empty() => {
            report.after = Some(after);
            report.outcome = Outcome::Changed;
        }
        Ok(after) => {
            report.error =
                Some(format!("the kernel kept {after}: {}", after.differences(profile).join("; ")));
            report.after = Some(after);
        }
        Err(error) => report.error = Some(format!("getsockopt after setting: {error}")),
    }
    report
}

fn table(report: &Report, profile: &KeepaliveProfile) -> String {
    let mut text = String::new();
    let count = report.sockets.len();
    let _ = writeln!(
        text,
        "process {} ({}): {count} TCP socket{}; profile {profile} notices a dead peer in {}{}",
        report.pid,
        report.comm,
        if count == 1 { "" } else { "s" },
        profile.detection_time(),
        if report.dry_run { " (dry run: nothing changed)" } else { "" }
    );
    for socket in &report.sockets {
        let endpoints = format!(
            "{} -> {}",
            socket.local.as_deref().unwrap_or("?"),
            socket.remote.as_deref().unwrap_or("-")
        );
        let before = socket.before.map_or_else(|| "?".to_owned(), |b| b.to_string());
        let what = match socket.outcome {
            Outcome::Changed => {
                format!("{before} -> {}", socket.after.map_or_else(String::new, |a| a.to_string()))
            }
            Outcome::Unchanged => format!("{before} (already has it)"),
            Outcome::WouldChange => format!("{before} -> would become {}", target(profile)),
            Outcome::Failed => format!("{before}: FAILED: {}", socket.error.as_deref().unwrap_or("?")),
        };
        let _ = writeln!(text, "  fd {:<4} {:<11} {endpoints}  {what}", socket.fd, socket.state);
    }
    if count == 0 {
        let _ = writeln!(text, "nothing to do: it has no TCP sockets");
    } else if !report.dry_run {
        let changed = report.sockets.iter().filter(|s| s.outcome == Outcome::Changed).count();
        let _ = writeln!(
            text,
            "{changed} changed. Sockets it opens from now on keep the kernel's defaults; start the program \
             under kawrap to cover those."
        );
    }
    text
}

/// What a socket looks like once it has `profile`, as KeepaliveOptions
/// prints it. A user timeout the profile does not set is left alone by
/// `apply`, so it is not shown (0 prints as nothing).
fn target(profile: &KeepaliveProfile) -> String {
    let options = KeepaliveOptions {
        keepalive: true,
        idle_secs: profile.idle_secs().into(),
        interval_secs: profile.interval_secs().into(),
        count: profile.count().into(),
        user_timeout_ms: profile.user_timeout_ms().unwrap_or(0),
    };
    options.to_string()
}

fn json(report: &Report) -> String {
    // Plain strings, numbers and lists cannot fail to serialize.
    let mut text = serde_json::to_string_pretty(report).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn attaching_to_ourselves_changes_our_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let profile = KeepaliveProfile::parse("4/2/3").unwrap();

        let dry = attach(std::process::id(), &profile, true).unwrap();
        let ours = dry.sockets.iter().find(|s| s.fd == client.as_raw_fd()).unwrap();
        assert_eq!(ours.outcome, Outcome::WouldChange);
        assert!(!KeepaliveOptions::read(&client).unwrap().keepalive, "dry run changed the socket");

        let report = attach(std::process::id(), &profile, false).unwrap();
        let ours = report.sockets.iter().find(|s| s.fd == client.as_raw_fd()).unwrap();
        assert_eq!(ours.outcome, Outcome::Changed, "{ours:?}");
        assert_eq!(ours.state, "ESTAB");
        let now = KeepaliveOptions::read(&client).unwrap();
        assert_eq!((now.keepalive, now.idle_secs, now.interval_secs, now.count), (true, 4, 2, 3));
        let listening = report.sockets.iter().find(|s| s.fd == listener.as_raw_fd()).unwrap();
        assert_eq!(listening.state, "LISTEN");

        let again = attach(std::process::id(), &profile, false).unwrap();
        let ours = again.sockets.iter().find(|s| s.fd == client.as_raw_fd()).unwrap();
        assert_eq!(ours.outcome, Outcome::Unchanged);
    }

    #[test]
    fn a_missing_process_is_named() {
        let error = attach(1 << 23, &KeepaliveProfile::parse("ssh").unwrap(), true).unwrap_err();
        assert_eq!(error.to_string(), format!("no such process: {}", 1 << 23));
    }

    #[test]
    fn target_reads_like_the_options() {
        assert_eq!(target(&KeepaliveProfile::parse("2/1/3").unwrap()), "on 2/1/3");
        assert_eq!(target(&KeepaliveProfile::parse("2/1/3/5000").unwrap()), "on 2/1/3/5000ms");
    }
}
