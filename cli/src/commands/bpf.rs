//! The eBPF mode: `kawrap --bpf -- COMMAND` and `kawrap bpf attach|detach|status`.
//!
//! For what LD_PRELOAD can never reach (Go and static programs, raw
//! syscalls, setuid programs, sudo): a cgroup v2 sock_ops program from the
//! `kawrap-bpf` crate gives every TCP connection of a process tree the same
//! profiles and rules. It needs clang to build, so it is a cargo feature
//! (`bpf`, on in `make`); a kawrap built without it says how to get it.
use std::ffi::OsString;
use std::path::Path;

use kawrap_core::Config;

use crate::args::bpf::{BpfAction, BpfArgs, DetachTarget};
use crate::error::Error;
use crate::exit_codes::ExitCode;

/// `kawrap bpf …`.
pub fn run(args: &BpfArgs) -> Result<ExitCode, Error> {
    match &args.action {
        BpfAction::Attach { cgroup, keepalive } => {
            imp::attach(cgroup, &crate::commands::run::checked_config(keepalive)?)
        }
        BpfAction::Detach { target: DetachTarget { cgroup: Some(cgroup), .. } } => imp::detach(cgroup),
        BpfAction::Detach { target: DetachTarget { cgroup_id: Some(id), .. } } => imp::detach_id(*id),
        // clap requires exactly one of the two.
        BpfAction::Detach { .. } => Err(Error::Invalid {
            message: "kawrap bpf detach needs --cgroup PATH or --cgroup-id ID".to_owned(),
            hint: String::new(),
        }),
        BpfAction::Status { json } => imp::status(*json),
    }
}

/// `kawrap --bpf … -- COMMAND`: runs the found `program` (named `name` by
/// the user) in a transient cgroup and returns its exit status.
pub fn launch(
    config: &Config,
    name: &OsString,
    program: &Path,
    args: &[OsString],
) -> Result<ExitCode, Error> {
    imp::launch(config, name, program, args)
}

#[cfg(feature = "bpf")]
mod imp {
    use std::ffi::OsString;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::path::Path;
    use std::process::Command;

    use kawrap_bpf::{AttachOutcome, Attachment};
    use kawrap_core::Config;

    use crate::error::Error;
    use crate::exit_codes::ExitCode;
    use crate::output::write_stdout;

    fn refused(error: kawrap_bpf::Error) -> Error {
        Error::Refused { message: error.to_string(), hint: String::new() }
    }

    pub fn launch(
        config: &Config,
        name: &OsString,
        program: &Path,
        args: &[OsString],
    ) -> Result<ExitCode, Error> {
        let mut command = Command::new(program);
        command.arg0(name).args(args);
        let outcome = match kawrap_bpf::run(config, &mut command) {
            Ok(outcome) => outcome,
            // The program was found and is executable (find_command): a
            // failure now is the exec's own, told as for the LD_PRELOAD mode.
            Err(kawrap_bpf::Error::Spawn { source, .. }) => {
                return Err(crate::commands::run::exec_error(name, source));
            }
            Err(error) => return Err(refused(error)),
        };
        let cleanup = &outcome.cleanup;
        if !cleanup.moved_out.is_empty() {
            eprintln!(
                "kawrap: {} process(es) the command left running ({:?}) were moved out of kawrap's cgroup: \
                 their existing connections keep the profile, new ones do not",
                cleanup.moved_out.len(),
                cleanup.moved_out
            );
        }
        if cleanup.counters.failed > 0 {
            eprintln!(
                "kawrap: the kernel refused {} keepalive setting(s) of the command's connections",
                cleanup.counters.failed
            );
        }
        // As a shell reports it: the code, or 128 + the signal that killed it.
        let status = outcome.status;
        let code = match (status.code(), status.signal()) {
            (Some(code), _) => code as u8,
            (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
            (None, None) => return Ok(ExitCode::KawrapError),
        };
        Ok(ExitCode::Program(code))
    }

    pub fn attach(cgroup: &Path, config: &Config) -> Result<ExitCode, Error> {
        let (verb, id) = match kawrap_bpf::attach(cgroup, config).map_err(refused)? {
            AttachOutcome::Attached { cgroup_id } => ("attached to", cgroup_id),
            AttachOutcome::Updated { cgroup_id } => ("updated the values of", cgroup_id),
        };
        let mut text =
            format!("kawrap {verb} {} (cgroup id {id}): profile {}", cgroup.display(), config.profile);
        if !config.rules.is_empty() {
            text.push_str(&format!(", rules {}", config.rules));
        }
        text.push_str(&format!(
            ", policy {}; connections made from now on get it (undo: kawrap bpf detach --cgroup {})\n",
            config.policy,
            cgroup.display()
        ));
        write_stdout(text.as_bytes())?;
        Ok(ExitCode::Success)
    }

    pub fn detach(cgroup: &Path) -> Result<ExitCode, Error> {
        kawrap_bpf::detach(cgroup).map_err(refused)?;
        write_stdout(
            format!("kawrap detached from {}; existing connections keep their settings\n", cgroup.display())
                .as_bytes(),
        )?;
        Ok(ExitCode::Success)
    }

    pub fn detach_id(id: u64) -> Result<ExitCode, Error> {
        kawrap_bpf::detach_id(id).map_err(refused)?;
        write_stdout(format!("kawrap detached from the cgroup with id {id}\n").as_bytes())?;
        Ok(ExitCode::Success)
    }

    pub fn status(json: bool) -> Result<ExitCode, Error> {
        let attachments = kawrap_bpf::status().map_err(refused)?;
        let text = if json {
            let array: Vec<serde_json::Value> = attachments.iter().map(to_json).collect();
            format!("{}\n", serde_json::Value::Array(array))
        } else if attachments.is_empty() {
            "kawrap is not attached to any cgroup\n".to_owned()
        } else {
            attachments.iter().map(|a| format!("{a}\n")).collect()
        };
        write_stdout(text.as_bytes())?;
        Ok(ExitCode::Success)
    }

    fn to_json(a: &Attachment) -> serde_json::Value {
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
}

#[cfg(not(feature = "bpf"))]
mod imp {
    use std::ffi::OsString;
    use std::path::Path;

    use kawrap_core::Config;

    use crate::error::Error;
    use crate::exit_codes::ExitCode;

    fn not_built() -> Error {
        Error::Refused {
            message: "this kawrap was built without the eBPF mode".to_owned(),
            hint: "rebuild with it: `make` (needs clang and libbpf-dev), or \
                   `cargo build --release -p kawrap --features bpf`"
                .to_owned(),
        }
    }

    pub fn launch(_: &Config, _: &OsString, _: &Path, _: &[OsString]) -> Result<ExitCode, Error> {
        Err(not_built())
    }
    pub fn attach(_: &Path, _: &Config) -> Result<ExitCode, Error> {
        Err(not_built())
    }
    pub fn detach(_: &Path) -> Result<ExitCode, Error> {
        Err(not_built())
    }
    pub fn detach_id(_: u64) -> Result<ExitCode, Error> {
        Err(not_built())
    }
    pub fn status(_: bool) -> Result<ExitCode, Error> {
        Err(not_built())
    }
}
