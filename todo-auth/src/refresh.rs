//! Refresh-token digests. The tokens carry 256 random bits, so one round of
//! SHA-256 is enough: there is nothing to brute-force as with passwords.

use std::fmt::Write as _;

use todo_core::{RefreshToken, RefreshTokenHash, RefreshTokenHasher};

/// SHA-256 of the token, in lower-case hex.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sha256RefreshTokenHasher;

impl RefreshTokenHasher for Sha256RefreshTokenHasher {
    fn digest(&self, token: &RefreshToken) -> RefreshTokenHash {
        let digest =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.expose().as_bytes());
        let mut hex = String::with_capacity(64);
        for byte in digest.as_ref() {
            let _ = write!(hex, "{byte:02x}");
        }
        RefreshTokenHash::new(hex)
    }
}
