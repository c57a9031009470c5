//! kawrap's grammar: profiles (`300/30/5`, `firewall`, `60/10/6/auto`,
//! `under:240s`, `azure-lb`), per-destination rules (`:3306=firewall,10.0.0.0/8=60/10/6`), the
//! policy, and the plan for one socket.
//!
//! This crate is the only place where a string becomes numbers. The shim
//! (`libkawrap.so`) and the launcher (`kawrap`) both call it, so they can
//! never disagree about what `KAWRAP_PROFILE=300/30/5` means. It is `no_std`
//! and never allocates: the shim runs it inside other people's programs,
//! possibly before their allocator is ready.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

mod config;
mod duration;
pub mod env;
pub mod keep_under;
mod number;
mod profile;
mod quoted;
mod rules;

pub use config::{Config, ConfigError, Policy, PolicyError, RuleIndex};
pub use duration::{HumanDuration, parse_duration_ms};
pub use keep_under::{
    IdleTimeout, KeepUnderError, KeepUnderErrorKind, LAYER7_PROXIES, Layer7Proxy, MIDDLEBOXES, Middlebox,
    Timings,
};
pub use profile::{
    BUILTIN_PROFILES, Field, KeepaliveProfile, NamedProfile, ProfileError, ProfileErrorKind, UNDER_PREFIX,
    UserTimeout,
};
pub use quoted::Quoted;
pub use rules::{Destination, Entry, MAX_RULES, Rule, RuleError, RuleErrorKind, RuleWarning, Rules};
