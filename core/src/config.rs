//! Everything the shim needs to decide what one socket gets.
use core::fmt;

use crate::profile::{KeepaliveProfile, NamedProfile, ProfileError};
use crate::quoted::Quoted;
use crate::rules::{Destination, RuleError, Rules};

/// Who wins when the program sets a keepalive option itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// kawrap replaces the kernel's defaults, but a keepalive option the
    /// program sets itself with `setsockopt` on a socket stands (curl's
    /// own `TCP_KEEPIDLE=60` is kept; mysqldump's bare `SO_KEEPALIVE=1`
    /// gets kawrap's timings).
    #[default]
    Respect,
    /// The profile always wins: the program's own `setsockopt` of
    /// `SO_KEEPALIVE`, `TCP_KEEPIDLE`, `TCP_KEEPINTVL`, `TCP_KEEPCNT` (and
    /// `TCP_USER_TIMEOUT` when the profile sets it) is replaced by the
    /// profile's value, `SO_KEEPALIVE=0` included.
    Force,
}

impl Policy {
    /// Parses `respect` or `force` (ASCII case ignored).
    pub fn parse(input: &str) -> Result<Policy, PolicyError<'_>> {
        match input.trim() {
            text if text.eq_ignore_ascii_case("respect") => Ok(Policy::Respect),
            text if text.eq_ignore_ascii_case("force") => Ok(Policy::Force),
            _ => Err(PolicyError { input }),
        }
    }

    /// The name as [`Policy::parse`] accepts it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Respect => "respect",
            Policy::Force => "force",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy that is neither `respect` nor `force`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyError<'a> {
    /// The text as given.
    pub input: &'a str,
}

impl fmt::Display for PolicyError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy {}: expected `respect` (default) or `force`", Quoted(self.input))
    }
}

/// Which entry chose a socket's profile: a rule's position, or `None` for
/// the profile itself.
pub type RuleIndex = Option<usize>;

/// The whole configuration, as read from `KAWRAP_PROFILE`, `KAWRAP_RULES`
/// and `KAWRAP_POLICY`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// For every TCP socket, and for connections no rule covers.
    pub profile: KeepaliveProfile,
    /// Per-destination exceptions, first match wins.
    pub rules: Rules,
    /// Whether the program's own keepalive settings stand.
    pub policy: Policy,
}

impl Default for Config {
    fn default() -> Self {
        Config { profile: NamedProfile::RECOMMENDED.profile, rules: Rules::EMPTY, policy: Policy::Respect }
    }
}

impl Config {
    /// Builds the configuration from the variables' values (`None` when a
    /// variable is unset). An unset profile is `recommended`, unset or
    /// empty rules are none, an unset policy is `respect`; anything invalid
    /// is an error, and the shim then does nothing.
    pub fn from_values<'a>(
        profile: Option<&'a str>,
        rules: Option<&'a str>,
        policy: Option<&'a str>,
    ) -> Result<Config, ConfigError<'a>> {
        let mut config = Config::default();
        if let Some(text) = profile {
            config.profile = KeepaliveProfile::parse(text).map_err(ConfigError::Profile)?;
        }
        if let Some(text) = rules {
            config.rules = Rules::parse(text).map_err(ConfigError::Rule)?;
        }
        if let Some(text) = policy {
            config.policy = Policy::parse(text).map_err(ConfigError::Policy)?;
        }
        Ok(config)
    }

    /// The profile for a connection to `dest` (`None`: not known yet, as at
    /// `socket()` and `listen()`), and which entry chose it.
    pub fn profile_for(&self, dest: Option<&Destination>) -> (RuleIndex, &KeepaliveProfile) {
        match dest.and_then(|dest| self.rules.first_match(dest)) {
            Some((index, rule)) => (Some(index), rule.profile()),
            None => (None, &self.profile),
        }
    }
}

/// One invalid variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError<'a> {
    /// `KAWRAP_PROFILE` is invalid.
    Profile(ProfileError<'a>),
    /// `KAWRAP_RULES` is invalid.
    Rule(RuleError<'a>),
    /// `KAWRAP_POLICY` is invalid.
    Policy(PolicyError<'a>),
}

impl fmt::Display for ConfigError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Profile(e) => e.fmt(f),
            ConfigError::Rule(e) => e.fmt(f),
            ConfigError::Policy(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for ConfigError<'_> {}
