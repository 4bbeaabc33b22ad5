//! Device tokens (OWASP's "device cookies"): a client that signed in to an
//! account once gets one, and a later login on that account presenting it
//! is counted against the device, not the account, so an attack on the
//! account does not lock its owner out.

use std::fmt;
use std::time::Duration;

use crate::error::RandomError;
use crate::random::Random;
use crate::token::RefreshToken;

/// How long a device token is honoured after it was issued.
pub const DEVICE_TOKEN_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// A device token: 32 random bytes, URL-safe; stored only as a digest.
#[derive(Clone)]
pub struct DeviceToken(RefreshToken);

impl DeviceToken {
    /// A fresh token.
    pub fn generate(random: &dyn Random) -> Result<Self, RandomError> {
        RefreshToken::generate(random).map(Self)
    }

    /// A token as a client presents it; `None` when it cannot be one of ours.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        RefreshToken::parse(raw).map(Self)
    }

    /// The token's text, to hand to the client once.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The secret in the shape the digest function takes.
    pub(crate) fn secret(&self) -> &RefreshToken {
        &self.0
    }
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceToken(<redacted>)")
    }
}
