//! One module per subcommand, each with `run(&…Args) -> Result<ExitCode, Error>`.
pub mod attach;
pub mod bpf;
pub mod check;
pub mod env;
pub mod generate;
pub mod profiles;
pub mod run;
