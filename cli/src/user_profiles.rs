//! Profile names: the built-ins, and (to come) the user's own.
use kawrap_core::KeepaliveProfile;

use crate::error::Error;

/// A profile from the command line: a built-in name or IDLE/INTVL/CNT[/UT].
pub fn resolve_profile(text: &str) -> Result<KeepaliveProfile, Error> {
    KeepaliveProfile::parse(text).map_err(|error| Error::Invalid {
        message: error.to_string(),
        hint: "accepted: a built-in name (`kawrap profiles`) or IDLE/INTVL/CNT[/UT], e.g. 300/30/5"
            .to_owned(),
    })
}
