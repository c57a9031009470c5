//! One module per subcommand, each with `run(&…Args) -> Result<ExitCode, Error>`:
//! `run` is the launcher (`kawrap [OPTIONS] COMMAND`), `generate` the hidden
//! `kawrap __generate` of `make install`, `complete` the hidden
//! `kawrap __complete` the shell completions call. Each uses only the layers below
//! `commands/`, never another command: what two share lives below.
pub mod attach;
pub mod bpf;
pub mod check;
pub mod complete;
pub mod env;
pub mod generate;
pub mod profiles;
pub mod run;
