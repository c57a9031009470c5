//! `KAWRAP_LOG`: one line per socket the shim acted on, appended to the
//! file the variable names — an absolute path, or no log at all (a relative
//! one would land in whatever directory the program happens to be in).
//! Nothing is formatted unless logging is on, and nothing is ever written
//! to fd 0/1/2.
//!
//! Line format: the UTC wall-clock time (RFC 3339, milliseconds), then
//! key=value pairs; `comm` is the program's name as `ps` shows it, with
//! spaces, `=`, `\` and non-printable bytes written `\xNN`:
//! `2026-12-03T07:21:09.123Z kawrap pid=42 comm=mysqldump fd=5 event=connect dest=10.0.0.7:3306 rule=0 profile=60/10/6 set=SO_KEEPALIVE,TCP_KEEPIDLE kept=TCP_KEEPINTVL error=TCP_USER_TIMEOUT:EPERM(1)`
//! `event` is what the program did: socket, connect, fastopen (a
//! sendto/sendmsg with MSG_FASTOPEN), listen, accept (the profile given to
//! a connection from a listener the shim never configured), setsockopt
//! (force putting the profile's value back). A line never holds a control
//! character: one in a value the shim repeats (an invalid variable's text,
//! in a `disabled:` line) is written `\xNN` too, so it cannot start a line.
use core::ffi::{CStr, c_int};
use core::fmt::{self, Write};
use core::net::SocketAddr;

use kawrap_core::{ConfigError, Destination, KeepaliveProfile, RuleIndex};

use crate::options::{Applied, KeepaliveOption, OptionSet};
use crate::sys;

/// Longest `KAWRAP_LOG` path kept; longer ones disable logging.
const PATH_CAPACITY: usize = 1024;

/// Where the log goes, if anywhere: a copy of `KAWRAP_LOG` (the
/// environment may be cleared later), NUL-terminated.
pub(crate) struct Target {
    path: [u8; PATH_CAPACITY],
    len: usize,
}

impl Target {
    /// Logging to `path` if it is absolute and fits; otherwise nowhere.
    pub(crate) fn new(path: Option<&[u8]>) -> Target {
        let mut target = Target { path: [0; PATH_CAPACITY], len: 0 };
        if let Some(path) = path.filter(|p| p.first() == Some(&b'/') && p.len() < PATH_CAPACITY) {
            target.path[..path.len()].copy_from_slice(path);
            target.len = path.len();
        }
        target
    }

    fn path(&self) -> Option<&[u8]> {
        (self.len > 0).then(|| &self.path[..=self.len])
    }
}

/// What the program was doing when the shim acted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Socket,
    /// A connect, to this IPv4/IPv6 destination (`None`: another family,
    /// or not asked for).
    Connect(Option<Destination>),
    /// A sendto/sendmsg with MSG_FASTOPEN: a connect with data.
    FastOpen(Option<Destination>),
    Listen,
    Accept,
    /// The program's own setsockopt.
    Setsockopt,
}

impl Event {
    pub(crate) fn destination(self) -> Option<Destination> {
        match self {
            Event::Connect(dest) | Event::FastOpen(dest) => dest,
            Event::Socket | Event::Listen | Event::Accept | Event::Setsockopt => None,
        }
    }
}

/// A fixed buffer that truncates instead of failing.
struct Line {
    bytes: [u8; 512],
    len: usize,
}

impl Line {
    fn push(&mut self, byte: u8) {
        // The last byte is kept for the newline.
        if self.len + 1 < self.bytes.len() {
            self.bytes[self.len] = byte;
            self.len += 1;
        }
    }
}

impl Write for Line {
    /// Control characters are written `\xNN`: a line stays one line, whatever
    /// a value formatted into it holds (a variable's text an error repeats).
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            if byte.is_ascii_control() {
                write!(self, "\\x{byte:02x}")?;
            } else {
                self.push(byte);
            }
        }
        Ok(())
    }
}

/// Formats a line with `write` and appends it, if logging is on.
fn emit(target: &Target, write: impl FnOnce(&mut Line) -> fmt::Result) {
    let Some(path) = target.path() else { return };
    let mut line = Line { bytes: [0; 512], len: 0 };
    let _ = write_time(&mut line, sys::clock(libc::CLOCK_REALTIME).unwrap_or((0, 0)));
    let _ = write!(line, " kawrap pid={} comm=", sys::getpid());
    let (name, len) = sys::thread_name();
    let _ = write_escaped(&mut line, &name[..len]);
    let _ = line.write_str(" ");
    let _ = write(&mut line);
    line.bytes[line.len] = b'\n';
    sys::append_to_file(path, &line.bytes[..=line.len]);
}

/// `2026-12-03T07:21:09.123Z` for (seconds, nanoseconds) since the epoch.
fn write_time(f: &mut impl Write, (secs, nanos): (i64, i64)) -> fmt::Result {
    let (days, second_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days: proleptic Gregorian, 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    write!(
        f,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        nanos / 1_000_000
    )
}

/// Bytes as they may stand in a key=value line.
fn write_escaped(f: &mut impl Write, bytes: &[u8]) -> fmt::Result {
    for &byte in bytes {
        if byte.is_ascii_graphic() && byte != b'=' && byte != b'\\' {
            f.write_char(char::from(byte))?;
        } else {
            write!(f, "\\x{byte:02x}")?;
        }
    }
    Ok(())
}

fn options(f: &mut Line, set: OptionSet) -> fmt::Result {
    let mut first = true;
    for option in KeepaliveOption::ALL.iter().filter(|o| set.contains(**o)) {
        f.write_str(if first { "" } else { "," })?;
        f.write_str(option.name())?;
        first = false;
    }
    if first { f.write_str("-") } else { Ok(()) }
}

fn errno_name(errno: c_int) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EBADF => "EBADF",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::ENOSYS => "ENOSYS",
        _ => "errno",
    }
}

fn destination(f: &mut Line, dest: Option<Destination>) -> fmt::Result {
    match dest {
        Some(dest) => write!(f, " dest={}", SocketAddr::new(dest.ip, dest.port)),
        None => Ok(()),
    }
}

pub(crate) fn applied(
    target: &Target,
    fd: c_int,
    event: Event,
    choice: RuleIndex,
    profile: &KeepaliveProfile,
    applied: &Applied,
) {
    emit(target, |f| {
        write!(f, "fd={fd} event=")?;
        match event {
            Event::Socket => f.write_str("socket")?,
            Event::Listen => f.write_str("listen")?,
            Event::Accept => f.write_str("accept")?,
            Event::Setsockopt => f.write_str("setsockopt")?,
            Event::Connect(dest) => {
                f.write_str("connect")?;
                destination(f, dest)?;
            }
            Event::FastOpen(dest) => {
                f.write_str("fastopen")?;
                destination(f, dest)?;
            }
        }
        match choice {
            Some(index) => write!(f, " rule={index}")?,
            None => f.write_str(" rule=-")?,
        }
        write!(f, " profile={profile} set=")?;
        options(f, applied.set)?;
        if applied.kept != OptionSet::EMPTY {
            f.write_str(" kept=")?;
            options(f, applied.kept)?;
        }
        if let Some((option, errno)) = applied.failed {
            write!(f, " error={}:{}({errno})", option.name(), errno_name(errno))?;
        }
        Ok(())
    });
}

pub(crate) fn forced(target: &Target, fd: c_int, option: KeepaliveOption, outcome: Result<c_int, c_int>) {
    emit(target, |f| match outcome {
        Ok(value) => write!(f, "fd={fd} event=setsockopt policy=force {}={value}", option.name()),
        Err(errno) => write!(
            f,
            "fd={fd} event=setsockopt policy=force error={}:{}({errno})",
            option.name(),
            errno_name(errno)
        ),
    });
}

pub(crate) fn invalid(target: &Target, error: &ConfigError<'_>) {
    emit(target, |f| write!(f, "disabled: {error}"));
}

pub(crate) fn not_utf8(target: &Target, name: &CStr) {
    emit(target, |f| write!(f, "disabled: {} is not valid UTF-8", name.to_str().unwrap_or("variable")));
}
