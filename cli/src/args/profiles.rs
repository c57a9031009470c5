//! `kawrap profiles`.
use clap::Args;

/// `kawrap profiles`.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER_LONG_HELP)]
pub struct ProfilesArgs {
    /// Print a JSON array (name, idle_secs, interval_secs, count, user_timeout_ms,
    /// detection_secs, detection_time, purpose, idle_timeout_secs, source) instead of a table
    ///
    /// idle_timeout_secs is the middlebox idle timeout a profile keeps connections under
    /// (the middlebox names, and your own keep-under profiles), else null.
    #[arg(long)]
    pub json: bool,
}

const AFTER_LONG_HELP: &str = "\
Your own names are [profiles.NAME] entries with keepalive = \"IDLE/INTVL/CNT[/UT]\" in
/etc/kawrap/profiles.toml and $XDG_CONFIG_HOME/kawrap/profiles.toml (~/.config/kawrap/…), the
second winning for a name both define. Names are case-insensitive, like the built-ins.

Exit status: 0; 125 when a profile file has a problem: each one is reported as FILE:LINE, and the
profiles that are fine are listed all the same.";
