//! What the program's sockets get, as the person wrote it: the options
//! `kawrap COMMAND`, `kawrap env` and `kawrap bpf attach` share. The
//! environment plan (`env_plan`) checks them with kawrap-core.
use std::path::PathBuf;

use clap::Args;

/// The keepalive settings and where the library is: what ends up in the
/// program's environment. Shared by every subcommand that sets them up.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Keepalive settings")]
pub struct Settings {
    /// What every TCP socket gets.
    #[command(flatten)]
    pub keepalive: Keepalive,

    /// Append one line per socket kawrap changes to FILE (made absolute, created if missing)
    ///
    /// FILE must be a regular file (not a FIFO or a device) and is never opened through a
    /// symbolic link: the file itself may not be one, and a link on the way to it is followed
    /// only if root or you own it.
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub log: Option<PathBuf>,

    /// The libkawrap.so to preload [default: $KAWRAP_LIB, then next to the kawrap binary,
    /// then ../lib/kawrap/ from it]
    // KAWRAP_LIB is read where the library is looked for (library.rs), not
    // by clap: an exported one must not conflict with --bpf, which preloads
    // nothing.
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub lib: Option<PathBuf>,
}

/// The profile, rules, policy and user timeout: the same for the shim and
/// for the eBPF mode.
#[derive(Clone, Debug, Args)]
pub struct Keepalive {
    /// Keepalive profile for every TCP connection: a built-in name, IDLE/INTVL/CNT[/UT], or
    /// under:TIMEOUT (as --keep-under)
    ///
    /// Built-in names: `kawrap profiles` lists them, with your own. IDLE is the seconds of
    /// silence before the first probe, INTVL the seconds between probes, CNT the unanswered
    /// probes before the connection is dropped (IDLE and INTVL 1..=32767, CNT 1..=127).
    /// UT, optional, is TCP_USER_TIMEOUT: `auto`, milliseconds, or a duration like `450s`.
    #[arg(short, long, value_name = "PROFILE", default_value = "recommended")]
    pub profile: String,

    /// Instead of --profile: keep connections alive through a load balancer, NAT or firewall
    /// that forgets flows idle this long: a duration (240s, 4m, 20min) or a middlebox name
    /// (azure-lb, aws-nlb, gcp-nat, ipvs, …)
    ///
    /// For an idle timeout T (10 s to 7 days): IDLE = min(T − ⌈T/4⌉, 300), INTVL =
    /// min(max(⌊T/10⌋, 1), 30), CNT = 5. The first probe then leaves by 0.85 T even when the
    /// kernel's timer fires late (up to 1/8), a second one by 0.96 T should the first be lost;
    /// 240s gives 180/24/5. `kawrap profiles` lists the middlebox names with their timeouts.
    /// It cannot help against layer-7 proxies (AWS ALB): their idle timeout counts only data,
    /// and keepalive probes carry none.
    #[arg(long, value_name = "TIMEOUT", conflicts_with = "profile")]
    pub keep_under: Option<String>,

    /// A different profile for some destinations: DEST=PROFILE, repeatable or
    /// comma-separated; the first matching rule wins
    ///
    /// DEST is `:PORT`, `ADDR[/LEN]`, `V4ADDR[/LEN]:PORT` or `[V6ADDR][/LEN]:PORT`; names are
    /// not resolved. Connections that no rule matches get --profile.
    #[arg(short, long = "rule", value_name = "DEST=PROFILE")]
    pub rules: Vec<String>,

    /// Who wins when the program sets keepalive options itself: `respect` (the program) or
    /// `force` (the profile)
    #[arg(long, value_name = "POLICY", default_value = "respect", value_parser = PolicyParser)]
    pub policy: String,

    /// Add TCP_USER_TIMEOUT to --profile, or replace the one it has: `auto`, milliseconds,
    /// or a duration (`450s`, `7m30s`)
    ///
    /// `auto` is the profile's detection time. It applies to --profile only; a rule carries
    /// its own (`:3306=300/30/5/auto`). It drops a connection whose sent data stays
    /// unacknowledged that long, which keepalive alone cannot notice; `0` leaves the
    /// kernel's default (off).
    #[arg(long, value_name = "UT")]
    pub user_timeout: Option<String>,
}

/// `--policy`: checked by kawrap-core (its message on error), and its
/// values known to `--help` and the shell completions.
#[derive(Clone, Copy, Debug)]
pub struct PolicyParser;

impl clap::builder::TypedValueParser for PolicyParser {
    type Value = String;

    fn parse_ref(
        &self,
        _: &clap::Command,
        _: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let text = value.to_string_lossy();
        match kawrap_core::Policy::parse(&text) {
            Ok(_) => Ok(text.into_owned()),
            Err(error) => Err(clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("{error}\n"))),
        }
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        let names = [kawrap_core::Policy::Respect, kawrap_core::Policy::Force].map(|policy| policy.name());
        Some(Box::new(names.into_iter().map(clap::builder::PossibleValue::new)))
    }
}
