//! `--keep-under`: a middlebox's idle timeout as a person gives it, and
//! whether a box with that timeout would silently drop a socket.
//!
//! A load balancer, NAT or firewall forgets a TCP flow that has carried no
//! packet for its idle timeout T; the connection is then dead for good,
//! and neither end is told. An idle socket survives only if a keepalive
//! probe crosses the box before T: keepalive on, and a first probe after
//! less than T of silence.
use std::time::Duration;

use kawrap_core::{IdleTimeout, MIDDLEBOXES};

use crate::error::Error;
use crate::sockets::Timer;
use crate::sockets::remote::KeepaliveOptions;

/// The idle timeout `--keep-under` names: a duration or a middlebox name,
/// as kawrap-core reads it.
pub fn resolve(text: &str) -> Result<IdleTimeout, Error> {
    IdleTimeout::parse(text).map_err(|error| Error::Invalid { message: error.to_string(), hint: hint() })
}

fn hint() -> String {
    let names: Vec<String> =
        MIDDLEBOXES.iter().map(|named| format!("{} ({})", named.name, named.idle_timeout)).collect();
    format!(
        "accepted: the box's idle timeout from {} to {} s, as a duration (240s, 4m, 20min, 1h; a plain \
         number is seconds), or a middlebox name: {}",
        IdleTimeout::RANGE.start(),
        IdleTimeout::RANGE.end(),
        names.join(", ")
    )
}

/// What a box with an idle timeout T would do to an established socket
/// left idle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It would forget the flow: no probe crosses it in time.
    Dropped(String),
    /// A probe crosses it in time. `Some` notes a thin margin.
    Kept(Option<String>),
    /// Cannot be told from what is visible (the options are not readable
    /// and the timer does not settle it).
    Unknown(String),
}

impl Verdict {
    /// `dropped`, `kept` or `unknown`: the word JSON and metrics use.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Dropped(_) => "dropped",
            Verdict::Kept(_) => "kept",
            Verdict::Unknown(_) => "unknown",
        }
    }

    /// The reason or note, if any.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Dropped(reason) | Verdict::Unknown(reason) => Some(reason),
            Verdict::Kept(note) => note.as_deref(),
        }
    }
}

/// Would a box that forgets flows idle `timeout` drop this socket, were it
/// left idle? `options` are the socket's own (getsockopt on a copy), or why
/// they cannot be read; then only the kernel's armed timer is known, and
/// the verdict says that it was judged by the timer, or why it could not be.
pub fn judge(
    options: Result<&KeepaliveOptions, &str>,
    timer: Option<Timer>,
    timeout: IdleTimeout,
) -> Verdict {
    match options {
        Ok(options) => judge_options(options, timeout.as_secs()),
        Err(unreadable) => judge_by_timer(timer, timeout.as_secs(), unreadable),
    }
}

fn judge_options(options: &KeepaliveOptions, t: u32) -> Verdict {
    let idle = options.idle_secs;
    if !options.keepalive {
        Verdict::Dropped(
            "SO_KEEPALIVE is off: nothing crosses the box while the connection is idle".to_owned(),
        )
    } else if idle >= t {
        Verdict::Dropped(format!(
            "idle {idle} s ≥ {t} s: the first probe comes after the box forgot the flow"
        ))
    } else if u64::from(idle) * 9 >= u64::from(t) * 8 {
        // The kernel's timer wheel may fire the keepalive timer up to 1/8
        // of its delay late.
        Verdict::Kept(Some(format!(
            "thin margin: with the kernel's timer up to 1/8 late, the first probe may leave after {} s",
            u64::from(idle) * 9 / 8
        )))
    } else {
        Verdict::Kept(None)
    }
}

/// An established socket with keepalive on always has its keepalive timer
/// armed, unless a retransmit or probe timer is shown instead: no timer at
/// all is keepalive off, and a probe further away than `t` is too late.
fn judge_by_timer(timer: Option<Timer>, t: u32, unreadable: &str) -> Verdict {
    let by_timer = format!("judged by the kernel's timer; options not readable: {unreadable}");
    match timer {
        None => Verdict::Dropped(format!("no keepalive timer: SO_KEEPALIVE is off ({by_timer})")),
        Some(Timer::Keepalive(left)) if left >= Duration::from_secs(t.into()) => {
            Verdict::Dropped(format!("the next probe is {} s away, ≥ {t} s ({by_timer})", left.as_secs()))
        }
        Some(Timer::Keepalive(left)) => Verdict::Unknown(format!(
            "keepalive is on, but its idle time is not readable ({unreadable}) and the timer ({} s left) does \
             not tell whether it is below {t} s",
            left.as_secs()
        )),
        Some(other) => Verdict::Unknown(format!(
            "a {} timer hides the keepalive timer, and the options are not readable ({unreadable})",
            other.describe()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(keepalive: bool, idle_secs: u32) -> KeepaliveOptions {
        KeepaliveOptions { keepalive, idle_secs, interval_secs: 30, count: 5, user_timeout_ms: 0 }
    }

    fn t240() -> IdleTimeout {
        IdleTimeout::from_secs(240).unwrap()
    }

    #[test]
    fn readable_options_decide_exactly_at_the_timeout() {
        let verdict = |keepalive, idle| judge(Ok(&options(keepalive, idle)), None, t240()).name();
        assert_eq!(verdict(false, 60), "dropped");
        assert_eq!(verdict(true, 7200), "dropped");
        assert_eq!(verdict(true, 241), "dropped");
        assert_eq!(verdict(true, 240), "dropped");
        assert_eq!(verdict(true, 239), "kept");
        assert_eq!(verdict(true, 180), "kept");
        assert_eq!(verdict(true, 1), "kept");
        // The timer does not matter when the options are known.
        let hidden = Some(Timer::Keepalive(Duration::from_secs(7000)));
        assert_eq!(judge(Ok(&options(true, 100)), hidden, t240()).name(), "kept");
    }

    #[test]
    fn a_thin_margin_is_kept_with_a_note() {
        // 214 × 9/8 = 240.75: may be late.
        let note = judge(Ok(&options(true, 214)), None, t240());
        assert!(matches!(&note, Verdict::Kept(Some(text)) if text.contains("240 s")), "{note:?}");
        assert_eq!(judge(Ok(&options(true, 213)), None, t240()), Verdict::Kept(None));
    }

    #[test]
    fn the_timer_alone_settles_only_some_cases() {
        let timer = |secs| Some(Timer::Keepalive(Duration::from_secs(secs)));
        assert_eq!(judge(Err("not permitted"), None, t240()).name(), "dropped");
        assert_eq!(judge(Err("not permitted"), timer(7100), t240()).name(), "dropped");
        assert_eq!(judge(Err("not permitted"), timer(240), t240()).name(), "dropped");
        assert_eq!(judge(Err("not permitted"), timer(239), t240()).name(), "unknown");
        let retransmit = Some(Timer::Retransmit(Duration::from_millis(200)));
        assert_eq!(judge(Err("not permitted"), retransmit, t240()).name(), "unknown");
        for verdict in
            [judge(Err("not permitted"), None, t240()), judge(Err("not permitted"), timer(239), t240())]
        {
            let reason = verdict.reason().unwrap();
            assert!(reason.contains("not readable"), "{reason}");
        }
    }

    #[test]
    fn the_names_the_help_gives_as_examples_are_middleboxes() {
        // settings.rs and args/check.rs name these in --keep-under's help.
        for name in ["azure-lb", "aws-nlb", "gcp-nat", "ipvs"] {
            assert_eq!(resolve(name).unwrap(), kawrap_core::Middlebox::find(name).unwrap().idle_timeout);
        }
    }

    #[test]
    fn bad_timeouts_name_the_value_and_the_range() {
        let error = resolve("5s").unwrap_err();
        assert_eq!(
            error.to_string(),
            "keep-under \"5s\": idle timeout 5s is out of range 10..=604800 s (10 s to 7 days)"
        );
        let hint = error.hint_lines().join("\n");
        assert!(hint.contains("azure-lb (240 s)") && hint.contains("from 10 to 604800 s"), "{hint}");
        assert!(resolve("aws-alb").unwrap_err().to_string().contains("layer-7"));
        assert_eq!(resolve("azure-lb").unwrap().as_secs(), 240);
    }
}
