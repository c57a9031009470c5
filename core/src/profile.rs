//! Keepalive profiles: what one TCP socket is told about dead-peer detection.
use core::fmt;
use core::ops::RangeInclusive;

use crate::duration::{HumanDuration, parse_duration_ms};
use crate::keep_under::{IdleTimeout, KeepUnderErrorKind, Layer7Proxy, MIDDLEBOXES, Middlebox, write_names};
use crate::number::{is_digits, parse_u64};
use crate::quoted::Quoted;

/// The keepalive settings kawrap gives a TCP socket.
///
/// Applying a profile means `SO_KEEPALIVE=1` plus the three timing options
/// below, and `TCP_USER_TIMEOUT` only when the profile asks for it.
/// Every field is within the kernel's accepted range by construction:
/// the only way to build one is [`KeepaliveProfile::new`] or a parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeepaliveProfile {
    idle_secs: u16,
    interval_secs: u16,
    count: u8,
    user_timeout_ms: Option<u32>,
}

/// One of the four numbers of a profile, with the range the kernel accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `TCP_KEEPIDLE`: seconds a connection must be idle before the
    /// first keepalive probe is sent (kernel default 7200).
    Idle,
    /// `TCP_KEEPINTVL`: seconds between unanswered probes (default 75).
    Interval,
    /// `TCP_KEEPCNT`: unanswered probes before the kernel drops the
    /// connection with `ETIMEDOUT` (default 9).
    Count,
    /// `TCP_USER_TIMEOUT`: milliseconds transmitted data may stay
    /// unacknowledged before the connection is dropped (0 = kernel default,
    /// off). The only option that catches a peer dying mid-transfer, since
    /// keepalive probes are not sent while data is in flight.
    UserTimeout,
}

impl Field {
    /// The accepted range, in the field's own unit.
    pub const fn range(self) -> RangeInclusive<u64> {
        match self {
            Field::Idle | Field::Interval => 1..=32767,
            Field::Count => 1..=127,
            Field::UserTimeout => 0..=i32::MAX as u64,
        }
    }

    /// The field's name as messages say it.
    pub const fn name(self) -> &'static str {
        match self {
            Field::Idle => "idle",
            Field::Interval => "interval",
            Field::Count => "count",
            Field::UserTimeout => "user timeout",
        }
    }

    const fn unit(self) -> &'static str {
        match self {
            Field::Idle | Field::Interval => " s",
            Field::Count => "",
            Field::UserTimeout => " ms",
        }
    }
}

impl KeepaliveProfile {
    /// Builds a profile, checking every value against the kernel's range.
    pub fn new(
        idle_secs: u64,
        interval_secs: u64,
        count: u64,
        user_timeout_ms: Option<u64>,
    ) -> Result<Self, (Field, u64)> {
        let check = |field: Field, value: u64| {
            if field.range().contains(&value) { Ok(value) } else { Err((field, value)) }
        };
        Ok(KeepaliveProfile {
            idle_secs: check(Field::Idle, idle_secs)? as u16,
            interval_secs: check(Field::Interval, interval_secs)? as u16,
            count: check(Field::Count, count)? as u8,
            user_timeout_ms: match user_timeout_ms {
                Some(ms) => Some(check(Field::UserTimeout, ms)? as u32),
                None => None,
            },
        })
    }

    /// The profile that keeps a connection under a middlebox's idle
    /// timeout: the formula of [`crate::keep_under`], no user timeout.
    pub const fn keeping_under(timeout: IdleTimeout) -> Self {
        let timings = timeout.timings();
        KeepaliveProfile {
            idle_secs: timings.idle_secs,
            interval_secs: timings.interval_secs,
            count: timings.count,
            user_timeout_ms: None,
        }
    }

    /// Parses a built-in profile name, the shorthand `IDLE/INTVL/CNT[/UT]`,
    /// or `under:TIMEOUT`.
    ///
    /// Surrounding spaces are ignored, around the whole and around each
    /// field. `UT` is `auto` (the keepalive detection time), plain
    /// milliseconds, or a duration with units (`450s`, `7m30s`, `500ms`).
    /// `under:TIMEOUT` is [`Self::keeping_under`] a middlebox's idle
    /// timeout, as [`IdleTimeout::parse`] reads it (`under:240s`,
    /// `under:azure-lb`).
    pub fn parse(input: &str) -> Result<Self, ProfileError<'_>> {
        let text = input.trim();
        let error = |kind| ProfileError { input, kind };
        if text.is_empty() {
            return Err(error(ProfileErrorKind::Empty));
        }
        if let Some(named) = NamedProfile::find(text) {
            return Ok(named.profile);
        }
        if let Some(timeout) = strip_prefix_ignore_case(text, UNDER_PREFIX) {
            let timeout =
                IdleTimeout::parse_kind(timeout).map_err(|kind| error(ProfileErrorKind::KeepUnder(kind)))?;
            return Ok(Self::keeping_under(timeout));
        }
        if let Some(proxy) = Layer7Proxy::find(text) {
            return Err(error(ProfileErrorKind::KeepUnder(KeepUnderErrorKind::Layer7Proxy(proxy))));
        }
        if !text.contains('/') {
            return Err(error(ProfileErrorKind::Unknown));
        }
        let mut fields = text.split('/');
        let mut numbers = [0u64; 3];
        for (slot, field) in numbers.iter_mut().zip([Field::Idle, Field::Interval, Field::Count]) {
            let token = fields.next().map(str::trim).unwrap_or("");
            *slot = number_in_range(field, token).map_err(error)?;
        }
        let user_timeout = fields.next().map(str::trim);
        if fields.next().is_some() {
            return Err(error(ProfileErrorKind::TooManyFields));
        }
        // Each number was checked against its field's range just above.
        let mut profile = KeepaliveProfile {
            idle_secs: numbers[0] as u16,
            interval_secs: numbers[1] as u16,
            count: numbers[2] as u8,
            user_timeout_ms: None,
        };
        if let Some(token) = user_timeout {
            let spec = UserTimeout::parse(token).map_err(error)?;
            profile = profile.with_user_timeout(spec).map_err(error)?;
        }
        Ok(profile)
    }

    /// The same profile with `TCP_USER_TIMEOUT` set (or replaced).
    pub fn with_user_timeout<'a>(self, spec: UserTimeout) -> Result<Self, ProfileErrorKind<'a>> {
        let ms = match spec {
            UserTimeout::Millis(ms) => u64::from(ms),
            UserTimeout::Auto => u64::from(self.detection_secs()) * 1000,
        };
        if !Field::UserTimeout.range().contains(&ms) {
            return Err(ProfileErrorKind::AutoUserTimeoutTooLong { ms });
        }
        Ok(KeepaliveProfile { user_timeout_ms: Some(ms as u32), ..self })
    }

    /// The same profile without `TCP_USER_TIMEOUT`.
    pub fn without_user_timeout(self) -> Self {
        KeepaliveProfile { user_timeout_ms: None, ..self }
    }

    /// `TCP_KEEPIDLE`, seconds of silence before the first probe.
    pub const fn idle_secs(&self) -> u16 {
        self.idle_secs
    }

    /// `TCP_KEEPINTVL`, seconds between probes.
    pub fn interval_secs(&self) -> u16 {
        self.interval_secs
    }

    /// `TCP_KEEPCNT`, unanswered probes before the connection is dropped.
    pub fn count(&self) -> u8 {
        self.count
    }

    /// `TCP_USER_TIMEOUT` in milliseconds, if the profile sets it.
    pub fn user_timeout_ms(&self) -> Option<u32> {
        self.user_timeout_ms
    }

    /// Seconds from the last packet of an idle connection to the error
    /// the program sees when the peer has vanished: idle + interval × count.
    pub fn detection_secs(&self) -> u32 {
        u32::from(self.idle_secs) + u32::from(self.interval_secs) * u32::from(self.count)
    }

    /// [`Self::detection_secs`] for people: `7 min 30 s`.
    pub fn detection_time(&self) -> HumanDuration {
        HumanDuration::from_secs(u64::from(self.detection_secs()))
    }
}

/// The canonical numeric form, `IDLE/INTVL/CNT` or `IDLE/INTVL/CNT/UTms`
/// with the user timeout in milliseconds. It parses back to the same value.
impl fmt::Display for KeepaliveProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.idle_secs, self.interval_secs, self.count)?;
        if let Some(ms) = self.user_timeout_ms {
            write!(f, "/{ms}")?;
        }
        Ok(())
    }
}

/// What a profile that keeps a connection under a middlebox's idle
/// timeout starts with: `under:240s`.
pub const UNDER_PREFIX: &str = "under:";

/// `text` without `prefix`, if it starts with it in any ASCII case.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

fn number_in_range(field: Field, token: &str) -> Result<u64, ProfileErrorKind<'_>> {
    if !is_digits(token) {
        return Err(ProfileErrorKind::NotANumber { field, token });
    }
    match parse_u64(token) {
        Some(value) if field.range().contains(&value) => Ok(value),
        _ => Err(ProfileErrorKind::OutOfRange { field, token }),
    }
}

/// How `TCP_USER_TIMEOUT` was written: `auto` or an explicit duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserTimeout {
    /// `auto`: as long as keepalive takes to notice a dead idle peer,
    /// (idle + interval × count) × 1000 ms.
    Auto,
    /// Milliseconds, within 0..=i32::MAX.
    Millis(u32),
}

impl UserTimeout {
    /// Parses `auto`, plain milliseconds (`4500`), or a duration with units
    /// (`450s`, `7m30s`, `500ms`, `1h`).
    pub fn parse(token: &str) -> Result<Self, ProfileErrorKind<'_>> {
        let token = token.trim();
        if token.eq_ignore_ascii_case("auto") {
            return Ok(UserTimeout::Auto);
        }
        let ms = if is_digits(token) {
            parse_u64(token)
        } else {
            parse_duration_ms(token).map_err(|()| ProfileErrorKind::BadUserTimeout { token })?
        };
        match ms {
            Some(ms) if Field::UserTimeout.range().contains(&ms) => Ok(UserTimeout::Millis(ms as u32)),
            _ => Err(ProfileErrorKind::OutOfRange { field: Field::UserTimeout, token }),
        }
    }
}

/// A built-in profile and what it is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedProfile {
    /// The name users type.
    pub name: &'static str,
    /// Its values.
    pub profile: KeepaliveProfile,
    /// One line on when to use it.
    pub purpose: &'static str,
    /// For a middlebox's name: the idle timeout the profile keeps
    /// connections under.
    pub idle_timeout: Option<IdleTimeout>,
}

const fn builtin(
    name: &'static str,
    idle: u16,
    interval: u16,
    count: u8,
    purpose: &'static str,
) -> NamedProfile {
    NamedProfile {
        name,
        profile: KeepaliveProfile { idle_secs: idle, interval_secs: interval, count, user_timeout_ms: None },
        purpose,
        idle_timeout: None,
    }
}

const fn for_middlebox(named: &Middlebox) -> NamedProfile {
    NamedProfile {
        name: named.name,
        profile: KeepaliveProfile::keeping_under(named.idle_timeout),
        purpose: named.what,
        idle_timeout: Some(named.idle_timeout),
    }
}

impl NamedProfile {
    /// The default: long-lived database, SSH and backup connections.
    pub const RECOMMENDED: NamedProfile =
        builtin("recommended", 300, 30, 5, "default: long-lived DB/SSH/backup connections");

    /// Looks up a built-in name, ignoring ASCII case.
    pub fn find(name: &str) -> Option<&'static NamedProfile> {
        BUILTIN_PROFILES.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// The profiles named for what they are for.
const GENERAL_PROFILES: [NamedProfile; 5] = [
    NamedProfile::RECOMMENDED,
    builtin("firewall", 60, 10, 6, "CGNAT and aggressive firewalls that forget idle flows"),
    builtin("ssh", 60, 60, 5, "interactive sessions"),
    builtin("satellite", 30, 30, 10, "flaky or metered links"),
    builtin("linux-default", 7200, 75, 9, "what Linux does without kawrap"),
];

/// The built-in profiles, in the order `kawrap profiles` lists them: the
/// general ones, then one per middlebox of [`MIDDLEBOXES`], keeping
/// connections under its idle timeout.
pub const BUILTIN_PROFILES: [NamedProfile; GENERAL_PROFILES.len() + MIDDLEBOXES.len()] = {
    let mut all = [NamedProfile::RECOMMENDED; GENERAL_PROFILES.len() + MIDDLEBOXES.len()];
    let mut index = 0;
    while index < GENERAL_PROFILES.len() {
        all[index] = GENERAL_PROFILES[index];
        index += 1;
    }
    while index < all.len() {
        all[index] = for_middlebox(&MIDDLEBOXES[index - GENERAL_PROFILES.len()]);
        index += 1;
    }
    all
};

/// A profile string that could not be used, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileError<'a> {
    /// The whole text as given.
    pub input: &'a str,
    /// What is wrong with it.
    pub kind: ProfileErrorKind<'a>,
}

/// What is wrong with a profile string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileErrorKind<'a> {
    /// Nothing but spaces.
    Empty,
    /// Neither a built-in name nor the `IDLE/INTVL/CNT` shorthand.
    Unknown,
    /// More than four `/`-separated fields.
    TooManyFields,
    /// A field that is not a plain decimal number.
    NotANumber {
        /// Which field.
        field: Field,
        /// Its text.
        token: &'a str,
    },
    /// A number outside the kernel's range (or too large to read at all).
    OutOfRange {
        /// Which field.
        field: Field,
        /// Its text.
        token: &'a str,
    },
    /// A user timeout that is neither `auto`, milliseconds, nor a duration.
    BadUserTimeout {
        /// Its text.
        token: &'a str,
    },
    /// `auto` would exceed the kernel's maximum user timeout.
    AutoUserTimeoutTooLong {
        /// What `auto` came to.
        ms: u64,
    },
    /// `under:TIMEOUT` with a timeout that cannot be used, or the name of a
    /// layer-7 proxy, which no keepalive profile helps against.
    KeepUnder(KeepUnderErrorKind<'a>),
}

impl fmt::Display for ProfileErrorKind<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProfileErrorKind::Empty => f.write_str("a profile is needed; it is empty"),
            ProfileErrorKind::Unknown => {
                f.write_str("not a profile name (")?;
                write_names(f, BUILTIN_PROFILES.iter().map(|named| named.name))?;
                f.write_str(") nor IDLE/INTVL/CNT[/UT] nor under:TIMEOUT")
            }
            ProfileErrorKind::TooManyFields => {
                f.write_str("too many fields; expected IDLE/INTVL/CNT or IDLE/INTVL/CNT/UT")
            }
            ProfileErrorKind::NotANumber { field, token: "" } => {
                write!(f, "{} is missing; expected IDLE/INTVL/CNT[/UT]", field.name())
            }
            ProfileErrorKind::NotANumber { field, token } => {
                write!(f, "{} {} is not a whole number", field.name(), Quoted(token))
            }
            ProfileErrorKind::OutOfRange { field, token } => {
                let range = field.range();
                write!(
                    f,
                    "{} {token} is out of range {}..={}{}",
                    field.name(),
                    range.start(),
                    range.end(),
                    field.unit()
                )
            }
            ProfileErrorKind::BadUserTimeout { token } => write!(
                f,
                "user timeout {} is not `auto`, milliseconds, nor a duration like 450s, 7m30s, 500ms",
                Quoted(token)
            ),
            ProfileErrorKind::AutoUserTimeoutTooLong { ms } => write!(
                f,
                "user timeout auto = {ms} ms is out of range 0..={} ms; give it explicitly",
                i32::MAX
            ),
            ProfileErrorKind::KeepUnder(kind) => kind.fmt(f),
        }
    }
}

impl fmt::Display for ProfileError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "profile {}: {}", Quoted(self.input), self.kind)
    }
}

impl core::error::Error for ProfileError<'_> {}
