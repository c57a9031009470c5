//! `kawrap check --format prometheus`: the fleet's view for node_exporter's
//! textfile collector. Every series of a family is written, zeros included,
//! so that a dashboard or an alert never mistakes "none" for "unknown".
//!
//! - `kawrap_tcp_established_sockets{keepalive}`: on, off, or unknown (the
//!   options not readable and a retransmit timer hiding the keepalive one).
//! - `kawrap_tcp_established_sockets_by_process{comm,keepalive}`.
//! - with `--keep-under`: `kawrap_keep_under_sockets{idle_timeout_seconds,
//!   verdict}` (dropped, kept, unknown) and
//!   `kawrap_keep_under_dropped_sockets_by_process{idle_timeout_seconds,comm}`.
//! - kawrap's eBPF attachments: `kawrap_bpf_attachments`, one
//!   `kawrap_bpf_attachment_info` each, and their counters.
use std::collections::BTreeMap;

use super::gather::{Gathered, Row};
use super::keep_under::Judged;
use crate::bpf_mode::Attachments;
use crate::middlebox::Verdict;
use crate::output::prometheus::{Exposition, Family, Kind};
use crate::sockets::{TcpState, Timer};

const KEEPALIVE_STATES: [&str; 3] = ["on", "off", "unknown"];
const VERDICTS: [&str; 3] = ["dropped", "kept", "unknown"];

/// The exposition for the selected sockets (and the eBPF attachments);
/// `notes`, what a person should know, as comments.
pub fn render(
    gathered: &Gathered,
    notes: &[String],
    keep_under: Option<&Judged>,
    attachments: &Attachments,
) -> String {
    let mut out = Exposition::default();
    out.comment("kawrap check: TCP keepalive of this host's established sockets (kawrap profiles, kawrap check --help)");
    for note in notes {
        out.comment(note);
    }
    let established: Vec<&Row> = gathered.rows.iter().filter(|row| is_established(row)).collect();
    let by_timer = established.iter().filter(|row| row.options.is_err()).count();
    if by_timer > 0 {
        out.comment(&format!(
            "{by_timer} sockets' options were not readable (run as root): keepalive judged by the kernel's timer"
        ));
    }
    keepalive_families(&mut out, &established);
    if let Some(judged) = keep_under {
        keep_under_families(&mut out, &gathered.rows, judged);
    }
    bpf::families(&mut out, attachments);
    out.into_text()
}

fn is_established(row: &Row) -> bool {
    row.socket.as_ref().is_some_and(|socket| socket.state == TcpState::ESTABLISHED)
}

/// `on`, `off` or `unknown`: from the options when readable, else from the
/// kernel's timer when the socket was listed (an established socket with
/// keepalive on always has its keepalive timer armed, unless a retransmit
/// or probe timer is shown instead).
fn keepalive_state(row: &Row) -> &'static str {
    let timer = row.socket.as_ref().and_then(|socket| socket.timer);
    match (&row.options, row.listed_by, timer) {
        (Ok(options), _, _) if options.keepalive => "on",
        (Ok(_), _, _) => "off",
        (Err(_), None, _) => "unknown",
        (Err(_), Some(_), None) => "off",
        (Err(_), Some(_), Some(Timer::Keepalive(_))) => "on",
        (Err(_), Some(_), Some(_)) => "unknown",
    }
}

/// The process name for labels: the first owner's `comm`, empty when no
/// process we may look into holds the socket.
fn comm(row: &Row) -> &str {
    row.owners.first().map_or("", |owner| owner.comm.as_str())
}

fn keepalive_families(out: &mut Exposition, established: &[&Row]) {
    let mut totals: BTreeMap<&str, u64> = KEEPALIVE_STATES.iter().map(|state| (*state, 0)).collect();
    let mut by_process: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for row in established {
        let state = keepalive_state(row);
        *totals.entry(state).or_default() += 1;
        let counts = by_process
            .entry(comm(row))
            .or_insert_with(|| KEEPALIVE_STATES.iter().map(|state| (*state, 0)).collect());
        *counts.entry(state).or_default() += 1;
    }
    let mut family = Family::new(
        "kawrap_tcp_established_sockets",
        Kind::Gauge,
        "Established TCP sockets by SO_KEEPALIVE: on, off, or unknown (options not readable, timer hidden).",
    );
    for (state, count) in &totals {
        family.sample(&[("keepalive", state)], *count);
    }
    out.push(&family);
    let mut family = Family::new(
        "kawrap_tcp_established_sockets_by_process",
        Kind::Gauge,
        "Established TCP sockets by the name (comm) of the first process holding them (empty: none that \
         kawrap may look into), and SO_KEEPALIVE.",
    );
    for (comm, counts) in &by_process {
        for (state, count) in counts {
            family.sample(&[("comm", comm), ("keepalive", state)], *count);
        }
    }
    out.push(&family);
}

fn keep_under_families(out: &mut Exposition, rows: &[Row], judged: &Judged) {
    let summary = &judged.summary;
    let timeout = summary.idle_timeout_secs.to_string();
    let mut family = Family::new(
        "kawrap_keep_under_sockets",
        Kind::Gauge,
        "Established TCP sockets a middlebox forgetting flows idle idle_timeout_seconds would drop, would keep, \
         or that could not be judged (options not readable).",
    );
    for (verdict, count) in VERDICTS.iter().zip([summary.dropped, summary.kept(), summary.unknown]) {
        family.sample(&[("idle_timeout_seconds", &timeout), ("verdict", verdict)], count as u64);
    }
    out.push(&family);
    let mut dropped: BTreeMap<&str, u64> = BTreeMap::new();
    for (row, verdict) in rows.iter().zip(&judged.verdicts).filter(|(_, verdict)| verdict.is_some()) {
        *dropped.entry(comm(row)).or_default() += u64::from(matches!(verdict, Some(Verdict::Dropped(_))));
    }
    let mut family = Family::new(
        "kawrap_keep_under_dropped_sockets_by_process",
        Kind::Gauge,
        "Established TCP sockets such a middlebox would drop, by the name (comm) of the first process holding them.",
    );
    for (comm, count) in &dropped {
        family.sample(&[("idle_timeout_seconds", &timeout), ("comm", comm)], *count);
    }
    out.push(&family);
}

#[cfg(feature = "bpf")]
mod bpf {
    use kawrap_bpf::{AttachedBy, Attachment};

    use crate::bpf_mode::Attachments;
    use crate::output::prometheus::{Exposition, Family, Kind};

    /// kawrap's eBPF attachments and their counters.
    pub fn families(out: &mut Exposition, attachments: &Attachments) {
        match attachments.status() {
            Ok(status) => push(out, &status.attachments),
            Err(error) => out
                .comment(&format!("no kawrap_bpf_* series: the eBPF attachments could not be read: {error}")),
        }
    }

    /// `run` (kawrap --bpf), `attach` (kawrap bpf attach) or `pinned` (kawrap bpf pin).
    fn attached_by(attachment: &Attachment) -> &'static str {
        match attachment.attached_by {
            AttachedBy::Run { .. } => "run",
            AttachedBy::Attach => "attach",
            AttachedBy::Pinned { .. } => "pinned",
        }
    }

    fn push(out: &mut Exposition, attachments: &[Attachment]) {
        let mut count = Family::new(
            "kawrap_bpf_attachments",
            Kind::Gauge,
            "Cgroups kawrap's eBPF programs are attached to.",
        );
        count.sample(&[], attachments.len() as u64);
        out.push(&count);
        let mut info = Family::new(
            "kawrap_bpf_attachment_info",
            Kind::Gauge,
            "One per eBPF attachment (value 1): its cgroup, who attached it (run, attach, pinned) and the \
             values in force (empty when unreadable).",
        );
        let mut connections = Family::new(
            "kawrap_bpf_connections_total",
            Kind::Counter,
            "TCP connections of the cgroup given a profile by kawrap's sock_ops program, by direction.",
        );
        let mut own_settings = Family::new(
            "kawrap_bpf_own_settings_total",
            Kind::Counter,
            "The programs' own keepalive setsockopt calls: replaced by the profile (policy force) or kept (respect).",
        );
        let mut refused = Family::new(
            "kawrap_bpf_refused_total",
            Kind::Counter,
            "Keepalive settings the kernel refused (bpf_setsockopt errors); should stay 0.",
        );
        for attachment in attachments {
            let id = attachment.cgroup_id.to_string();
            let at = [("cgroup", attachment.cgroup.as_str()), ("cgroup_id", id.as_str())];
            let (profile, policy) = match &attachment.config {
                Ok(config) => (config.profile.to_string(), config.policy.name()),
                Err(_) => (String::new(), ""),
            };
            let by = attached_by(attachment);
            info.sample(&[at[0], at[1], ("attached_by", by), ("profile", &profile), ("policy", policy)], 1);
            let counters = &attachment.counters;
            connections.sample(&[at[0], at[1], ("direction", "connect")], counters.connect);
            connections.sample(&[at[0], at[1], ("direction", "accept")], counters.passive);
            own_settings.sample(&[at[0], at[1], ("action", "replaced")], counters.forced);
            own_settings.sample(&[at[0], at[1], ("action", "kept")], counters.respected);
            refused.sample(&at, counters.failed);
        }
        for family in [&info, &connections, &own_settings, &refused] {
            out.push(family);
        }
    }
}

#[cfg(not(feature = "bpf"))]
mod bpf {
    use crate::bpf_mode::Attachments;
    use crate::output::prometheus::Exposition;

    /// No eBPF mode in this build: a comment says so.
    pub fn families(out: &mut Exposition, _: &Attachments) {
        out.comment(
            "no kawrap_bpf_* series: this kawrap was built without the eBPF mode (cargo feature bpf)",
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use kawrap_core::IdleTimeout;

    use super::*;
    use crate::commands::check::gather::{Unread, established_row};
    use crate::commands::check::keep_under;
    use crate::sockets::Source;
    use crate::sockets::owners::Owner;
    use crate::sockets::remote::KeepaliveOptions;

    fn row(comm: &str, options: Option<(bool, u32)>, timer: Option<Timer>) -> Row {
        let options = options
            .map(|(keepalive, idle_secs)| KeepaliveOptions {
                keepalive,
                idle_secs,
                interval_secs: 30,
                count: 5,
                user_timeout_ms: 0,
            })
            .ok_or_else(|| Unread::Denied("not permitted".to_owned()));
        established_row(options, timer, vec![Owner { pid: 7, comm: comm.to_owned(), fd: 3 }])
    }

    fn gathered(rows: Vec<Row>) -> Gathered {
        Gathered { rows, loaded: HashMap::new(), source: Source::SockDiag, notes: Vec::new() }
    }

    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|line| !line.starts_with('#')).collect()
    }

    #[test]
    fn sockets_by_keepalive_and_process() {
        let keepalive = Some(Timer::Keepalive(Duration::from_secs(100)));
        let retransmit = Some(Timer::Retransmit(Duration::from_millis(200)));
        let mut copied_only = row("curl", None, None);
        copied_only.listed_by = None;
        let gathered = gathered(vec![
            row("psql", Some((true, 300)), None),
            row("psql", Some((false, 7200)), None),
            row("say \"hi\"\\", None, keepalive),
            row("say \"hi\"\\", None, None),
            row("curl", None, retransmit),
            copied_only,
        ]);
        let text = render(&gathered, &["a note\nover two lines".to_owned()], None, &Attachments::default());
        let samples = samples(&text);
        for expected in [
            r#"kawrap_tcp_established_sockets{keepalive="off"} 2"#,
            r#"kawrap_tcp_established_sockets{keepalive="on"} 2"#,
            r#"kawrap_tcp_established_sockets{keepalive="unknown"} 2"#,
            r#"kawrap_tcp_established_sockets_by_process{comm="psql",keepalive="on"} 1"#,
            r#"kawrap_tcp_established_sockets_by_process{comm="psql",keepalive="off"} 1"#,
            r#"kawrap_tcp_established_sockets_by_process{comm="psql",keepalive="unknown"} 0"#,
            r#"kawrap_tcp_established_sockets_by_process{comm="say \"hi\"\\",keepalive="on"} 1"#,
            r#"kawrap_tcp_established_sockets_by_process{comm="curl",keepalive="unknown"} 2"#,
        ] {
            assert!(samples.contains(&expected), "{expected} not in\n{text}");
        }
        assert!(text.contains("\n# a note\n# over two lines\n"), "{text}");
        assert!(text.contains("# 4 sockets' options were not readable"), "{text}");
        assert!(!text.contains("kawrap_keep_under"), "{text}");
        assert!(text.contains("kawrap_bpf_"), "the eBPF part is there or says why not:\n{text}");
    }

    #[cfg(not(feature = "bpf"))]
    #[test]
    fn without_the_ebpf_mode_a_comment_says_why_its_series_are_missing() {
        let text = render(&gathered(Vec::new()), &[], None, &Attachments::default());
        assert!(
            text.contains("\n# no kawrap_bpf_* series: this kawrap was built without the eBPF mode"),
            "{text}"
        );
        assert!(!text.lines().any(|line| line.starts_with("kawrap_bpf_")), "{text}");
    }

    #[test]
    fn keep_under_counts_the_verdicts() {
        let gathered = gathered(vec![
            row("a", Some((true, 239)), None),
            row("a", Some((true, 240)), None),
            row("b", Some((false, 60)), None),
            row("c", None, Some(Timer::Keepalive(Duration::from_secs(100)))),
        ]);
        let judged = keep_under::judge(&gathered.rows, IdleTimeout::from_secs(240).unwrap());
        let text = render(&gathered, &[], Some(&judged), &Attachments::default());
        let samples = samples(&text);
        for expected in [
            r#"kawrap_keep_under_sockets{idle_timeout_seconds="240",verdict="dropped"} 2"#,
            r#"kawrap_keep_under_sockets{idle_timeout_seconds="240",verdict="kept"} 1"#,
            r#"kawrap_keep_under_sockets{idle_timeout_seconds="240",verdict="unknown"} 1"#,
            r#"kawrap_keep_under_dropped_sockets_by_process{idle_timeout_seconds="240",comm="a"} 1"#,
            r#"kawrap_keep_under_dropped_sockets_by_process{idle_timeout_seconds="240",comm="b"} 1"#,
            r#"kawrap_keep_under_dropped_sockets_by_process{idle_timeout_seconds="240",comm="c"} 0"#,
        ] {
            assert!(samples.contains(&expected), "{expected} not in\n{text}");
        }
    }
}
