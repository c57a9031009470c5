//! `kawrap [OPTIONS] [--] COMMAND [ARGS]...`: the launcher. Checks the
//! settings and builds the environment (`env_plan`), finds the command
//! (`program`), warns when the shim cannot reach it (`reach`), and becomes
//! it; with `--bpf`, runs it in a cgroup of the eBPF mode instead.
use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::args::{self, run::LaunchArgs};
use crate::env_plan::{EnvPlan, checked_config, env_plan};
use crate::error::Error;
use crate::exit_codes::ExitCode;
use crate::output::{describe_config, shell_quote, warn, write_stdout};
use crate::program::{exec_error, find_command};
use crate::{bpf_mode, log_file, reach};

/// `kawrap [OPTIONS] COMMAND [ARGS]...`: returns only on error, or after
/// `--dry-run`; otherwise the process has become the program.
pub fn run(args: &LaunchArgs) -> Result<ExitCode, Error> {
    let (name, rest) = match args.command.split_first() {
        Some(split) => split,
        None => {
            return Err(Error::Invalid {
                message: "no command given".to_owned(),
                hint: "usage: kawrap [OPTIONS] [--] COMMAND [ARGS]...".to_owned(),
            });
        }
    };
    if args.bpf {
        // Nothing is preloaded: the kernel applies the same configuration.
        let (config, warnings) = checked_config(&args.settings.keepalive)?;
        if !args.quiet {
            warn(&warnings);
        }
        let program = find_program(name)?;
        return bpf_mode::launch(&config, name, &program, rest, args.verbose);
    }
    let plan = env_plan(&args.settings)?;
    let program = find_program(name)?;
    if !args.quiet {
        warn(&plan.warnings);
        // Programs the shim cannot reach still run, but the person is told.
        if let Some(unreachable) = reach::check(name, &program) {
            eprintln!("{unreachable}");
        }
    }
    if args.verbose {
        eprintln!("{}", verbose_line(&plan, &program));
    }
    if args.dry_run {
        write_stdout(&dry_run_script(&plan, &args.command))?;
        return Ok(ExitCode::Success);
    }
    if let Some(log) = &plan.log {
        // The shim never writes to the terminal, so a log file it cannot
        // open would go unnoticed: find out now (and refuse links, FIFOs…).
        log_file::open_for_append(log)?;
    }
    let mut command = Command::new(&program);
    command.arg0(name).args(rest);
    for (var, value) in &plan.set {
        command.env(var, value);
    }
    for var in &plan.unset {
        command.env_remove(var);
    }
    // exec only returns if the kernel refused to run the program.
    let error = command.exec();
    Err(exec_error(name, error))
}

/// [`find_command`], and when COMMAND is not found but is named like one of
/// kawrap's subcommands, the hint says how to get the subcommand; when it
/// looks like a mistyped one (`kawrap chek`), the hint is that subcommand,
/// not where kawrap looked for a program.
fn find_program(name: &OsStr) -> Result<PathBuf, Error> {
    find_command(name).map_err(|error| match error {
        Error::CommandNotFound { name, reason, mut hint } if args::is_subcommand(&name) => {
            hint.push_str(&format!(
                "\n`{name}` is also a kawrap subcommand: write `kawrap {name}` with nothing before it to use it"
            ));
            Error::CommandNotFound { name, reason, hint }
        }
        Error::CommandNotFound { name, reason, hint } if !name.contains('/') => {
            let hint = match args::similar_subcommand(&name) {
                Some(meant) => {
                    format!("did you mean `kawrap {meant}`? (there is no program `{name}` in PATH either)")
                }
                None => hint,
            };
            Error::CommandNotFound { name, reason, hint }
        }
        error => error,
    })
}

fn verbose_line(plan: &EnvPlan, program: &Path) -> String {
    format!(
        "kawrap: {}; preloading {}; running {}",
        describe_config(&plan.config),
        plan.lib.display(),
        program.display()
    )
}

/// A shell script with the same effect as the run that `--dry-run` skips.
fn dry_run_script(plan: &EnvPlan, command: &[OsString]) -> Vec<u8> {
    let mut script = Vec::new();
    for (var, value) in &plan.set {
        script.extend_from_slice(format!("export {var}=").as_bytes());
        script.extend_from_slice(&shell_quote(value));
        script.push(b'\n');
    }
    if !plan.unset.is_empty() {
        script.extend_from_slice(format!("unset {}\n", plan.unset.join(" ")).as_bytes());
    }
    script.extend_from_slice(b"exec");
    for word in command {
        script.push(b' ');
        script.extend_from_slice(&shell_quote(word));
    }
    script.push(b'\n');
    script
}

#[cfg(test)]
mod tests {
    use kawrap_core::Config;

    use super::*;

    #[test]
    fn dry_run_is_a_shell_script() {
        let plan = EnvPlan {
            config: Config::default(),
            lib: PathBuf::from("/l/libkawrap.so"),
            log: None,
            set: vec![("LD_PRELOAD", "/l/libkawrap.so".into()), ("KAWRAP_PROFILE", "300/30/5".into())],
            unset: vec!["KAWRAP_RULES", "KAWRAP_DISABLE"],
            warnings: Vec::new(),
        };
        let command: Vec<OsString> = ["sh", "-c", "exit 7"].map(OsString::from).to_vec();
        let script = String::from_utf8(dry_run_script(&plan, &command)).unwrap();
        assert_eq!(
            script,
            "export LD_PRELOAD=/l/libkawrap.so\nexport KAWRAP_PROFILE=300/30/5\n\
             unset KAWRAP_RULES KAWRAP_DISABLE\nexec sh -c 'exit 7'\n"
        );
    }
}
