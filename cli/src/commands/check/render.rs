//! What `kawrap check` prints: a table for people (process names made
//! printable, as ps shows them), or JSON for machines (exact values,
//! escaped by the JSON encoder).
use std::collections::HashMap;
use std::fmt::Write as _;

use kawrap_core::KeepaliveProfile;
use serde::Serialize;

use super::gather::{Gathered, Loaded, Row, Unread};
use super::judge::{Judgement, Verdict};
use super::keep_under;
use crate::middlebox::Verdict as IdleVerdict;
use crate::output::{columns, printable};
use crate::sockets::owners::Owner;
use crate::sockets::remote::KeepaliveOptions;
use crate::sockets::{TcpSocket, Timer, show_addr};

/// `--expect`'s outcome, when it was given.
pub struct Expectation<'a> {
    pub profile: &'a KeepaliveProfile,
    pub verdict: &'a Verdict,
    /// One per row.
    pub judgements: &'a [Option<Judgement>],
}

/// The table, its notes, and with `--expect` or `--keep-under` the verdict.
pub fn table(
    gathered: &Gathered,
    notes: &[String],
    expect: Option<&Expectation>,
    keep_under: Option<&keep_under::Judged>,
) -> String {
    let rows = &gathered.rows;
    let mut header: Vec<String> =
        ["STATE", "LOCAL", "REMOTE", "PROCESS", "KAWRAP", "KEEPALIVE", "TIMER"].map(str::to_owned).to_vec();
    if expect.is_some() {
        header.push("EXPECT".to_owned());
    }
    if let Some(judged) = keep_under {
        header.push(format!("UNDER {}s", judged.summary.idle_timeout_secs));
    }
    let mut cells: Vec<Vec<String>> = vec![header];
    for (index, row) in rows.iter().enumerate() {
        let socket = row.socket.as_ref();
        let mut line = vec![
            socket.map_or_else(|| "?".to_owned(), |s| s.state.to_string()),
            socket.map_or_else(|| "?".to_owned(), |s| show_addr(&s.local)),
            socket.map_or_else(|| "?".to_owned(), remote_text),
            process_text(&row.owners),
            row.owners.first().map_or_else(|| "-".to_owned(), |o| loaded_text(gathered.loaded.get(&o.pid))),
            row.options.as_ref().map_or_else(|_| "?".to_owned(), ToString::to_string),
            timer_text(row),
        ];
        if let Some(expect) = expect {
            line.push(match &expect.judgements[index] {
                None => String::new(),
                Some(Judgement::Judged(problems)) if problems.is_empty() => "ok".to_owned(),
                Some(Judgement::Judged(problems)) => format!("FAIL: {}", problems.join("; ")),
                Some(Judgement::NotJudged(why)) => format!("NOT JUDGED: {why}"),
            });
        }
        if let Some(judged) = keep_under {
            line.push(idle_verdict_cell(judged.verdicts[index].as_ref()));
        }
        cells.push(line);
    }
    let mut text = columns(&cells);
    for note in table_notes(rows).iter().chain(notes) {
        let _ = writeln!(text, "{note}");
    }
    if let Some(expect) = expect {
        summary(&mut text, rows, expect);
    }
    if let Some(judged) = keep_under {
        keep_under_summary(&mut text, rows, judged);
    }
    text
}

/// `--keep-under`'s cell for one socket.
fn idle_verdict_cell(verdict: Option<&IdleVerdict>) -> String {
    match verdict {
        None => String::new(),
        Some(IdleVerdict::Kept(None)) => "kept".to_owned(),
        Some(IdleVerdict::Kept(Some(note))) => format!("kept ({note})"),
        Some(IdleVerdict::Dropped(reason)) => format!("DROPPED: {reason}"),
        Some(IdleVerdict::Unknown(reason)) => format!("NOT JUDGED: {reason}"),
    }
}

/// `--keep-under`'s verdict, the sockets it is about, and the profile that
/// would keep them.
fn keep_under_summary(text: &mut String, rows: &[Row], judged: &keep_under::Judged) {
    let summary = &judged.summary;
    let t = summary.timeout;
    let the_box = format!("a box that forgets flows idle {t}");
    if summary.checked == 0 {
        let _ = writeln!(text, "ok: no established TCP socket selected, so none {the_box} would drop");
        return;
    }
    if summary.passed() {
        let _ = writeln!(
            text,
            "ok: none of the {} established sockets would be dropped by {the_box}",
            summary.checked
        );
        return;
    }
    let list = |text: &mut String, wanted: fn(&IdleVerdict) -> bool| {
        for (row, verdict) in rows.iter().zip(&judged.verdicts) {
            if let Some(verdict) = verdict.as_ref().filter(|v| wanted(v)) {
                text.push_str(&offender(row, verdict.reason().unwrap_or_default()));
            }
        }
    };
    if summary.dropped > 0 {
        let _ = writeln!(
            text,
            "FAIL: {} of {} established sockets would be silently dropped by {the_box}:",
            summary.dropped, summary.checked
        );
        list(text, |v| matches!(v, IdleVerdict::Dropped(_)));
    }
    if summary.unknown > 0 {
        let _ = writeln!(
            text,
            "FAIL: {} of {} established sockets could not be judged:",
            summary.unknown, summary.checked
        );
        list(text, |v| matches!(v, IdleVerdict::Unknown(_)));
    }
    let profile = KeepaliveProfile::keeping_under(t);
    let _ = writeln!(
        text,
        "A profile that keeps connections under {t}: {profile} (kawrap --keep-under {}s COMMAND, or \
         kawrap attach --profile {profile} PID for a running process)",
        t.as_secs()
    );
}

/// A socket that fails a check, under the verdict: `  LOCAL -> REMOTE PROCESS: why`.
fn offender(row: &Row, why: &str) -> String {
    format!("  {} {}: {why}\n", endpoints(row), process_text(&row.owners))
}

/// What the `?`s and missing rows of this table mean.
fn table_notes(rows: &[Row]) -> Vec<String> {
    let mut notes = Vec::new();
    let reasons = |pick: fn(&Unread) -> bool| {
        let mut found: Vec<&str> = rows
            .iter()
            .filter_map(|row| row.options.as_ref().err())
            .filter(|unread| pick(unread))
            .map(Unread::reason)
            .collect();
        found.dedup();
        found
    };
    if let Some(reason) = reasons(|u| matches!(u, Unread::Denied(_))).first() {
        notes.push(format!(
            "?: options not readable ({reason}); pidfd_getfd needs root or ptrace rights over the owner. \
             TIMER is the kernel's own view either way."
        ));
    }
    let failed = reasons(|u| matches!(u, Unread::Failed(_)));
    if !failed.is_empty() {
        let count = rows.iter().filter(|row| matches!(row.options, Err(Unread::Failed(_)))).count();
        notes.push(format!(
            "?: the options of {count} socket{} could not be read: {}",
            if count == 1 { "" } else { "s" },
            failed.join("; ")
        ));
    }
    if rows.iter().any(|row| row.socket.is_some() && row.listed_by.is_none()) {
        notes.push(
            "TIMER ?: a socket found only through a copy of it (its network namespace could not be listed)"
                .to_owned(),
        );
    }
    if rows.is_empty() {
        notes.push("no TCP socket matches the selection".to_owned());
    }
    notes
}

fn summary(text: &mut String, rows: &[Row], expect: &Expectation) {
    let profile = expect.profile;
    let verdict = expect.verdict;
    let described = format!("{profile} (dead peer noticed in {})", profile.detection_time());
    if verdict.checked == 0 && verdict.not_judged == 0 {
        let _ = writeln!(text, "FAIL: no established TCP socket selected; nothing matches {described}");
    } else if verdict.passed() {
        let _ = writeln!(text, "ok: all {} established sockets have {described}", verdict.checked);
    }
    if verdict.failed > 0 {
        let _ = writeln!(
            text,
            "FAIL: {} of {} established sockets do not have {described}:",
            verdict.failed, verdict.checked
        );
        for (row, judgement) in rows.iter().zip(expect.judgements) {
            if let Some(Judgement::Judged(problems)) = judgement {
                if !problems.is_empty() {
                    text.push_str(&offender(row, &problems.join("; ")));
                }
            }
        }
    }
    if verdict.not_judged > 0 {
        let _ = writeln!(
            text,
            "FAIL: {} socket{} of the selection could not be judged, so nothing is proven about {}:",
            verdict.not_judged,
            if verdict.not_judged == 1 { "" } else { "s" },
            if verdict.not_judged == 1 { "it" } else { "them" },
        );
        for (row, judgement) in rows.iter().zip(expect.judgements) {
            if let Some(Judgement::NotJudged(why)) = judgement {
                text.push_str(&offender(row, why));
            }
        }
    }
}

/// `127.0.0.1:50218 -> 127.0.0.1:5432`, or `socket:[INODE] (fd 4)` for a
/// socket whose addresses are unknown.
fn endpoints(row: &Row) -> String {
    match &row.socket {
        Some(socket) => format!("{} -> {}", show_addr(&socket.local), show_addr(&socket.remote)),
        None => format!("socket:[{}] (fd {})", row.inode, row.owners.first().map_or(-1, |o| o.fd)),
    }
}

fn timer_text(row: &Row) -> String {
    match (row.socket.as_ref(), row.listed_by) {
        (None, _) | (Some(_), None) => "?".to_owned(),
        (Some(TcpSocket { timer: None, .. }), _) => "-".to_owned(),
        (Some(TcpSocket { timer: Some(timer), .. }), _) => timer.to_string(),
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
        [one] => format!("{}/{}", one.pid, printable(&one.comm)),
        [first, rest @ ..] => format!("{}/{} (+{} more)", first.pid, printable(&first.comm), rest.len()),
    }
}

/// `preload`, `bpf`, `preload+bpf`, `no`, or `?` when part is unknown.
fn loaded_text(loaded: Option<&Loaded>) -> String {
    let loaded = loaded.copied().unwrap_or_default();
    let ways: Vec<&str> = [(loaded.preload, "preload"), (loaded.bpf, "bpf")]
        .iter()
        .filter(|(on, _)| *on == Some(true))
        .map(|(_, w)| *w)
        .collect();
    if !ways.is_empty() {
        ways.join("+")
    } else if loaded.preload.is_none() || loaded.bpf.is_none() {
        "?".to_owned()
    } else {
        "no".to_owned()
    }
}

/// One socket as `--json` prints it.
#[derive(Serialize)]
struct SocketRecord<'a> {
    /// `null` when the socket was not found in any listing.
    state: Option<&'static str>,
    local: Option<String>,
    remote: Option<String>,
    inode: u64,
    uid: Option<u32>,
    /// `sock_diag`, `/proc/net/tcp`, or null when known from a copy only.
    listed_by: Option<&'static str>,
    owners: Vec<OwnerRecord<'a>>,
    /// SO_KEEPALIVE etc. from getsockopt, or null.
    options: Option<&'a KeepaliveOptions>,
    /// Why `options` is null.
    options_error: Option<&'a str>,
    timer: Option<TimerRecord>,
    /// With --expect, for judged sockets: what does not match (empty = ok).
    problems: Option<&'a [String]>,
    /// With --expect: why the socket could not be judged.
    not_judged: Option<&'a str>,
    /// With --keep-under: would the box drop it?
    keep_under: Option<IdleVerdictRecord<'a>>,
}

#[derive(Serialize)]
struct IdleVerdictRecord<'a> {
    /// `dropped`, `kept` or `unknown`.
    verdict: &'static str,
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct OwnerRecord<'a> {
    #[serde(flatten)]
    owner: &'a Owner,
    /// Whether kawrap is loaded in the process (null: unknown).
    kawrap: Loaded,
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
    notes: &'a [String],
    expect: Option<ExpectRecord<'a>>,
    keep_under: Option<KeepUnderRecord<'a>>,
}

#[derive(Serialize)]
struct KeepUnderRecord<'a> {
    #[serde(flatten)]
    summary: &'a keep_under::Summary,
    passed: bool,
}

#[derive(Serialize)]
struct ExpectRecord<'a> {
    #[serde(flatten)]
    verdict: &'a Verdict,
    passed: bool,
}

/// The report as JSON.
pub fn json(
    gathered: &Gathered,
    notes: &[String],
    expect: Option<&Expectation>,
    keep_under: Option<&keep_under::Judged>,
) -> String {
    let loaded: &HashMap<u32, Loaded> = &gathered.loaded;
    let sockets = gathered
        .rows
        .iter()
        .enumerate()
        .map(|(index, row)| {
            let socket = row.socket.as_ref();
            let judgement = expect.and_then(|e| e.judgements[index].as_ref());
            SocketRecord {
                state: socket.map(|s| s.state.name()),
                local: socket.map(|s| show_addr(&s.local)),
                remote: socket.map(|s| show_addr(&s.remote)),
                inode: row.inode,
                uid: socket.map(|s| s.uid),
                listed_by: row.listed_by.map(|source| source.name()),
                owners: row
                    .owners
                    .iter()
                    .map(|owner| OwnerRecord {
                        owner,
                        kawrap: loaded.get(&owner.pid).copied().unwrap_or_default(),
                    })
                    .collect(),
                options: row.options.as_ref().ok(),
                options_error: row.options.as_ref().err().map(Unread::reason),
                timer: socket.and_then(|s| s.timer).map(|timer: Timer| TimerRecord {
                    kind: timer.kind(),
                    remaining_ms: timer.remaining().as_millis(),
                }),
                problems: match judgement {
                    Some(Judgement::Judged(problems)) => Some(problems),
                    _ => None,
                },
                not_judged: match judgement {
                    Some(Judgement::NotJudged(why)) => Some(why),
                    _ => None,
                },
                keep_under: keep_under
                    .and_then(|judged| judged.verdicts[index].as_ref())
                    .map(|verdict| IdleVerdictRecord { verdict: verdict.name(), reason: verdict.reason() }),
            }
        })
        .collect();
    let report = Report {
        source: gathered.source.name(),
        sockets,
        notes,
        expect: expect.map(|e| ExpectRecord { verdict: e.verdict, passed: e.verdict.passed() }),
        keep_under: keep_under
            .map(|judged| KeepUnderRecord { summary: &judged.summary, passed: judged.summary.passed() }),
    };
    // Plain strings, numbers and lists cannot fail to serialize.
    let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_reads_in_one_word() {
        let text = |preload, bpf| loaded_text(Some(&Loaded { preload, bpf }));
        assert_eq!(text(Some(true), Some(false)), "preload");
        assert_eq!(text(Some(true), None), "preload");
        assert_eq!(text(Some(false), Some(true)), "bpf");
        assert_eq!(text(Some(true), Some(true)), "preload+bpf");
        assert_eq!(text(Some(false), Some(false)), "no");
        assert_eq!(text(Some(false), None), "?");
        assert_eq!(loaded_text(None), "?");
    }

    #[test]
    fn keep_under_cells_say_the_verdict_first() {
        assert_eq!(idle_verdict_cell(None), "");
        assert_eq!(idle_verdict_cell(Some(&IdleVerdict::Kept(None))), "kept");
        let dropped = IdleVerdict::Dropped("SO_KEEPALIVE is off".into());
        assert_eq!(idle_verdict_cell(Some(&dropped)), "DROPPED: SO_KEEPALIVE is off");
        assert_eq!(idle_verdict_cell(Some(&IdleVerdict::Unknown("why".into()))), "NOT JUDGED: why");
    }

    #[test]
    fn process_names_are_printable() {
        let owner = Owner { pid: 7, comm: "\u{1b}[8mx\ny".to_owned(), fd: 3 };
        assert_eq!(process_text(&[owner]), "7/?[8mx?y");
    }
}
