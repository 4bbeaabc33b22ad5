//! What the core's opaque secrets share (a feed's URL, an API token, a
//! reset link): 256 random bits in URL-safe base64, taken back only in
//! that exact encoding, and kept by the store as a SHA-256 in hex.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::{Zeroize as _, Zeroizing};

use crate::error::RandomError;
use crate::ports::Sha256;
use crate::random::Random;

/// The length of the encoding of 32 bytes.
pub(crate) const RANDOM_CHARS: usize = 43;

/// 256 fresh random bits, encoded after `prefix`.
pub(crate) fn generate(
    random: &dyn Random,
    prefix: &str,
) -> Result<Zeroizing<String>, RandomError> {
    let mut bytes = [0u8; 32];
    random.fill(&mut bytes)?;
    let mut secret = Zeroizing::new(String::with_capacity(prefix.len() + RANDOM_CHARS));
    secret.push_str(prefix);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut secret);
    bytes.zeroize();
    Ok(secret)
}

/// Whether `raw` is exactly the encoding of 32 bytes (one text for one
/// secret: no padding, no other alphabet, no trailing bits).
pub(crate) fn is_canonical(raw: &str) -> bool {
    raw.len() == RANDOM_CHARS
        && URL_SAFE_NO_PAD
            .decode(raw)
            .is_ok_and(|bytes| URL_SAFE_NO_PAD.encode(bytes) == raw)
}

/// The SHA-256 of `parts` in lower-case hex: what the store keeps.
pub(crate) fn sha256_hex(sha: &dyn Sha256, parts: &[&[u8]]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = sha.digest(parts);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    hex
}

/// Defines a single-use link's secret (`$token`: 256 random bits in
/// URL-safe base64, wiped from memory when dropped, never printed) and
/// what the store keeps of it (`$hash`: its SHA-256 in hex, the text
/// prefixed with `$domain` so that one secret never digests as another
/// kind's). A reset link's and a verification link's share all of it.
macro_rules! link_secret {
    (
        $(#[$token_doc:meta])* $token:ident,
        $(#[$hash_doc:meta])* $hash:ident,
        $domain:literal
    ) => {
        $(#[$token_doc])*
        #[derive(Clone)]
        pub struct $token(zeroize::Zeroizing<String>);

        $(#[$hash_doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $hash(String);

        impl $token {
            /// A new token.
            pub fn generate(random: &dyn crate::random::Random) -> Result<Self, crate::error::RandomError> {
                crate::secret::generate(random, "").map(Self)
            }

            /// A token as a client sends it back; `None` for text that
            /// cannot be one (no lookup made).
            #[must_use]
            pub fn parse(raw: &str) -> Option<Self> {
                crate::secret::is_canonical(raw).then(|| Self(zeroize::Zeroizing::new(raw.to_owned())))
            }

            /// The token, for the link; never log it.
            #[must_use]
            pub fn expose(&self) -> &str {
                &self.0
            }

            /// What the store keeps of it.
            #[must_use]
            pub fn digest(&self, sha: &dyn crate::ports::Sha256) -> $hash {
                $hash(crate::secret::sha256_hex(sha, &[$domain, self.0.as_bytes()]))
            }
        }

        impl std::fmt::Debug for $token {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($token), "(<redacted>)"))
            }
        }

        impl $hash {
            /// A hash as the store keeps it.
            #[must_use]
            pub fn new(hex: String) -> Self {
                Self(hex)
            }

            /// The hash in hex.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

pub(crate) use link_secret;
