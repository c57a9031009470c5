//! `kawrap __complete profiles`: the words the shell completions offer that
//! only kawrap knows — the profile names, built-in and from profiles.toml —
//! one per line. Like `__generate`, not a clap subcommand: it never shows in
//! `--help`, the man pages or the completions themselves.
use std::ffi::OsString;

use kawrap_core::BUILTIN_PROFILES;

use crate::error::Error;
use crate::exit_codes::ExitCode;
use crate::output::write_stdout;
use crate::user_profiles;

/// The first argument that selects this instead of the normal parser.
pub const NAME: &str = "__complete";

/// `args` are what follows `__complete`. A completion must stay quiet, so
/// problems in the profile files are not reported here (`kawrap profiles`
/// does): their usable names are listed.
pub fn run(args: &[OsString]) -> Result<ExitCode, Error> {
    match args {
        [what] if what == "profiles" => {
            let mut names: Vec<String> = BUILTIN_PROFILES.iter().map(|named| named.name.to_owned()).collect();
            names.extend(user_profiles::load_all().profiles.into_iter().map(|profile| profile.name));
            write_stdout(format!("{}\n", names.join("\n")).as_bytes())?;
            Ok(ExitCode::Success)
        }
        _ => Err(Error::Invalid {
            message: format!(
                "{NAME}: expected `profiles`, got {:?}",
                args.iter().map(|arg| arg.to_string_lossy()).collect::<Vec<_>>()
            ),
            hint: format!("usage: kawrap {NAME} profiles (used by the shell completions)"),
        }),
    }
}
