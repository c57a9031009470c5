//! `--expect PROFILE`: whether each established socket has the profile.
//!
//! The options read from a copy decide. Without a copy because the owner
//! may not be copied from (not root), the kernel's keepalive timer decides:
//! armed, with at most the profile's idle time left. A socket that cannot
//! be judged — not found in any listing, or its options unreadable for
//! another reason — is reported as such, and fails the check: it is never
//! counted as passing.
use std::time::Duration;

use kawrap_core::KeepaliveProfile;
use serde::Serialize;

use super::gather::{Evidence, Row};
use crate::sockets::remote::KeepaliveOptions;
use crate::sockets::{Timer, ss_duration};

/// What `--expect` made of one socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Judged: what does not match (empty: it matches).
    Judged(Vec<String>),
    /// Not judged, and why.
    NotJudged(String),
}

/// The outcome of `--expect`.
#[derive(Debug, Serialize)]
pub struct Verdict {
    /// The profile, in numbers.
    pub profile: String,
    /// Established sockets judged.
    pub checked: usize,
    /// Of those, how many do not have the profile.
    pub failed: usize,
    /// Sockets of the selection that could not be judged.
    pub not_judged: usize,
}

impl Verdict {
    /// Every selected socket was judged and has the profile, and there was
    /// at least one.
    pub fn passed(&self) -> bool {
        self.checked > 0 && self.failed == 0 && self.not_judged == 0
    }
}

/// Judges every established socket (and every socket whose state is
/// unknown) against `profile`; `None` for the others.
pub fn judge(rows: &[Row], profile: &KeepaliveProfile) -> (Verdict, Vec<Option<Judgement>>) {
    let mut verdict = Verdict { profile: profile.to_string(), checked: 0, failed: 0, not_judged: 0 };
    let judgements = rows
        .iter()
        .map(|row| {
            let judgement = judge_one(row, profile)?;
            match &judgement {
                Judgement::Judged(problems) => {
                    verdict.checked += 1;
                    verdict.failed += usize::from(!problems.is_empty());
                }
                Judgement::NotJudged(_) => verdict.not_judged += 1,
            }
            Some(judgement)
        })
        .collect();
    (verdict, judgements)
}

fn judge_one(row: &Row, profile: &KeepaliveProfile) -> Option<Judgement> {
    Some(match row.evidence()? {
        Evidence::Options(options, timer) => Judgement::Judged(problems(Some(options), timer, profile)),
        Evidence::Timer(timer, _) => Judgement::Judged(problems(None, timer, profile)),
        Evidence::Nothing(why) => Judgement::NotJudged(why),
    })
}

/// Why a socket does not have `profile`; empty when it does.
pub fn problems(
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
            ss_duration(left),
            profile.idle_secs()
        )],
        Some(other) => vec![format!(
            "a {} timer is armed instead of keepalive, and the options are not readable (run as root)",
            other.describe()
        )],
        None => vec!["no keepalive timer: SO_KEEPALIVE is off (options not readable)".to_owned()],
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::commands::check::gather::Unread;
    use crate::sockets::{Source, TcpSocket, TcpState};

    fn options(keepalive: bool, idle: u32, intvl: u32, cnt: u32, ut: u32) -> KeepaliveOptions {
        KeepaliveOptions { keepalive, idle_secs: idle, interval_secs: intvl, count: cnt, user_timeout_ms: ut }
    }

    fn row(socket: Option<TcpSocket>, options: Result<KeepaliveOptions, Unread>) -> Row {
        let listed_by = socket.as_ref().map(|_| Source::SockDiag);
        Row { socket, inode: 7, listed_by, owners: Vec::new(), options }
    }

    fn established(timer: Option<Timer>) -> TcpSocket {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        TcpSocket { state: TcpState::ESTABLISHED, local: addr, remote: addr, timer, uid: 0, inode: 7 }
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
    fn what_cannot_be_judged_never_passes() {
        let profile = KeepaliveProfile::parse("300/30/5").unwrap();
        let good = row(Some(established(None)), Ok(options(true, 300, 30, 5, 0)));
        // The timer would pass it, but the options could not be read for
        // a reason other than permission: not judged.
        let unreadable = row(
            Some(established(Some(Timer::Keepalive(Duration::from_secs(200))))),
            Err(Unread::Failed("pidfd_getfd: kawrap has no file descriptor left".into())),
        );
        let not_found = row(None, Err(Unread::Failed("it lives elsewhere".into())));
        let (verdict, judgements) = judge(&[good, unreadable, not_found], &profile);
        assert_eq!((verdict.checked, verdict.failed, verdict.not_judged), (1, 0, 2));
        assert!(!verdict.passed());
        assert_eq!(judgements[0], Some(Judgement::Judged(Vec::new())));
        assert!(
            matches!(&judgements[1], Some(Judgement::NotJudged(why)) if why.contains("no file descriptor"))
        );
        assert!(matches!(&judgements[2], Some(Judgement::NotJudged(why)) if why.starts_with("not found: ")));
        // Not permitted to copy: the kernel's timer decides, as documented.
        let denied = row(
            Some(established(Some(Timer::Keepalive(Duration::from_secs(200))))),
            Err(Unread::Denied("no".into())),
        );
        let (verdict, _) = judge(&[denied], &profile);
        assert!(verdict.passed());
    }

    #[test]
    fn nothing_checked_is_a_failure() {
        let verdict = Verdict { profile: "2/1/3".into(), checked: 0, failed: 0, not_judged: 0 };
        assert!(!verdict.passed());
        let verdict = Verdict { profile: "2/1/3".into(), checked: 2, failed: 0, not_judged: 0 };
        assert!(verdict.passed());
    }
}
