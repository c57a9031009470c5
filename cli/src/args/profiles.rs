//! `kawrap profiles`.
use clap::Args;

/// `kawrap profiles`.
#[derive(Debug, Args)]
pub struct ProfilesArgs {
    /// Print a JSON array (name, idle_secs, interval_secs, count, user_timeout_ms,
    /// detection_secs, detection_time, purpose) instead of a table
    #[arg(long)]
    pub json: bool,
}
