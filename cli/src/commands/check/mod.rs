//! `kawrap check`: the live TCP sockets, and whether each one will notice a
//! dead peer: keepalive on, the timer the kernel has armed, and (where we
//! may take a copy of the socket) its exact keepalive options.
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use kawrap_core::KeepaliveProfile;
use serde::Serialize;

use crate::args::check::CheckArgs;
use crate::error::Error;
use crate::exit_codes::ExitCode;
use crate::output::{columns, write_stdout};
use crate::sockets::owners::{self, Owner};
use crate::sockets::remote::{AccessError, KeepaliveOptions, Pidfd};
use crate::sockets::{self, Listing, TcpSocket, TcpState, Timer, show_addr};

/// One socket with everything known about it.
#[derive(Debug)]
struct Row {
    socket: TcpSocket,
    owners: Vec<Owner>,
    /// getsockopt on a copy, or why there is none.
    options: Result<KeepaliveOptions, String>,
    /// With `--expect`, for established sockets: what does not match
    /// (empty: it matches).
    problems: Option<Vec<String>>,
}

/// Runs `kawrap check`.
pub fn run(args: &CheckArgs) -> Result<ExitCode, Error> {
    let expect = args.expect.as_deref().map(crate::user_profiles::resolve_profile).transpose()?;
    let dst = args.dst.as_deref().map(Network::parse).transpose()?;
    // Owners first: a --pid that does not exist, or may not be looked
    // into, fails here with its own reason, before any listing is tried.
    let (owner_map, unreadable) = owners::scan(args.pid).map_err(|error| match args.pid {
        Some(pid) => Error::from(AccessError::from_proc(pid, error)),
        None => Error::io("cannot read /proc", error),
    })?;
    let listing = sockets::list_tcp(args.pid)
        .map_err(|error| Error::io("cannot list TCP sockets (sock_diag and /proc/net/tcp)", error))?;

    let mut rows = select(&listing, &owner_map, args, dst.as_ref());
    read_options(&mut rows);
    let verdict = expect.map(|profile| judge(&mut rows, &profile));

    let text = if args.json {
        json(&rows, &listing, verdict.as_ref())
    } else {
        table(&rows, &listing, unreadable, args.pid.is_some(), expect.as_ref(), verdict.as_ref())
    };
    write_stdout(text.as_bytes())?;
    Ok(match verdict {
        Some(verdict) if !verdict.passed() => ExitCode::CheckFailed,
        _ => ExitCode::Success,
    })
}

/// The sockets the filters select, with their owners.
fn select(
    listing: &Listing,
    owner_map: &owners::OwnerMap,
    args: &CheckArgs,
    dst: Option<&Network>,
) -> Vec<Row> {
    listing
        .sockets
        .iter()
        .filter(|socket| {
            args.port.is_none_or(|port| socket.local.port() == port || socket.remote.port() == port)
        })
        .filter(|socket| dst.is_none_or(|net| net.contains(socket.remote.ip())))
        .filter_map(|socket| {
            let owners =
                owner_map.get(&socket.inode).filter(|_| socket.inode != 0).cloned().unwrap_or_default();
            // With --pid, only sockets that process holds.
            if args.pid.is_some() && owners.is_empty() {
                return None;
            }
            Some(Row {
                socket: socket.clone(),
                owners,
                options: Err("no process holds it".to_owned()),
                problems: None,
            })
        })
        .collect()
}

/// Takes a copy of each owned socket (pidfd_getfd) and reads its options.
/// A process we may not copy from is asked only once.
fn read_options(rows: &mut [Row]) {
    let mut pidfds: HashMap<u32, Result<Pidfd, String>> = HashMap::new();
    for row in rows.iter_mut() {
        let Some(owner) = row.owners.first() else { continue };
        let pidfd =
            pidfds.entry(owner.pid).or_insert_with(|| Pidfd::open(owner.pid).map_err(|e| e.to_string()));
        row.options = match pidfd {
            Err(error) => Err(error.clone()),
            Ok(open) => match open.dup(owner.fd) {
                Err(error @ AccessError::Permission { .. }) => {
                    let message = error.to_string();
                    *pidfd = Err(message.clone());
                    Err(message)
                }
                Err(error) => Err(error.to_string()),
                Ok(copy) => read_copy(File::from(copy), row.socket.inode),
            },
        };
    }
}

/// Reads the options of a copy, after making sure it is still the socket
/// that was listed: the descriptor may have been closed and reused since.
fn read_copy(copy: File, inode: u64) -> Result<KeepaliveOptions, String> {
    match copy.metadata() {
        Ok(meta) if meta.ino() == inode => {
            KeepaliveOptions::read(&copy).map_err(|e| format!("getsockopt: {e}"))
        }
        Ok(_) => Err("the descriptor now refers to another socket".to_owned()),
        Err(error) => Err(format!("fstat: {error}")),
    }
}

/// The outcome of `--expect`.
#[derive(Debug, Serialize)]
struct Verdict {
    profile: String,
    checked: usize,
    failed: usize,
}

impl Verdict {
    fn passed(&self) -> bool {
        self.checked > 0 && self.failed == 0
    }
}

/// Compares every established socket with `profile`.
fn judge(rows: &mut [Row], profile: &KeepaliveProfile) -> Verdict {
    let mut verdict = Verdict { profile: profile.to_string(), checked: 0, failed: 0 };
    for row in rows.iter_mut().filter(|row| row.socket.state == TcpState::ESTABLISHED) {
        let problems = problems(row.options.as_ref().ok(), row.socket.timer, profile);
        verdict.checked += 1;
        verdict.failed += usize::from(!problems.is_empty());
        row.problems = Some(problems);
    }
    verdict
}

/// Why a socket does not have `profile`; empty when it does.
fn problems(
    options: Option<&KeepaliveOptions>,
    timer: Option<Timer>,
    profile: &KeepaliveProfile,
) -> Vec<String> {
    if let Some(options) = options {
        return options.differences(profile);
    }
    let idle = Duration::from_secs(profile.idle_secs().into());
    // One jiffy of slack for the kernel's rounding to milliseconds.
    let slack = Duration::from_millis(10);
    match timer {
        Some(Timer::Keepalive(left)) if left <= idle + slack => Vec::new(),
        Some(Timer::Keepalive(left)) => vec![format!(
            "keepalive timer has {} left, more than the profile's idle {} s (options not readable)",
            remaining(left),
            profile.idle_secs()
        )],
        Some(other) => vec![format!(
            "a {} timer is armed instead of keepalive, and the options are not readable (run as root)",
            other.describe()
        )],
        None => vec!["no keepalive timer: SO_KEEPALIVE is off (options not readable)".to_owned()],
    }
}

/// The time left on a timer, as `ss -o` writes it: `4min59sec`, `59sec`, `200ms`.
fn remaining(left: Duration) -> String {
    let secs = left.as_secs();
    match secs {
        0 => format!("{}ms", left.subsec_millis()),
        1..60 => format!("{secs}sec"),
        _ if secs % 60 == 0 => format!("{}min", secs / 60),
        _ => format!("{}min{}sec", secs / 60, secs % 60),
    }
}

fn timer_text(timer: Option<Timer>) -> String {
    match timer {
        None => "-".to_owned(),
        Some(Timer::TimeWait(_)) => "timewait".to_owned(),
        Some(timer) => format!("{},{}", timer.kind(), remaining(timer.remaining())),
    }
}

/// A listening socket has no peer: `*`, as ss shows it.
fn remote_text(socket: &TcpSocket) -> String {
    if socket.remote.port() == 0 && socket.remote.ip().is_unspecified() {
        "*".to_owned()
    } else {
        show_addr(&socket.remote)
    }
}

fn process_text(owners: &[Owner]) -> String {
    match owners {
        [] => "-".to_owned(),
        [one] => format!("{}/{}", one.pid, one.comm),
        [first, rest @ ..] => format!("{}/{} (+{} more)", first.pid, first.comm, rest.len()),
    }
}

fn table(
    rows: &[Row],
    listing: &Listing,
    unreadable_processes: usize,
    one_process: bool,
    expect: Option<&KeepaliveProfile>,
    verdict: Option<&Verdict>,
) -> String {
    let mut header = vec!["STATE", "LOCAL", "REMOTE", "PROCESS", "KEEPALIVE", "TIMER"];
    if expect.is_some() {
        header.push("EXPECT");
    }
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for row in rows {
        let mut line = vec![
            row.socket.state.to_string(),
            show_addr(&row.socket.local),
            remote_text(&row.socket),
            process_text(&row.owners),
            row.options.as_ref().map_or_else(|_| "?".to_owned(), ToString::to_string),
            timer_text(row.socket.timer),
        ];
        if expect.is_some() {
            line.push(match &row.problems {
                None => String::new(),
                Some(problems) if problems.is_empty() => "ok".to_owned(),
                Some(problems) => format!("FAIL: {}", problems.join("; ")),
            });
        }
        cells.push(line);
    }
    let mut text = columns(&cells);

    let mut notes = Vec::new();
    if rows.iter().any(|row| row.options.is_err() && !row.owners.is_empty()) {
        let reason = rows
            .iter()
            .filter(|row| !row.owners.is_empty())
            .find_map(|row| row.options.as_ref().err())
            .cloned()
            .unwrap_or_default();
        notes.push(format!(
            "?: options not readable ({reason}); pidfd_getfd needs root or ptrace rights over the owner. \
             TIMER is the kernel's own view either way."
        ));
    }
    if unreadable_processes > 0 && !one_process {
        notes.push(format!(
            "{unreadable_processes} processes of other users could not be looked into, so their sockets show \
             no owner: run as root."
        ));
    }
    if let Some(reason) = &listing.fallback_reason {
        notes.push(format!("read from {} (sock_diag unavailable: {reason})", listing.source.name()));
    }
    if rows.is_empty() {
        notes.push("no TCP socket matches the selection".to_owned());
    }
    for note in notes {
        let _ = writeln!(text, "{note}");
    }

    if let (Some(profile), Some(verdict)) = (expect, verdict) {
        let described = format!("{profile} (dead peer noticed in {})", profile.detection_time());
        if verdict.checked == 0 {
            let _ = writeln!(text, "FAIL: no established TCP socket selected; nothing matches {described}");
        } else if verdict.failed == 0 {
            let _ = writeln!(text, "ok: all {} established sockets have {described}", verdict.checked);
        } else {
            let _ = writeln!(
                text,
                "FAIL: {} of {} established sockets do not have {described}:",
                verdict.failed, verdict.checked
            );
            for row in rows {
                if let Some(problems) = row.problems.as_ref().filter(|p| !p.is_empty()) {
                    let _ = writeln!(
                        text,
                        "  {} -> {} {}: {}",
                        show_addr(&row.socket.local),
                        show_addr(&row.socket.remote),
                        process_text(&row.owners),
                        problems.join("; ")
                    );
                }
            }
        }
    }
    text
}

/// One socket as `--json` prints it.
#[derive(Serialize)]
struct SocketRecord<'a> {
    state: &'static str,
    local: String,
    remote: String,
    inode: u64,
    uid: u32,
    owners: &'a [Owner],
    /// SO_KEEPALIVE etc. from getsockopt, or null.
    options: Option<&'a KeepaliveOptions>,
    /// Why `options` is null.
    options_error: Option<&'a str>,
    timer: Option<TimerRecord>,
    /// With --expect, for established sockets: what does not match (empty = ok).
    problems: Option<&'a [String]>,
}

#[derive(Serialize)]
struct TimerRecord {
    kind: &'static str,
    remaining_ms: u128,
}

#[derive(Serialize)]
struct Report<'a> {
    source: &'static str,
    sockets: Vec<SocketRecord<'a>>,
    expect: Option<ExpectRecord<'a>>,
}

#[derive(Serialize)]
struct ExpectRecord<'a> {
    #[serde(flatten)]
    verdict: &'a Verdict,
    passed: bool,
}

fn json(rows: &[Row], listing: &Listing, verdict: Option<&Verdict>) -> String {
    let sockets = rows
        .iter()
        .map(|row| SocketRecord {
            state: row.socket.state.name(),
            local: show_addr(&row.socket.local),
            remote: show_addr(&row.socket.remote),
            inode: row.socket.inode,
            uid: row.socket.uid,
            owners: &row.owners,
            options: row.options.as_ref().ok(),
            options_error: row.options.as_ref().err().map(String::as_str),
            timer: row
                .socket
                .timer
                .map(|timer| TimerRecord { kind: timer.kind(), remaining_ms: timer.remaining().as_millis() }),
            problems: row.problems.as_deref(),
        })
        .collect();
    let report = Report {
        source: listing.source.name(),
        sockets,
        expect: verdict.map(|verdict| ExpectRecord { verdict, passed: verdict.passed() }),
    };
    // Plain strings, numbers and lists cannot fail to serialize.
    let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
    text.push('\n');
    text
}

/// `--dst`: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    len: u8,
}

impl Network {
    fn parse(text: &str) -> Result<Network, Error> {
        let invalid = |reason: String| Error::Invalid {
            message: format!("--dst {text:?}: {reason}"),
            hint: "accepted: an address or a network, e.g. 192.0.2.7, 10.0.0.0/8, 2001:db8::/32".to_owned(),
        };
        let (addr, len) = match text.trim().split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid(format!("{addr:?} is not an IP address")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(len) => match len.parse::<u8>() {
                Ok(len) if len <= max => len,
                _ => return Err(invalid(format!("prefix length {len:?} is out of range 0..={max}"))),
            },
        };
        Ok(Network { addr, len })
    }

    /// Whether `ip` is inside; IPv4-mapped IPv6 addresses count as IPv4.
    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.len),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.len),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let bits = usize::from(bits);
    let (whole, rest) = (bits / 8, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(keepalive: bool, idle: u32, intvl: u32, cnt: u32, ut: u32) -> KeepaliveOptions {
        KeepaliveOptions { keepalive, idle_secs: idle, interval_secs: intvl, count: cnt, user_timeout_ms: ut }
    }

    #[test]
    fn readable_options_decide() {
        let profile = KeepaliveProfile::parse("2/1/3").unwrap();
        assert!(problems(Some(&options(true, 2, 1, 3, 0)), None, &profile).is_empty());
        // A user timeout the profile does not ask about is not a mismatch.
        assert!(problems(Some(&options(true, 2, 1, 3, 9000)), None, &profile).is_empty());
        let found = problems(Some(&options(false, 7200, 75, 9, 0)), None, &profile);
        assert_eq!(found[0], "SO_KEEPALIVE is off");
        assert_eq!(found.len(), 4);
        let with_ut = KeepaliveProfile::parse("2/1/3/5000").unwrap();
        assert_eq!(
            problems(Some(&options(true, 2, 1, 3, 0)), None, &with_ut),
            ["user timeout 0 ms, expected 5000 ms"]
        );
    }

    #[test]
    fn without_options_the_timer_decides() {
        let profile = KeepaliveProfile::parse("recommended").unwrap();
        let ka = |secs| Some(Timer::Keepalive(Duration::from_secs(secs)));
        assert!(problems(None, ka(299), &profile).is_empty());
        assert!(problems(None, ka(300), &profile).is_empty());
        assert!(problems(None, ka(7140), &profile)[0].starts_with("keepalive timer has 119min left"));
        assert!(problems(None, None, &profile)[0].starts_with("no keepalive timer"));
        let retransmit = Some(Timer::Retransmit(Duration::from_millis(200)));
        assert!(problems(None, retransmit, &profile)[0].starts_with("a retransmit timer is armed"));
    }

    #[test]
    fn nothing_checked_is_a_failure() {
        let verdict = Verdict { profile: "2/1/3".into(), checked: 0, failed: 0 };
        assert!(!verdict.passed());
        let verdict = Verdict { profile: "2/1/3".into(), checked: 2, failed: 0 };
        assert!(verdict.passed());
    }

    #[test]
    fn remaining_reads_like_ss() {
        assert_eq!(remaining(Duration::from_secs(299)), "4min59sec");
        assert_eq!(remaining(Duration::from_secs(7140)), "119min");
        assert_eq!(remaining(Duration::from_secs(59)), "59sec");
        assert_eq!(remaining(Duration::from_millis(200)), "200ms");
    }

    #[test]
    fn networks() {
        let net = Network::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.200.0.2".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let one = Network::parse("192.0.2.7").unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6 = Network::parse("2001:db8::/33").unwrap();
        assert!(v6.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db8:8000::1".parse().unwrap()));
        assert!(Network::parse("0.0.0.0/0").unwrap().contains("203.0.113.9".parse().unwrap()));
        assert!(Network::parse("10.0.0.0/33").unwrap_err().to_string().contains("out of range 0..=32"));
        assert!(Network::parse("db").unwrap_err().to_string().contains("not an IP address"));
    }
}
