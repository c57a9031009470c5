//! `kawrap attach`: gives the TCP sockets of running processes a keepalive
//! profile, without restarting them.
//!
//! For each socket descriptor of a process, pidfd_getfd(2) gives us a
//! duplicate; a duplicate is the same kernel socket, so setsockopt on it
//! changes the process's connection, and closing it changes nothing else.
//! The process is neither stopped nor traced.
//!
//! The policy means what it means for the launcher: under `respect`, an
//! option the program set itself stands. A running socket does not say who
//! set an option, so a value that differs from what the kernel gives a
//! socket nobody configured (the sysctls of the socket's own network
//! namespace) counts as the program's.
//!
//! Each socket is printed as soon as it is done, so what was changed is on
//! record even when kawrap stops halfway.
use std::collections::HashMap;
use std::os::fd::OwnedFd;

use kawrap_core::{KeepaliveProfile, Policy};
use serde::Serialize;

use crate::args::attach::AttachArgs;
use crate::error::Error;
use crate::exit_codes::ExitCode;
use crate::output::{printable, write_stdout};
use crate::processes;
use crate::selection::{self, Selected};
use crate::sockets::netns::{KeepaliveDefaults, Netns, NetnsId};
use crate::sockets::remote::{self, AccessError, KeepaliveOptions, OwnSettings, Pidfd, TcpEndpoint};
use crate::sockets::{TcpState, owners, show_addr};

/// What happened to one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Outcome {
    /// Set, and read back as the profile (with the kept options).
    Changed,
    /// It already had the profile.
    Unchanged,
    /// Every option that differs from the profile is the program's own,
    /// and the policy is `respect`.
    Kept,
    /// `--dry-run`: it would be changed.
    WouldChange,
    /// Not changed, or not as asked: see `error`.
    Failed,
}

/// One TCP socket of a process.
#[derive(Debug, Serialize)]
struct SocketReport {
    fd: i32,
    state: &'static str,
    local: Option<String>,
    remote: Option<String>,
    before: Option<KeepaliveOptions>,
    after: Option<KeepaliveOptions>,
    outcome: Outcome,
    /// Options left as the program set them (`respect`).
    kept: Vec<&'static str>,
    error: Option<String>,
}

/// One process.
#[derive(Debug, Serialize)]
struct ProcessReport {
    pid: u32,
    comm: String,
    sockets: Vec<SocketReport>,
    /// Socket descriptors that are not TCP (unix, UDP, netlink…): left alone.
    other_sockets: usize,
    /// Why kawrap stopped before it was done with this process.
    error: Option<String>,
}

impl ProcessReport {
    fn count(&self, outcome: Outcome) -> usize {
        self.sockets.iter().filter(|s| s.outcome == outcome).count()
    }
}

/// What every socket is to get.
struct Plan {
    profile: KeepaliveProfile,
    policy: Policy,
    dry_run: bool,
    json: bool,
}

/// `--json`'s document.
#[derive(Serialize)]
struct Report<'a> {
    profile: String,
    policy: &'static str,
    dry_run: bool,
    processes: &'a [ProcessReport],
}

/// Runs `kawrap attach`.
pub fn run(args: &AttachArgs) -> Result<ExitCode, Error> {
    let profile = crate::user_profiles::resolve_profile(&args.profile)?;
    // Checked by clap already (settings::PolicyParser), as for the launcher.
    let policy = Policy::parse(&args.policy)
        .map_err(|error| Error::Invalid { message: error.to_string(), hint: String::new() })?;
    let mut selected = Selected::from_pids(&args.pids, &|pid| format!("kawrap attach {pid}"))?;
    if args.children {
        selected.add_descendants();
    }
    let plan = Plan { profile, policy, dry_run: args.dry_run, json: args.json };
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    let mut defaults = Defaults::default();
    for &pid in &selected.pids {
        let (report, error) = attach_process(pid, &plan, &mut defaults)?;
        match error {
            // A descendant that ended before kawrap got to it had nothing
            // left to change; a process named on the command line is missed.
            Some(AccessError::NoSuchProcess { .. })
                if report.sockets.is_empty() && !args.pids.contains(&pid) => {}
            Some(error) => errors.push(error),
            None => {}
        }
        reports.push(report);
    }
    if plan.json {
        let report = Report {
            profile: profile.to_string(),
            policy: policy.name(),
            dry_run: plan.dry_run,
            processes: &reports,
        };
        // Plain strings, numbers and lists cannot fail to serialize.
        let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
        text.push('\n');
        write_stdout(text.as_bytes())?;
    } else if !plan.dry_run && reports.iter().any(|r| !r.sockets.is_empty()) {
        write_stdout(closing(&reports, selected.pids.len()).as_bytes())?;
    }
    finish(&reports, errors)
}

/// The exit: success, the one error that stopped kawrap, or how many
/// sockets could not be changed.
fn finish(reports: &[ProcessReport], mut errors: Vec<AccessError>) -> Result<ExitCode, Error> {
    if errors.len() == 1 {
        return Err(errors.remove(0).into());
    }
    if !errors.is_empty() {
        let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(Error::Refused {
            message: format!("{} processes could not be finished: {}", errors.len(), reasons.join("; ")),
            hint: errors[0].hint(),
        });
    }
    let total: usize = reports.iter().map(|r| r.sockets.len()).sum();
    let failed: usize = reports.iter().map(|r| r.count(Outcome::Failed)).sum();
    if failed > 0 {
        return Err(Error::Refused {
            message: format!("{failed} of {total} TCP sockets could not be changed (see above)"),
            hint: String::new(),
        });
    }
    Ok(ExitCode::Success)
}

/// Attaches to one process, printing as it goes. A process that cannot be
/// reached, or that stops being reachable halfway, gives its report so far
/// and the error; only a failure to print stops everything.
fn attach_process(
    pid: u32,
    plan: &Plan,
    defaults: &mut Defaults,
) -> Result<(ProcessReport, Option<AccessError>), Error> {
    let comm = processes::comm(pid);
    let mut report = ProcessReport { pid, comm, sockets: Vec::new(), other_sockets: 0, error: None };
    let name = format!("process {pid} ({})", printable(&report.comm));
    print(
        plan,
        &format!(
            "{name}: profile {} (dead peer noticed in {}), policy {}{}",
            plan.profile,
            plan.profile.detection_time(),
            plan.policy,
            if plan.dry_run { " (dry run: nothing changed)" } else { "" }
        ),
    )?;
    let result = each_tcp_socket(pid, &mut report, |fd, copy, endpoint, report| {
        let socket = attach_one(fd, &copy, endpoint, pid, plan, defaults);
        print(plan, &socket_line(&socket))?;
        report.sockets.push(socket);
        Ok(())
    })?;
    if let Err(error) = result {
        let changed = report.count(Outcome::Changed);
        print(
            plan,
            &format!(
                "{name}: stopped after {changed} changed (of {} TCP sockets seen so far): {error}",
                report.sockets.len()
            ),
        )?;
        report.error = Some(error.to_string());
        return Ok((report, Some(error)));
    }
    print(plan, &process_summary(&name, &report))?;
    Ok((report, None))
}

/// Calls `each` with a copy of every TCP socket of `pid`, counting the
/// other sockets in `report`. The inner `Err` is the process's: it could
/// not be reached, or stopped being reachable.
fn each_tcp_socket(
    pid: u32,
    report: &mut ProcessReport,
    mut each: impl FnMut(i32, OwnedFd, TcpEndpoint, &mut ProcessReport) -> Result<(), Error>,
) -> Result<Result<(), AccessError>, Error> {
    let pidfd = match Pidfd::open(pid) {
        Ok(pidfd) => pidfd,
        Err(error) => return Ok(Err(error)),
    };
    let fds = match owners::sockets_of(pid) {
        Ok(fds) => fds,
        Err(error) => return Ok(Err(AccessError::from_proc(pid, error))),
    };
    for (fd, _inode) in fds {
        let copy = match pidfd.dup(fd) {
            Ok(copy) => copy,
            // Closed since /proc was read: nothing to do.
            Err(AccessError::Closed) => continue,
            Err(error) => return Ok(Err(error)),
        };
        match remote::tcp_endpoint(&copy) {
            Some(endpoint) => each(fd, copy, endpoint, report)?,
            None => report.other_sockets += 1,
        }
    }
    Ok(Ok(()))
}

fn print(plan: &Plan, line: &str) -> Result<(), Error> {
    if plan.json {
        return Ok(());
    }
    write_stdout(format!("{line}\n").as_bytes())
}

/// The keepalive defaults of each network namespace met so far.
#[derive(Default)]
struct Defaults {
    known: HashMap<NetnsId, Result<KeepaliveDefaults, String>>,
}

impl Defaults {
    /// What the kernel gives a socket nobody configured, in the namespace
    /// the socket `copy` of process `pid` lives in.
    fn of(&mut self, copy: &OwnedFd, pid: u32) -> Result<KeepaliveDefaults, String> {
        let netns = match Netns::of_socket(copy) {
            Ok(netns) => netns,
            // Asking a socket for its namespace needs CAP_NET_ADMIN; the
            // process's own namespace is the answer when it is ours.
            Err(error) => match Netns::of_process(pid) {
                Ok(netns) if netns.is_ours() => netns,
                _ => {
                    return Err(format!(
                        "its network namespace is unknown (SIOCGSKNS: {error}), so its own values cannot be \
                         told from that namespace's defaults; run as root, or use --policy force"
                    ));
                }
            },
        };
        self.known
            .entry(netns.id())
            .or_insert_with(|| {
                netns
                    .keepalive_defaults()
                    .map_err(|e| format!("cannot read its namespace's keepalive sysctls: {e}"))
            })
            .clone()
    }
}

fn attach_one(
    fd: i32,
    copy: &OwnedFd,
    endpoint: TcpEndpoint,
    pid: u32,
    plan: &Plan,
    defaults: &mut Defaults,
) -> SocketReport {
    let mut report = SocketReport {
        fd,
        state: endpoint.state.name(),
        local: endpoint.local.as_ref().map(show_addr),
        remote: endpoint.remote.as_ref().map(show_addr),
        before: None,
        after: None,
        outcome: Outcome::Failed,
        kept: Vec::new(),
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
    let keep = match plan.policy {
        Policy::Force => OwnSettings::NONE,
        Policy::Respect => match defaults.of(copy, pid) {
            Ok(defaults) => before.own_settings(&defaults),
            Err(why) => {
                report.error = Some(why);
                return report;
            }
        },
    };
    report.kept = keep.names();
    let target = before.with_profile(&plan.profile, keep);
    if target == before {
        let has_profile = before.differences(&plan.profile).is_empty();
        report.outcome = if has_profile { Outcome::Unchanged } else { Outcome::Kept };
        return report;
    }
    if plan.dry_run {
        report.outcome = Outcome::WouldChange;
        report.after = Some(target);
        return report;
    }
    if let Err(error) = remote::apply(copy, &plan.profile, keep) {
        report.error = Some(error.to_string());
        return report;
    }
    // Read back: the report shows what the kernel now holds, not what was asked.
    match KeepaliveOptions::read(copy) {
        Ok(after) => {
            report.after = Some(after);
            if after == target {
                report.outcome = Outcome::Changed;
            } else {
                report.error = Some(format!("the kernel kept {after}, not {target}"));
            }
        }
        Err(error) => report.error = Some(format!("getsockopt after setting: {error}")),
    }
    report
}

/// `  fd 3    ESTAB       127.0.0.1:50218 -> 127.0.0.1:32789  off 7200/75/9 -> on 60/10/6`
fn socket_line(socket: &SocketReport) -> String {
    let endpoints =
        format!("{} -> {}", socket.local.as_deref().unwrap_or("?"), socket.remote.as_deref().unwrap_or("-"));
    let before = socket.before.map_or_else(|| "?".to_owned(), |b| b.to_string());
    let after = socket.after.map_or_else(String::new, |a| a.to_string());
    let kept = if socket.kept.is_empty() {
        String::new()
    } else {
        format!(" (kept its own {})", listing(&socket.kept))
    };
    let what = match socket.outcome {
        Outcome::Changed => format!("{before} -> {after}{kept}"),
        Outcome::Unchanged => format!("{before} (already has it){kept}"),
        Outcome::Kept => format!(
            "{before}: kept, the program set {} itself (--policy force replaces {})",
            listing(&socket.kept),
            if socket.kept.len() == 1 { "it" } else { "them" }
        ),
        Outcome::WouldChange => format!("{before} -> would become {after}{kept}"),
        Outcome::Failed => format!("{before}: FAILED: {}", socket.error.as_deref().unwrap_or("?")),
    };
    format!("  fd {:<4} {:<11} {endpoints}  {what}", socket.fd, socket.state)
}

/// `idle`, `idle and count`, `idle, interval and count`.
fn listing(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// `process 28314 (python3): 2 TCP sockets: 1 changed, 1 kept its own values`,
/// or, for a process without TCP sockets, where they are instead.
fn process_summary(name: &str, report: &ProcessReport) -> String {
    let total = report.sockets.len();
    if total == 0 {
        let holders = selection::tcp_holders_below(report.pid);
        return match holders.as_slice() {
            [] => format!("{name} has no TCP socket: nothing to do"),
            [one] => format!(
                "{name} has no TCP socket; process {} ({}) under it has {}: attach {}, or add --children",
                one.pid, one.comm, one.sockets, one.pid
            ),
            more => format!(
                "{name} has no TCP socket; processes under it do: {}: attach them, or add --children",
                selection::describe_holders(more)
            ),
        };
    }
    let parts: Vec<String> = [
        (Outcome::Changed, "changed"),
        (Outcome::WouldChange, "would change"),
        (Outcome::Kept, "kept their own values"),
        (Outcome::Unchanged, "already had it"),
        (Outcome::Failed, "FAILED"),
    ]
    .into_iter()
    .filter_map(|(outcome, words)| {
        let count = report.count(outcome);
        (count > 0).then(|| format!("{count} {words}"))
    })
    .collect();
    format!("{name}: {total} TCP socket{}: {}", if total == 1 { "" } else { "s" }, parts.join(", "))
}

/// The last word: what the change does to the sockets of tomorrow.
fn closing(reports: &[ProcessReport], processes: usize) -> String {
    let (it, its, opens) = if processes == 1 { ("it", "its", "opens") } else { ("they", "their", "open") };
    let cover = format!(
        "Sockets {it} {opens} {}from now on keep the kernel's defaults; start the program under kawrap \
         (or `kawrap bpf attach` {its} cgroup) to cover those.",
        if processes == 1 { "itself " } else { "themselves " }
    );
    let listeners = reports
        .iter()
        .flat_map(|r| &r.sockets)
        .filter(|s| s.outcome == Outcome::Changed && s.state == TcpState::LISTEN.name())
        .count();
    if listeners == 0 {
        return format!("{cover}\n");
    }
    format!(
        "Connections {it} accept{} from now on on the {listeners} listening socket{} changed above get {} new \
         values too: the kernel copies a listener's options to each connection it accepts. {cover}\n",
        if processes == 1 { "s" } else { "" },
        if listeners == 1 { "" } else { "s" },
        if listeners == 1 { "its" } else { "their" },
    )
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use super::*;

    fn plan(profile: &str, policy: Policy, dry_run: bool) -> Plan {
        Plan { profile: KeepaliveProfile::parse(profile).unwrap(), policy, dry_run, json: true }
    }

    fn ours(plan: &Plan) -> ProcessReport {
        attach_process(std::process::id(), plan, &mut Defaults::default()).unwrap().0
    }

    #[test]
    fn attaching_to_ourselves_changes_our_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();

        let dry = ours(&plan("4/2/3", Policy::Respect, true));
        let mine = dry.sockets.iter().find(|s| s.fd == client.as_raw_fd()).unwrap();
        assert_eq!(mine.outcome, Outcome::WouldChange);
        assert!(!KeepaliveOptions::read(&client).unwrap().keepalive, "dry run changed the socket");

        let report = ours(&plan("4/2/3", Policy::Respect, false));
        let mine = report.sockets.iter().find(|s| s.fd == client.as_raw_fd()).unwrap();
        assert_eq!(mine.outcome, Outcome::Changed, "{mine:?}");
        assert_eq!(mine.state, "ESTAB");
        let now = KeepaliveOptions::read(&client).unwrap();
        assert_eq!((now.keepalive, now.idle_secs, now.interval_secs, now.count), (true, 4, 2, 3));
        let listening = report.sockets.iter().find(|s| s.fd == listener.as_raw_fd()).unwrap();
        assert_eq!(listening.state, "LISTEN");

        // Now 4/2/3 differs from the defaults: the program's own, for respect.
        let again = ours(&plan("5/2/3", Policy::Respect, false));
        let mine = again.sockets.iter().find(|s| s.fd == client.as_raw_fd()).unwrap();
        assert_eq!(
            (mine.outcome, mine.kept.as_slice()),
            (Outcome::Kept, ["idle", "interval", "count"].as_slice())
        );
        let forced = ours(&plan("5/2/3", Policy::Force, false));
        let mine = forced.sockets.iter().find(|s| s.fd == client.as_raw_fd()).unwrap();
        assert_eq!(mine.outcome, Outcome::Changed);
        assert_eq!(KeepaliveOptions::read(&client).unwrap().idle_secs, 5);
    }

    #[test]
    fn a_missing_process_is_named() {
        let (report, error) =
            attach_process(1 << 23, &plan("ssh", Policy::Respect, true), &mut Defaults::default()).unwrap();
        assert_eq!(error.unwrap().to_string(), format!("no such process: {}", 1 << 23));
        assert!(report.sockets.is_empty());
    }

    #[test]
    fn the_closing_words_tell_what_a_changed_listener_does() {
        let socket = |state: &'static str, outcome| SocketReport {
            fd: 3,
            state,
            local: None,
            remote: None,
            before: None,
            after: None,
            outcome,
            kept: Vec::new(),
            error: None,
        };
        let report =
            |sockets| ProcessReport { pid: 1, comm: "x".into(), sockets, other_sockets: 0, error: None };
        let plain = closing(&[report(vec![socket("ESTAB", Outcome::Changed)])], 1);
        assert!(
            plain.starts_with("Sockets it opens itself from now on keep the kernel's defaults"),
            "{plain}"
        );
        let listening = closing(&[report(vec![socket("LISTEN", Outcome::Changed)])], 1);
        assert!(
            listening.starts_with("Connections it accepts from now on on the 1 listening socket changed above get its new values too"),
            "{listening}"
        );
        let unchanged = closing(&[report(vec![socket("LISTEN", Outcome::Unchanged)])], 1);
        assert!(unchanged.starts_with("Sockets"), "{unchanged}");
    }

    #[test]
    fn lists_read_like_english() {
        assert_eq!(listing(&["idle"]), "idle");
        assert_eq!(listing(&["idle", "count"]), "idle and count");
        assert_eq!(listing(&["idle", "interval", "count"]), "idle, interval and count");
    }
}
