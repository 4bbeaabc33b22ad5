//! The crate's error: what can go wrong with keys.

use todo_core::BoxError;

/// Generating, loading or saving a signing or verification key failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The private key is neither Ed25519 nor P-256 PKCS#8 PEM: refused rather than guessed at.
    #[error("the key is not a PKCS#8 Ed25519 or P-256 private key in PEM")]
    UnsupportedPrivateKey,
    /// The public key is neither Ed25519 nor P-256.
    #[error("the key is not an Ed25519 or P-256 public key (SPKI PEM or JWK)")]
    UnsupportedPublicKey,
    /// The system could not make a key or a random value.
    #[error("key generation failed")]
    Generation(#[source] BoxError),
    /// argon2 refused the cost parameters (too little memory, zero passes).
    #[error("the argon2 parameters are invalid")]
    Argon2Params(#[source] BoxError),
    /// The passkeys' relying party cannot be this origin.
    #[error("passkeys' relying party: {0}")]
    Relying(String),
    /// A second-factor key is not 32 bytes.
    #[error("the second-factor key must be 32 bytes")]
    SealingKeyLength,
    /// A key file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}
