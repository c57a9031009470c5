//! `kawrap`: runs a program with libkawrap.so preloaded, and the
//! subcommands around it. Each module does one job; this file only parses
//! the arguments, dispatches, and turns the outcome into an exit status.
//!
//! The modules form layers, listed below from the top down: a module uses
//! only modules listed after it (README.md, "Architecture").

// What each subcommand does, one file each (`commands/run.rs` is the
// launcher); a command never uses another command.
mod commands;

// What a person types: the clap definitions and help texts, nothing else.
mod args;

// What the commands share: settings → environment plan, the eBPF mode,
// middleboxes' idle timeouts, what the shim cannot reach, which processes
// `check` and `attach` mean, the shell completions and the man pages.
mod bpf_mode;
mod completions;
mod env_plan;
mod man;
mod middlebox;
mod reach;
mod selection;

// Finding libkawrap.so and COMMAND, opening the --log file, the kernel's
// view of TCP sockets, systemd units, profile names (profiles.toml).
mod library;
mod log_file;
mod program;
mod sockets;
mod systemd;
mod user_profiles;

// Writing for people: stdout, columns, shell quoting, printable names,
// warnings; the Prometheus text format.
mod output;

// What /proc says about a process: its name, threads, parents, cgroups.
mod processes;

// The ground: the options as typed, the profile table's rows, files
// replaced atomically, errors and exit statuses, who may change a file.
mod atomic_file;
mod error;
mod exit_codes;
mod permissions;
mod profile_table;
mod settings;

use args::Subcommand;
use commands::{attach, bpf, check, complete, env, generate, profiles, run};
use error::Error;
use exit_codes::ExitCode;

fn main() -> std::process::ExitCode {
    // `make install`'s man pages and completions, outside clap so that they
    // never list this entry point themselves.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|arg| arg == generate::NAME) {
        return generate::run(&args[2..]).unwrap_or_else(|error| report(&error)).into();
    }
    // What the shell completions ask kawrap, likewise.
    if args.get(1).is_some_and(|arg| arg == complete::NAME) {
        return complete::run(&args[2..]).unwrap_or_else(|error| report(&error)).into();
    }
    let cli = match args::parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are not failures; usage errors are
            // kawrap's own (125), never to be mistaken for the program's.
            let _ = error.print();
            let code = if error.use_stderr() { ExitCode::KawrapError } else { ExitCode::Success };
            return code.into();
        }
    };
    let outcome = match &cli.subcommand {
        Some(Subcommand::Profiles(args)) => profiles::run(args),
        Some(Subcommand::Check(args)) => check::run(args),
        Some(Subcommand::Attach(args)) => attach::run(args),
        Some(Subcommand::Env(args)) => env::run(args),
        Some(Subcommand::Bpf(args)) => bpf::run(args),
        None => run::run(&cli.launch),
    };
    match outcome {
        Ok(code) => code.into(),
        Err(error) => report(&error).into(),
    }
}

/// Prints an error for a person and returns its exit status.
fn report(error: &Error) -> ExitCode {
    eprintln!("kawrap: {error}");
    for line in error.hint_lines() {
        eprintln!("  {line}");
    }
    error.exit_code()
}
