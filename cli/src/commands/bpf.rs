//! `kawrap bpf attach|detach|status`: the eBPF mode (see `bpf_mode`) on a
//! whole cgroup, such as a systemd service, outliving kawrap: pinned under
//! /sys/fs/bpf/kawrap/ until detached.
use crate::args::bpf::{BpfAction, BpfArgs, DetachTarget};
use crate::env_plan::checked_config;
use crate::error::Error;
use crate::exit_codes::ExitCode;

/// `kawrap bpf …`.
pub fn run(args: &BpfArgs) -> Result<ExitCode, Error> {
    match &args.action {
        BpfAction::Attach { cgroup, keepalive } => imp::attach(cgroup, &checked_config(keepalive)?),
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

#[cfg(feature = "bpf")]
mod imp {
    use std::path::Path;

    use kawrap_bpf::{AttachOutcome, Attachment};
    use kawrap_core::Config;

    use crate::bpf_mode::refused;
    use crate::error::Error;
    use crate::exit_codes::ExitCode;
    use crate::output::write_stdout;

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
    use std::path::Path;

    use kawrap_core::Config;

    use crate::bpf_mode::not_built;
    use crate::error::Error;
    use crate::exit_codes::ExitCode;

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
