//! Everything that can stop kawrap, with the exit status each one means.
//!
//! Internal code returns these; only `main` prints them and exits.
use std::io;
use std::path::PathBuf;

use crate::exit_codes::ExitCode;

/// Why kawrap stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A profile, rule, policy, user timeout or other option that cannot be
    /// used. `message` is kawrap-core's explanation, `hint` lists what is
    /// accepted.
    #[error("{message}")]
    Invalid { message: String, hint: String },

    /// `--lib`/`KAWRAP_LIB` names something kawrap cannot preload.
    #[error("library {path:?} (--lib or KAWRAP_LIB): {reason}")]
    BadLib { path: PathBuf, reason: String },

    /// No libkawrap.so in any of the places kawrap looks.
    #[error("cannot find libkawrap.so, the library kawrap preloads into the program")]
    LibNotFound { searched: Vec<PathBuf> },

    /// The command is neither a path to a file nor found in `PATH`.
    #[error("{name}: {reason}")]
    CommandNotFound { name: String, reason: &'static str, hint: String },

    /// The command exists but the kernel will not run it.
    #[error("{name}: cannot execute: {reason}")]
    CannotExecute { name: String, reason: String },

    /// The kernel or the system would not let kawrap do it (no such
    /// process, no permission, a kernel too old); `hint` says what to do.
    #[error("{message}")]
    Refused { message: String, hint: String },

    /// An operating system error kawrap cannot work around.
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

impl Error {
    /// The exit status this error means.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::CommandNotFound { .. } => ExitCode::NotFound,
            Error::CannotExecute { .. } => ExitCode::CannotExecute,
            Error::Invalid { .. }
            | Error::Refused { .. }
            | Error::BadLib { .. }
            | Error::LibNotFound { .. }
            | Error::Io { .. } => ExitCode::KawrapError,
        }
    }

    /// Lines to print after the message: what is accepted, where kawrap
    /// looked, what to try.
    pub fn hint_lines(&self) -> Vec<String> {
        match self {
            Error::Invalid { hint, .. }
            | Error::Refused { hint, .. }
            | Error::CommandNotFound { hint, .. } => hint.lines().map(str::to_owned).collect(),
            Error::BadLib { .. } => {
                vec!["give the path of the built library, e.g. target/release/libkawrap.so".to_owned()]
            }
            Error::LibNotFound { searched } => {
                let mut lines: Vec<String> =
                    searched.iter().map(|path| format!("not in {}", path.display())).collect();
                lines.push(
                    "build it (`cargo build --release -p kawrap-shim`), install it next to kawrap, \
                     or name it with --lib PATH or KAWRAP_LIB=PATH"
                        .to_owned(),
                );
                lines
            }
            Error::CannotExecute { .. } | Error::Io { .. } => Vec::new(),
        }
    }

    /// An [`Error::Io`] saying what kawrap was doing.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

/// An OS error as a phrase: `permission denied`, without `(os error 13)`.
pub fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" (os error ") {
        Some(end) => &text[..end],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.to_owned(),
    }
}
