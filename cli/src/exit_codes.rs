//! The exit statuses kawrap itself chooses.
//!
//! When the program runs, kawrap has replaced itself with it (`exec`), so
//! the program's own status is the status. The codes below only ever come
//! from kawrap, and follow the convention of `env`, `nice`, `timeout` and
//! POSIX shells, so a script can tell kawrap's failures from the
//! program's.

/// An outcome of kawrap itself, before or instead of running a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// A subcommand, `--dry-run`, `--help` or `--version` did its job.
    Success,
    /// `kawrap check --expect` found a socket without the expected
    /// profile, one it could not judge, or no socket to check: the answer
    /// is "no", like grep's 1.
    CheckFailed,
    /// kawrap could not do its job: an invalid profile, rule, policy or
    /// option, libkawrap.so not found, an unwritable log file.
    KawrapError,
    /// The command was found but cannot be executed: no permission, a
    /// directory, not an executable format, a missing interpreter.
    CannotExecute,
    /// The command was not found.
    NotFound,
    /// The program's own status, for the one mode where kawrap waits for
    /// the program instead of becoming it (`--bpf`): its exit code. (When a
    /// signal killed it, kawrap dies by the same signal; 128 + the signal
    /// only for one whose default is not to terminate.)
    Program(u8),
}

impl ExitCode {
    /// The number the process exits with.
    pub const fn code(self) -> u8 {
        match self {
            ExitCode::Success => 0,
            ExitCode::CheckFailed => 1,
            ExitCode::KawrapError => 125,
            ExitCode::CannotExecute => 126,
            ExitCode::NotFound => 127,
            ExitCode::Program(code) => code,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code.code())
    }
}

#[cfg(test)]
mod tests {
    use super::ExitCode;

    const ALL: [ExitCode; 5] = [
        ExitCode::Success,
        ExitCode::CheckFailed,
        ExitCode::KawrapError,
        ExitCode::CannotExecute,
        ExitCode::NotFound,
    ];

    #[test]
    fn codes_follow_the_env_and_shell_convention() {
        assert_eq!(ExitCode::Success.code(), 0);
        assert_eq!(ExitCode::CheckFailed.code(), 1);
        assert_eq!(ExitCode::KawrapError.code(), 125);
        assert_eq!(ExitCode::CannotExecute.code(), 126);
        assert_eq!(ExitCode::NotFound.code(), 127);
        assert_eq!(ExitCode::Program(7).code(), 7);
        assert_eq!(ExitCode::Program(137).code(), 137);
    }

    #[test]
    fn codes_are_distinct() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.code(), b.code(), "{a:?} and {b:?} share a code");
            }
        }
    }

    #[test]
    fn failures_stay_clear_of_signal_statuses() {
        // A shell reports a program killed by signal N as 128 + N; kawrap's
        // own failures must never look like that.
        for code in ALL {
            assert!(code.code() < 128, "{code:?}");
        }
    }

    #[test]
    fn converts_to_the_process_exit_code() {
        for code in ALL {
            let expected = std::process::ExitCode::from(code.code());
            assert_eq!(std::process::ExitCode::from(code), expected);
        }
    }
}
