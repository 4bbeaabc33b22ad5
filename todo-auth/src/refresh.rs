//! Refresh-token digests. The tokens carry 256 random bits, so one round of
//! SHA-256 is enough: there is nothing to brute-force as with passwords.

use std::fmt::Write as _;

use todo_core::{RefreshToken, RefreshTokenHash, RefreshTokenHasher, Sha256};

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

/// SHA-256 for the core ([`Sha256`]): an import's derived ids, a feed
/// token's stored form.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sha256Digest;

impl Sha256 for Sha256Digest {
    fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in parts {
            context.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(context.finish().as_ref());
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_digest_of_parts_is_sha256_of_them_together() {
        // SHA-256("abc"), FIPS 180-2's example, given in two parts.
        let digest = Sha256Digest.digest(&[b"a", b"bc"]);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
