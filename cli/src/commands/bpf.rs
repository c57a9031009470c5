//! `kawrap bpf attach|detach|pin|unpin|systemd|status`: the eBPF mode (see
//! `bpf_mode`) on a whole cgroup, such as a systemd service's.
use std::fmt::Write as _;

use kawrap_core::Config;

use crate::args::bpf::{BpfAction, BpfArgs, DetachTarget, UnpinTarget};
use crate::env_plan::checked_config;
use crate::error::Error;
use crate::exit_codes::ExitCode;
use crate::output::warn;
use crate::settings::Keepalive;
use crate::systemd::install::install;
use crate::systemd::quote;

/// `kawrap bpf …`.
pub fn run(args: &BpfArgs) -> Result<ExitCode, Error> {
    match &args.action {
        BpfAction::Attach { cgroup, keepalive } => imp::attach(cgroup, &checked(keepalive)?),
        BpfAction::Detach { target: DetachTarget { cgroup: Some(cgroup), .. } } => imp::detach(cgroup),
        BpfAction::Detach { target: DetachTarget { all: true, .. } } => imp::detach_all(),
        BpfAction::Pin { name, keepalive } => imp::pin(name, &checked(keepalive)?),
        BpfAction::Unpin { target: UnpinTarget { name: Some(name), .. } } => imp::unpin(name),
        BpfAction::Unpin { target: UnpinTarget { cache: true, .. } } => imp::unpin_cache(),
        BpfAction::Systemd { unit, keepalive, write, force, unit_dir } => {
            let unit = crate::systemd::unit_name(unit)?;
            let files = systemd_files(&unit, &checked(keepalive)?)?;
            files.print_or_write(unit_dir, *write, *force)
        }
        BpfAction::Status { json } => imp::status(*json),
        // clap requires one target of each group.
        BpfAction::Detach { .. } | BpfAction::Unpin { .. } => Err(Error::Invalid {
            message: "say what to remove".to_owned(),
            hint: "kawrap bpf detach --cgroup PATH | --all; kawrap bpf unpin --name NAME | --cache"
                .to_owned(),
        }),
    }
}

/// The configuration the options mean, its warnings (a rule that never
/// applies, …) printed.
fn checked(keepalive: &Keepalive) -> Result<Config, Error> {
    let (config, warnings) = checked_config(keepalive)?;
    warn(&warnings);
    Ok(config)
}

/// `profile 300/30/5, rules …, policy respect`.
fn values(config: &Config) -> String {
    let mut text = format!("profile {}", config.profile);
    if !config.rules.is_empty() {
        let _ = write!(text, ", rules {}", config.rules);
    }
    let _ = write!(text, ", policy {}", config.policy);
    text
}

/// The drop-in name for `kawrap bpf systemd`: beside `kawrap env
/// --systemd`'s 50-kawrap.conf, which it does not replace.
const DROP_IN_NAME: &str = "50-kawrap-bpf.conf";

/// The two files `kawrap bpf systemd` writes: relative to the unit
/// directory, and their text.
struct SystemdFiles {
    unit: String,
    files: [(String, String); 2],
}

impl SystemdFiles {
    fn print_or_write(
        &self,
        unit_dir: &std::path::Path,
        write: bool,
        force: bool,
    ) -> Result<ExitCode, Error> {
        if !write {
            let mut text = String::new();
            for (relative, body) in &self.files {
                text.push_str(&format!("# ===== {} =====\n{body}", unit_dir.join(relative).display()));
            }
            crate::output::write_stdout(text.as_bytes())?;
            return Ok(ExitCode::Success);
        }
        let regenerate = format!("kawrap bpf systemd --unit {} …", self.unit);
        for (relative, body) in &self.files {
            let installed = install(unit_dir, relative, body, force, &regenerate)?;
            eprintln!("kawrap: {}", installed.describe(&unit_dir.join(relative)));
        }
        eprintln!("kawrap: apply it with: systemctl daemon-reload && systemctl restart {}", self.unit);
        Ok(ExitCode::Success)
    }
}

/// The name the programs for `unit` are pinned under: the unit's name
/// without `.service`, with `_` for what the BPF filesystem or a unit name
/// cannot carry (dots, `@`, `\`).
fn pin_name(unit: &str) -> String {
    let stem = unit.strip_suffix(".service").unwrap_or(unit);
    stem.chars().map(|c| if c.is_ascii_alphanumeric() || "-_:".contains(c) { c } else { '_' }).collect()
}

/// The pin unit and the drop-in for `unit`.
fn systemd_files(unit: &str, config: &Config) -> Result<SystemdFiles, Error> {
    let name = pin_name(unit);
    let pinned = imp::pinned_path(&name)?;
    let kawrap = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .map_err(|e| Error::io("cannot tell where the kawrap binary is", e))?;
    let kawrap = kawrap.to_str().ok_or_else(|| Error::Invalid {
        message: format!("{}: not valid UTF-8, which a unit file cannot carry", kawrap.display()),
        hint: "install kawrap under a plain path".to_owned(),
    })?;
    let pin_unit = format!("kawrap-pin-{name}.service");
    let mut exec = format!("{} bpf pin --name {name} --profile {}", quote(kawrap), config.profile);
    if !config.rules.is_empty() {
        let _ = write!(exec, " --rule {}", quote(&config.rules.to_string()));
    }
    let _ = write!(exec, " --policy {}", config.policy);
    let profile = &config.profile;
    let pin_text = format!(
        "# kawrap: pins the eBPF programs that give {unit}'s TCP connections\n\
         # {} (a dead peer is noticed in {}).\n\
         # Generated by `kawrap bpf systemd`; the drop-in {unit}.d/{DROP_IN_NAME}\n\
         # starts it before {unit}, once per boot. New values: generate again, then\n\
         # `systemctl daemon-reload && systemctl restart {pin_unit}` (live: no restart of {unit}).\n\
         [Unit]\n\
         Description=kawrap keepalive programs for {unit}\n\
         Before={unit}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={exec}\n",
        values(config),
        profile.detection_time()
    );
    let drop_in_text = format!(
        "# kawrap: every TCP connection of {unit} gets {}\n\
         # (the eBPF mode: Go and statically linked programs too). Generated by `kawrap bpf systemd`.\n\
         # At every start, systemd (249 or newer) attaches the programs {pin_unit}\n\
         # pinned to the service's cgroup. Check with `kawrap bpf status`.\n\
         [Unit]\n\
         Requires={pin_unit}\n\
         After={pin_unit}\n\
         \n\
         [Service]\n\
         BPFProgram=sock_ops:{}\n\
         BPFProgram=setsockopt:{}\n",
        values(config),
        pinned.join("sock_ops").display(),
        pinned.join("setsockopt").display()
    );
    Ok(SystemdFiles {
        unit: unit.to_owned(),
        files: [(pin_unit.clone(), pin_text), (format!("{unit}.d/{DROP_IN_NAME}"), drop_in_text)],
    })
}

#[cfg(feature = "bpf")]
mod imp {
    use std::fmt::Write as _;
    use std::path::{Path, PathBuf};

    use kawrap_bpf::{AttachOutcome, AttachedBy, Attachment, PinOutcome, Status};
    use kawrap_core::Config;

    use super::values;
    use crate::bpf_mode::{host, refused};
    use crate::error::Error;
    use crate::exit_codes::ExitCode;
    use crate::output::write_stdout;

    pub fn pinned_path(name: &str) -> Result<PathBuf, Error> {
        host()?.pinned_path(name).map_err(refused)
    }

    pub fn attach(cgroup: &Path, config: &Config) -> Result<ExitCode, Error> {
        let verb = match host()?.attach(cgroup, config).map_err(refused)? {
            AttachOutcome::Attached { .. } => "attached to",
            AttachOutcome::Updated { .. } => "updated the values of",
            AttachOutcome::Replaced { .. } => "replaced another kawrap build's programs on",
        };
        let mut text = format!(
            "kawrap {verb} {}: {}; connections made from now on get it, until the cgroup is removed \
             (undo: kawrap bpf detach --cgroup {})\n",
            cgroup.display(),
            values(config),
            cgroup.display()
        );
        if let Some(unit) = cgroup.file_name().and_then(|n| n.to_str()).filter(|n| n.ends_with(".service")) {
            let _ = writeln!(
                text,
                "kawrap: {unit} gets a new cgroup when it restarts, without kawrap; to cover it at every \
                 start: kawrap bpf systemd --unit {unit} …"
            );
        }
        write_stdout(text.as_bytes())?;
        Ok(ExitCode::Success)
    }

    pub fn detach(cgroup: &Path) -> Result<ExitCode, Error> {
        host()?.detach(cgroup).map_err(refused)?;
        write_stdout(
            format!("kawrap detached from {}; existing connections keep their settings\n", cgroup.display())
                .as_bytes(),
        )?;
        Ok(ExitCode::Success)
    }

    pub fn detach_all() -> Result<ExitCode, Error> {
        let host = host()?;
        let detached = host.detach_all().map_err(refused)?;
        let mut text: String =
            detached.iter().map(|cgroup| format!("kawrap detached from {cgroup}\n")).collect();
        if let Some(dir) = host.pin_dir() {
            let _ = writeln!(text, "kawrap removed {} and everything pinned in it", dir.display());
        }
        write_stdout(text.as_bytes())?;
        Ok(ExitCode::Success)
    }

    pub fn pin(name: &str, config: &Config) -> Result<ExitCode, Error> {
        let (outcome, dir) = host()?.pin(name, config).map_err(refused)?;
        let verb = match outcome {
            PinOutcome::Pinned => "pinned",
            PinOutcome::Updated => "updated the values of",
            PinOutcome::Replaced => "replaced another kawrap build's",
        };
        write_stdout(
            format!("kawrap {verb} {}/{{sock_ops,setsockopt}}: {}\n", dir.display(), values(config))
                .as_bytes(),
        )?;
        Ok(ExitCode::Success)
    }

    pub fn unpin(name: &str) -> Result<ExitCode, Error> {
        let dir = host()?.unpin(name).map_err(refused)?;
        write_stdout(
            format!(
                "kawrap removed {}; cgroups it is attached to keep it until they are re-created\n",
                dir.display()
            )
            .as_bytes(),
        )?;
        Ok(ExitCode::Success)
    }

    pub fn unpin_cache() -> Result<ExitCode, Error> {
        host()?.clear_cache().map_err(refused)?;
        write_stdout(b"kawrap removed the programs pinned for reuse; the next run loads them again\n")?;
        Ok(ExitCode::Success)
    }

    pub fn status(json: bool) -> Result<ExitCode, Error> {
        let status = host()?.status().map_err(refused)?;
        let text = if json { format!("{}\n", to_json(&status)) } else { to_text(&status) };
        write_stdout(text.as_bytes())?;
        Ok(ExitCode::Success)
    }

    fn to_text(status: &Status) -> String {
        let mut text = String::new();
        if status.attachments.is_empty() {
            text.push_str("kawrap's programs are attached to no cgroup\n");
        }
        for attachment in &status.attachments {
            let _ = writeln!(text, "{attachment}");
        }
        if !status.cached.is_empty() {
            text.push_str("pinned for reuse (`kawrap bpf unpin --cache` removes them):\n");
            for cached in &status.cached {
                let _ = writeln!(text, "  {cached}");
            }
        }
        if !status.named.is_empty() {
            text.push_str("pinned copies (`kawrap bpf unpin --name NAME` removes one):\n");
            for named in &status.named {
                let _ = writeln!(text, "  {named}");
            }
        }
        text
    }

    fn config_json(config: &Result<Config, String>) -> serde_json::Value {
        match config {
            Ok(c) => serde_json::json!({
                "profile": c.profile.to_string(),
                "rules": c.rules.to_string(),
                "policy": c.policy.name(),
            }),
            Err(why) => serde_json::json!({ "error": why }),
        }
    }

    fn attachment_json(a: &Attachment) -> serde_json::Value {
        let (by, extra) = match &a.attached_by {
            AttachedBy::Run { launcher_running } => {
                ("run", serde_json::json!({ "launcher_running": launcher_running }))
            }
            AttachedBy::Attach => ("attach", serde_json::json!({})),
            AttachedBy::Pinned { name } => ("pinned", serde_json::json!({ "name": name })),
        };
        serde_json::json!({
            "cgroup": a.cgroup,
            "cgroup_id": a.cgroup_id,
            "attached_by": by,
            "details": extra,
            "program_id": a.program_id,
            "values": config_json(&a.config),
            "connects": a.counters.connect,
            "accepts": a.counters.passive,
            "own_settings_replaced": a.counters.forced,
            "own_settings_kept": a.counters.respected,
            "refused_by_kernel": a.counters.failed,
        })
    }

    fn to_json(status: &Status) -> serde_json::Value {
        serde_json::json!({
            "attachments": status.attachments.iter().map(attachment_json).collect::<Vec<_>>(),
            "pin_dir": status.pin_dir.as_ref().map(|p| p.display().to_string()),
            "cached": status.cached.iter().map(|c| serde_json::json!({
                "path": c.path.display().to_string(),
                "build": c.build,
                "current": c.current,
                "incomplete": c.incomplete,
            })).collect::<Vec<_>>(),
            "pinned": status.named.iter().map(|n| serde_json::json!({
                "name": n.name,
                "path": n.path.display().to_string(),
                "build": n.build,
                "values": config_json(&n.config),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(not(feature = "bpf"))]
mod imp {
    use std::path::Path;

    use kawrap_core::Config;

    use std::path::PathBuf;

    use crate::bpf_mode::not_built;
    use crate::error::Error;
    use crate::exit_codes::ExitCode;

    pub fn attach(_: &Path, _: &Config) -> Result<ExitCode, Error> {
        Err(not_built())
    }
    pub fn detach(_: &Path) -> Result<ExitCode, Error> {
        Err(not_built())
    }
    pub fn detach_all() -> Result<ExitCode, Error> {
        Err(not_built())
    }
    pub fn pin(_: &str, _: &Config) -> Result<ExitCode, Error> {
        Err(not_built())
    }
    pub fn unpin(_: &str) -> Result<ExitCode, Error> {
        Err(not_built())
    }
    pub fn unpin_cache() -> Result<ExitCode, Error> {
        Err(not_built())
    }
    pub fn pinned_path(_: &str) -> Result<PathBuf, Error> {
        Err(not_built())
    }
    pub fn status(_: bool) -> Result<ExitCode, Error> {
        Err(not_built())
    }
}

#[cfg(test)]
mod tests {
    use super::pin_name;

    #[test]
    fn pin_names_carry_no_dots() {
        assert_eq!(pin_name("backup.service"), "backup");
        assert_eq!(pin_name("db.backup.service"), "db_backup");
        assert_eq!(pin_name("getty@tty1.service"), "getty_tty1");
    }
}
