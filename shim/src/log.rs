//! `KAWRAP_LOG`: one line per socket the shim touched, appended to the
//! file the variable names. Nothing is formatted unless logging is on, and
//! nothing is ever written to fd 0/1/2.
//!
//! Line format (key=value, one event per line):
//! `kawrap pid=42 fd=5 event=connect dest=10.0.0.7:3306 rule=0 profile=60/10/6 set=SO_KEEPALIVE,TCP_KEEPIDLE kept=TCP_KEEPINTVL error=TCP_USER_TIMEOUT:EPERM`
use core::ffi::{CStr, c_int};
use core::fmt::{self, Write};
use core::net::SocketAddr;

use kawrap_core::{ConfigError, Destination, KeepaliveProfile};

use crate::config::Loaded;
use crate::fds::Choice;
use crate::options::{Applied, KeepaliveOption, OptionSet};
use crate::sys;

/// What the program was doing when the shim acted.
#[derive(Clone, Copy)]
pub(crate) enum Event {
    Socket,
    Connect(Destination),
    Listen,
}

/// A fixed buffer that truncates instead of failing.
struct Line {
    bytes: [u8; 512],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // Keep the last byte for the newline.
        let room = self.bytes.len() - 1 - self.len;
        let take = text.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&text.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Formats a line with `write` and appends it, if logging is on.
fn emit(loaded: &Loaded, write: impl FnOnce(&mut Line) -> fmt::Result) {
    let Some(path) = loaded.log_path() else { return };
    let mut line = Line { bytes: [0; 512], len: 0 };
    let _ = write!(line, "kawrap pid={} ", sys::getpid());
    let _ = write(&mut line);
    line.bytes[line.len] = b'\n';
    sys::append_to_file(path, &line.bytes[..=line.len]);
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

pub(crate) fn applied(
    loaded: &Loaded,
    fd: c_int,
    event: Event,
    choice: Choice,
    profile: &KeepaliveProfile,
    kept: OptionSet,
    applied: &Applied,
) {
    emit(loaded, |f| {
        write!(f, "fd={fd} event=")?;
        match event {
            Event::Socket => f.write_str("socket")?,
            Event::Listen => f.write_str("listen")?,
            Event::Connect(dest) => write!(f, "connect dest={}", SocketAddr::new(dest.ip, dest.port))?,
        }
        match choice {
            Some(index) => write!(f, " rule={index}")?,
            None => f.write_str(" rule=-")?,
        }
        write!(f, " profile={profile} set=")?;
        options(f, applied.set)?;
        if kept != OptionSet::EMPTY {
            f.write_str(" kept=")?;
            options(f, kept)?;
        }
        if let Some((option, errno)) = applied.failed {
            write!(f, " error={}:{}({errno})", option.name(), errno_name(errno))?;
        }
        Ok(())
    });
}

pub(crate) fn forced(loaded: &Loaded, fd: c_int, option: KeepaliveOption, value: c_int) {
    emit(loaded, |f| write!(f, "fd={fd} event=setsockopt policy=force {}={value}", option.name()));
}

pub(crate) fn force_failed(loaded: &Loaded, fd: c_int, option: KeepaliveOption, errno: c_int) {
    emit(loaded, |f| {
        write!(
            f,
            "fd={fd} event=setsockopt policy=force error={}:{}({errno})",
            option.name(),
            errno_name(errno)
        )
    });
}

pub(crate) fn invalid(loaded: &Loaded, error: &ConfigError<'_>) {
    emit(loaded, |f| write!(f, "disabled: {error}"));
}

pub(crate) fn not_utf8(loaded: &Loaded, name: &CStr) {
    emit(loaded, |f| write!(f, "disabled: {} is not valid UTF-8", name.to_str().unwrap_or("variable")));
}
