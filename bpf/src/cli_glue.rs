//! What the `kawrap` binary needs to offer the eBPF mode, ready to call
//! from its subcommands once it has parsed the arguments into a
//! [`Config`]:
//!
//! | command | call |
//! |---|---|
//! | `kawrap --bpf --profile P -- CMD ARGS` | [`launch`] |
//! | `kawrap bpf attach --cgroup PATH --profile P` | [`attach_command`] |
//! | `kawrap bpf detach --cgroup PATH` | [`detach_command`] |
//! | `kawrap bpf status [--json]` | [`status_command`] |
//!
//! Each writes what a person reads and returns the process exit code, with
//! the launcher's convention: the command's own code, 128 + signal if it was
//! killed, 125 when kawrap itself failed, 126 when the command cannot be
//! executed, 127 when it is not found.
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};

use kawrap_core::Config;

use crate::{AttachOutcome, Attachment, Error};

/// kawrap failed before or after the command ran.
pub const EXIT_KAWRAP_ERROR: u8 = 125;
/// The command exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: u8 = 126;
/// The command was not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// The exit code that reports `status` to kawrap's own caller, as a shell
/// would: the code, or 128 + the signal that killed the command.
pub fn exit_code_of(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        (None, None) => EXIT_KAWRAP_ERROR,
    }
}

/// The exit code for an error of the eBPF mode.
pub fn exit_code_of_error(error: &Error) -> u8 {
    match error {
        Error::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound => EXIT_NOT_FOUND,
        Error::Spawn { .. } => EXIT_CANNOT_EXECUTE,
        _ => EXIT_KAWRAP_ERROR,
    }
}

/// `kawrap --bpf -- CMD ARGS`: runs the command in a transient cgroup with
/// `config`, waits for it, cleans up. Errors and warnings go to `stderr`.
pub fn launch(config: &Config, argv: &[OsString], stderr: &mut dyn Write) -> u8 {
    let Some((program, args)) = argv.split_first() else {
        let _ =
            writeln!(stderr, "kawrap: --bpf needs a command to run (kawrap --bpf --profile P -- CMD ARGS)");
        return EXIT_KAWRAP_ERROR;
    };
    match crate::run(config, Command::new(program).args(args)) {
        Ok(outcome) => {
            if !outcome.cleanup.moved_out.is_empty() {
                let _ = writeln!(
                    stderr,
                    "kawrap: {} process(es) the command left running ({:?}) were moved out of kawrap's \
                     cgroup: their existing connections keep the profile, new ones do not",
                    outcome.cleanup.moved_out.len(),
                    outcome.cleanup.moved_out
                );
            }
            if outcome.cleanup.counters.failed > 0 {
                let _ = writeln!(
                    stderr,
                    "kawrap: the kernel refused {} keepalive setting(s); see `dmesg` and `kawrap bpf status`",
                    outcome.cleanup.counters.failed
                );
            }
            exit_code_of(outcome.status)
        }
        Err(error) => {
            let _ = writeln!(stderr, "kawrap: {error}");
            exit_code_of_error(&error)
        }
    }
}

/// `kawrap bpf attach --cgroup PATH --profile P`.
pub fn attach_command(cgroup: &Path, config: &Config, out: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    match crate::attach(cgroup, config) {
        Ok(outcome) => {
            let (verb, id) = match outcome {
                AttachOutcome::Attached { cgroup_id } => ("attached to", cgroup_id),
                AttachOutcome::Updated { cgroup_id } => ("updated the values of", cgroup_id),
            };
            let _ = writeln!(
                out,
                "kawrap {verb} {} (cgroup id {id}): {}; connections made from now on get it \
                 (remove with `kawrap bpf detach --cgroup {}`)",
                cgroup.display(),
                describe(config),
                cgroup.display()
            );
            0
        }
        Err(error) => {
            let _ = writeln!(stderr, "kawrap: {error}");
            EXIT_KAWRAP_ERROR
        }
    }
}

/// `kawrap bpf detach --cgroup PATH`.
pub fn detach_command(cgroup: &Path, out: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    match crate::detach(cgroup) {
        Ok(()) => {
            let _ = writeln!(
                out,
                "kawrap detached from {}; existing connections keep their settings",
                cgroup.display()
            );
            0
        }
        Err(error) => {
            let _ = writeln!(stderr, "kawrap: {error}");
            EXIT_KAWRAP_ERROR
        }
    }
}

/// `kawrap bpf status [--json]`: one line per attachment, or a JSON array.
pub fn status_command(json: bool, out: &mut dyn Write, stderr: &mut dyn Write) -> u8 {
    let attachments = match crate::status() {
        Ok(attachments) => attachments,
        Err(error) => {
            let _ = writeln!(stderr, "kawrap: {error}");
            return EXIT_KAWRAP_ERROR;
        }
    };
    let written = if json {
        let array: Vec<serde_json::Value> = attachments.iter().map(to_json).collect();
        writeln!(out, "{}", serde_json::Value::Array(array))
    } else if attachments.is_empty() {
        writeln!(out, "kawrap is not attached to any cgroup")
    } else {
        attachments.iter().try_for_each(|a| writeln!(out, "{a}"))
    };
    if written.is_err() { EXIT_KAWRAP_ERROR } else { 0 }
}

fn describe(config: &Config) -> String {
    let mut text = format!("profile {}", config.profile);
    if !config.rules.is_empty() {
        text.push_str(&format!(", rules {}", config.rules));
    }
    text.push_str(&format!(", policy {}", config.policy));
    text
}

/// One attachment for `--json`.
pub fn to_json(a: &Attachment) -> serde_json::Value {
    let (profile, rules, policy, error) = match &a.config {
        Ok(c) => (Some(c.profile.to_string()), Some(c.rules.to_string()), Some(c.policy.name()), None),
        Err(why) => (None, None, None, Some(why.clone())),
    };
    serde_json::json!({
        "cgroup": a.cgroup.as_ref().map(|p| p.display().to_string()),
        "cgroup_id": a.cgroup_id,
        "pinned": a.pinned,
        "program_id": a.program_id,
        "profile": profile,
        "rules": rules,
        "policy": policy,
        "error": error,
        "connects": a.counters.connect,
        "accepts": a.counters.passive,
        "own_settings_replaced": a.counters.forced,
        "own_settings_kept": a.counters.respected,
        "refused_by_kernel": a.counters.failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code_of(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code_of(ExitStatus::from_raw(libc::SIGKILL)), 137);
        let spawn = |kind| Error::Spawn { program: "x".into(), source: io::Error::from(kind) };
        assert_eq!(exit_code_of_error(&spawn(io::ErrorKind::NotFound)), 127);
        assert_eq!(exit_code_of_error(&spawn(io::ErrorKind::PermissionDenied)), 126);
        assert_eq!(exit_code_of_error(&Error::NoCgroup2), 125);
    }

    #[test]
    fn launch_without_a_command_is_a_kawrap_error() {
        let mut stderr = Vec::new();
        assert_eq!(launch(&Config::default(), &[], &mut stderr), 125);
        assert!(String::from_utf8_lossy(&stderr).contains("needs a command"));
    }

    #[test]
    fn errors_say_what_to_do_instead() {
        let text = Error::Permission { what: "load kawrap_sockops".into() }.to_string();
        assert!(text.contains("sudo") && text.contains("LD_PRELOAD"), "{text}");
        let text = Error::NoCgroup2.to_string();
        assert!(text.contains("cgroup v2") && text.contains("LD_PRELOAD"), "{text}");
        let text =
            Error::KernelRefused { program: "kawrap_sockops".into(), detail: "EINVAL".into() }.to_string();
        assert!(text.contains("5.10") && text.contains("LD_PRELOAD"), "{text}");
    }
}
