//! `kawrap check --keep-under TIMEOUT`: which established sockets a
//! middlebox that forgets flows idle TIMEOUT would silently drop, each
//! judged by `middlebox::judge`. A socket that cannot be judged (not
//! found, or its options unreadable for a reason the timer cannot make up
//! for) is reported as such, and is never counted as kept.
use kawrap_core::IdleTimeout;
use serde::Serialize;

use super::gather::{Evidence, Row};
use crate::middlebox::{self, Verdict};

/// The outcome of `--keep-under`, in numbers.
#[derive(Debug, Serialize)]
pub struct Summary {
    #[serde(skip)]
    pub timeout: IdleTimeout,
    pub idle_timeout_secs: u32,
    /// Established sockets judged, plus those that could not be.
    pub checked: usize,
    /// Those the box would drop.
    pub dropped: usize,
    /// Those that could not be judged.
    pub unknown: usize,
}

impl Summary {
    /// Nothing would be dropped, and everything could be judged.
    pub fn passed(&self) -> bool {
        self.dropped == 0 && self.unknown == 0
    }

    /// Those a probe would keep alive.
    pub fn kept(&self) -> usize {
        self.checked - self.dropped - self.unknown
    }
}

/// The summary, and one verdict per row (`None`: not established).
#[derive(Debug)]
pub struct Judged {
    pub summary: Summary,
    pub verdicts: Vec<Option<Verdict>>,
}

/// Judges every established socket (and every socket whose state is
/// unknown) for a box with this idle timeout.
pub fn judge(rows: &[Row], timeout: IdleTimeout) -> Judged {
    let mut summary =
        Summary { timeout, idle_timeout_secs: timeout.as_secs(), checked: 0, dropped: 0, unknown: 0 };
    let verdicts = rows
        .iter()
        .map(|row| {
            let verdict = judge_one(row, timeout)?;
            summary.checked += 1;
            summary.dropped += usize::from(matches!(verdict, Verdict::Dropped(_)));
            summary.unknown += usize::from(matches!(verdict, Verdict::Unknown(_)));
            Some(verdict)
        })
        .collect();
    Judged { summary, verdicts }
}

fn judge_one(row: &Row, timeout: IdleTimeout) -> Option<Verdict> {
    Some(match row.evidence()? {
        Evidence::Options(options, timer) => middlebox::judge(Ok(options), timer, timeout),
        Evidence::Timer(timer, unreadable) => middlebox::judge(Err(unreadable), timer, timeout),
        Evidence::Nothing(why) => Verdict::Unknown(why),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::commands::check::gather::{Unread, established_row};
    use crate::sockets::remote::KeepaliveOptions;
    use crate::sockets::{Source, TcpState, Timer};

    fn row(
        state: TcpState,
        options: Result<KeepaliveOptions, Unread>,
        listed: bool,
        timer: Option<Timer>,
    ) -> Row {
        let mut row = established_row(options, timer, Vec::new());
        if let Some(socket) = row.socket.as_mut() {
            socket.state = state;
        }
        row.listed_by = listed.then_some(Source::SockDiag);
        row
    }

    fn on(idle_secs: u32) -> Result<KeepaliveOptions, Unread> {
        Ok(KeepaliveOptions { keepalive: true, idle_secs, interval_secs: 30, count: 5, user_timeout_ms: 0 })
    }

    #[test]
    fn established_sockets_are_judged_and_counted() {
        let est = TcpState::ESTABLISHED;
        let denied = || Err(Unread::Denied("not permitted".into()));
        let rows = [
            row(est, on(239), true, None),
            row(est, on(240), true, None),
            row(TcpState(10), on(7200), true, None),
            row(est, denied(), true, None),
            row(est, denied(), true, Some(Timer::Keepalive(Duration::from_secs(100)))),
            row(est, denied(), false, None),
            row(est, Err(Unread::Failed("EMFILE".into())), true, None),
        ];
        let judged = judge(&rows, IdleTimeout::from_secs(240).unwrap());
        let names: Vec<Option<&str>> =
            judged.verdicts.iter().map(|v| v.as_ref().map(Verdict::name)).collect();
        assert_eq!(
            names,
            [
                Some("kept"),
                Some("dropped"),
                None,
                Some("dropped"),
                Some("unknown"),
                Some("unknown"),
                Some("unknown")
            ]
        );
        let summary = &judged.summary;
        assert_eq!((summary.checked, summary.dropped, summary.unknown, summary.kept()), (6, 2, 3, 1));
        assert!(!summary.passed());
        let Some(Verdict::Unknown(why)) = &judged.verdicts[6] else { panic!() };
        assert_eq!(why, "options not readable: EMFILE");
    }

    #[test]
    fn a_socket_not_found_is_not_judged() {
        let mut lost = row(TcpState::ESTABLISHED, Err(Unread::Failed("gone".into())), false, None);
        lost.socket = None;
        let judged = judge(&[lost], IdleTimeout::from_secs(240).unwrap());
        assert_eq!(judged.verdicts[0], Some(Verdict::Unknown("not found: gone".into())));
        assert!(!judged.summary.passed());
    }
}
