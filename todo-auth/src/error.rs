//! The crate's error: what can go wrong with keys.

use todo_core::BoxError;

/// Generating, loading or saving a signing or verification key failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("the key is not a PKCS#8 Ed25519 or P-256 private key in PEM")]
    UnsupportedPrivateKey,
    #[error("the key is not an Ed25519 or P-256 public key (SPKI PEM or JWK)")]
    UnsupportedPublicKey,
    #[error("key generation failed")]
    Generation(#[source] BoxError),
    #[error("the argon2 parameters are invalid")]
    Argon2Params(#[source] BoxError),
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
