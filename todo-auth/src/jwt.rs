//! Access tokens: JWTs signed with Ed25519 (EdDSA, the default) or P-256
//! (ES256), each with a `kid`; a key set that verifies with several keys so
//! signing keys rotate without logging anyone out; JWKS rendering.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use todo_core::{
    AccessClaims, AccessTokenSigner, AccessTokenVerifier, Role, SessionId, Timestamp, TokenError,
    TokenRejection, UserId, Username,
};
use zeroize::Zeroizing;

use crate::error::KeyError;

/// The signature algorithms we accept: a fixed list, never read from a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyAlgorithm {
    /// Ed25519.
    #[default]
    EdDsa,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl KeyAlgorithm {
    /// The JWT `alg` this key signs with: fixed by the key, never by a token's header.
    #[must_use]
    pub const fn jwt(self) -> Algorithm {
        match self {
            Self::EdDsa => Algorithm::EdDSA,
            Self::Es256 => Algorithm::ES256,
        }
    }

    /// The `alg` as JWT spells it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
        }
    }

    /// The DER prefix of a SubjectPublicKeyInfo for a raw public key.
    const fn spki_prefix(self) -> &'static [u8] {
        match self {
            Self::EdDsa => &[
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
            ],
            Self::Es256 => &[
                0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
                0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
            ],
        }
    }

    /// The length of a raw public key (Ed25519: 32; P-256: uncompressed point).
    const fn raw_public_len(self) -> usize {
        match self {
            Self::EdDsa => 32,
            Self::Es256 => 65,
        }
    }
}

/// A public key that verifies tokens: its `kid` is the RFC 7638 thumbprint.
#[derive(Clone)]
pub struct PublicKey {
    kid: String,
    algorithm: KeyAlgorithm,
    raw: Vec<u8>,
    decoding: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    fn from_raw(algorithm: KeyAlgorithm, raw: Vec<u8>) -> Result<Self, KeyError> {
        if raw.len() != algorithm.raw_public_len() {
            return Err(KeyError::UnsupportedPublicKey);
        }
        let decoding = match algorithm {
            KeyAlgorithm::EdDsa => DecodingKey::from_ed_der(&raw),
            KeyAlgorithm::Es256 => DecodingKey::from_ec_der(&raw),
        };
        let jwk = Jwk::from_decoding_key(&decoding, Some(algorithm.jwt()))
            .map_err(|_| KeyError::UnsupportedPublicKey)?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|_| KeyError::UnsupportedPublicKey)?;
        Ok(Self {
            kid,
            algorithm,
            raw,
            decoding,
        })
    }

    /// Parses a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = pem_body(pem, "PUBLIC KEY").ok_or(KeyError::UnsupportedPublicKey)?;
        for algorithm in [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256] {
            if let Some(raw) = der.strip_prefix(algorithm.spki_prefix()) {
                return Self::from_raw(algorithm, raw.to_vec());
            }
        }
        Err(KeyError::UnsupportedPublicKey)
    }

    /// The SubjectPublicKeyInfo PEM.
    #[must_use]
    pub fn to_pem(&self) -> String {
        let mut der = self.algorithm.spki_prefix().to_vec();
        der.extend_from_slice(&self.raw);
        pem_encode("PUBLIC KEY", &der)
    }

    /// Reads a key from a JWK (as fetched from a JWKS); the `kid` is
    /// recomputed from the key, never trusted from the document.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        let decode = |s: &str| {
            URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|_| KeyError::UnsupportedPublicKey)
        };
        match &jwk.algorithm {
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Self::from_raw(KeyAlgorithm::EdDsa, decode(&p.x)?)
            }
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
                let mut raw = vec![0x04];
                raw.extend(decode(&p.x)?);
                raw.extend(decode(&p.y)?);
                Self::from_raw(KeyAlgorithm::Es256, raw)
            }
            _ => Err(KeyError::UnsupportedPublicKey),
        }
    }

    /// The key as a JWK with `kid`, `alg` and `use: sig`.
    pub fn to_jwk(&self) -> Result<Jwk, KeyError> {
        let mut jwk = Jwk::from_decoding_key(&self.decoding, Some(self.algorithm.jwt()))
            .map_err(|_| KeyError::UnsupportedPublicKey)?;
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(jwk)
    }

    /// The key's id: its RFC 7638 thumbprint, derived rather than configured.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key's algorithm.
    #[must_use]
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
}

/// A private signing key. Its PKCS#8 form is zeroed when dropped.
pub struct SigningKey {
    public: PublicKey,
    pkcs8: Zeroizing<Vec<u8>>,
    encoding: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, KeyError> {
        let generation = |e| KeyError::Generation(Box::new(e));
        let pkcs8 = match algorithm {
            KeyAlgorithm::EdDsa => Ed25519KeyPair::generate().and_then(|k| k.to_pkcs8v1()),
            KeyAlgorithm::Es256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|k| k.to_pkcs8v1()),
        }
        .map_err(generation)?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// Parses a PKCS#8 private key PEM (`-----BEGIN PRIVATE KEY-----`), Ed25519 or P-256.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der =
            Zeroizing::new(pem_body(pem, "PRIVATE KEY").ok_or(KeyError::UnsupportedPrivateKey)?);
        Self::from_pkcs8(&der)
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        let (algorithm, raw_public) = if let Ok(pair) = Ed25519KeyPair::from_pkcs8(der) {
            (KeyAlgorithm::EdDsa, pair.public_key().as_ref().to_vec())
        } else if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            (KeyAlgorithm::Es256, pair.public_key().as_ref().to_vec())
        } else {
            return Err(KeyError::UnsupportedPrivateKey);
        };
        let encoding = match algorithm {
            KeyAlgorithm::EdDsa => EncodingKey::from_ed_der(der),
            KeyAlgorithm::Es256 => EncodingKey::from_ec_der(der),
        };
        let public = PublicKey::from_raw(algorithm, raw_public)?;
        Ok(Self {
            public,
            pkcs8: Zeroizing::new(der.to_vec()),
            encoding,
        })
    }

    /// The PKCS#8 PEM, to save with file mode 0600.
    #[must_use]
    pub fn to_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem_encode("PRIVATE KEY", &self.pkcs8))
    }

    /// The public half, for the JWKS and for verifiers.
    #[must_use]
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Reads a PKCS#8 PEM file.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let pem = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| io_error(path, e))?);
        Self::from_pem(&pem)
    }

    /// Writes the key as PKCS#8 PEM, readable by the owner only (0600). Fails
    /// rather than overwrite an existing file.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| io_error(path, e))?;
        file.write_all(self.to_pem().as_bytes())
            .map_err(|e| io_error(path, e))?;
        file.sync_all().map_err(|e| io_error(path, e))
    }
}

fn io_error(path: &Path, source: std::io::Error) -> KeyError {
    KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The claims as they travel in the JWT.
#[derive(Debug, Serialize, Deserialize)]
struct WireClaims {
    sub: String,
    username: String,
    role: String,
    iss: String,
    aud: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    /// The session that issued it (absent from tokens made before sessions
    /// were named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
}

/// Signs access tokens with one key, naming it in the `kid` header.
#[derive(Debug)]
pub struct JwtSigner {
    key: SigningKey,
    header: Header,
}

impl JwtSigner {
    /// A signer with `key`, which every token's `kid` names.
    #[must_use]
    pub fn new(key: SigningKey) -> Self {
        let mut header = Header::new(key.public.algorithm.jwt());
        header.kid = Some(key.public.kid.clone());
        Self { key, header }
    }
}

impl AccessTokenSigner for JwtSigner {
    fn sign(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        let wire = WireClaims {
            sub: claims.subject.to_string(),
            username: claims.username.as_str().to_owned(),
            role: claims.role.as_str().to_owned(),
            iss: claims.issuer.clone(),
            aud: claims.audience.clone(),
            iat: claims.issued_at,
            nbf: claims.not_before,
            exp: claims.expires_at,
            jti: claims.token_id.to_string(),
            sid: claims.session.map(|s| s.to_string()),
        };
        jsonwebtoken::encode(&self.header, &wire, &self.key.encoding)
            .map_err(|e| TokenError::Signing(Box::new(e)))
    }
}

/// The public keys a verifier accepts, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<PublicKey>,
}

impl KeySet {
    /// A set of keys; a key given twice is kept once.
    #[must_use]
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let mut set = Self::default();
        for key in keys {
            if set.find(&key.kid).is_none() {
                set.keys.push(key);
            }
        }
        set
    }

    /// The key with this `kid`, if the set holds it.
    #[must_use]
    pub fn find(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The keys, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.iter()
    }

    /// Whether both sets hold the same keys (a `kid` is the key's
    /// thumbprint: the same `kid` is the same key), in any order.
    #[must_use]
    pub fn same_keys(&self, other: &Self) -> bool {
        self.keys.len() == other.keys.len()
            && self.keys.iter().all(|k| other.find(&k.kid).is_some())
    }

    /// The JWKS document (`/.well-known/jwks.json`).
    pub fn to_jwks(&self) -> Result<JwkSet, KeyError> {
        Ok(JwkSet {
            keys: self
                .keys
                .iter()
                .map(PublicKey::to_jwk)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Reads a JWKS, skipping keys of algorithms we do not accept.
    #[must_use]
    pub fn from_jwks(jwks: &JwkSet) -> Self {
        Self::new(
            jwks.keys
                .iter()
                .filter_map(|jwk| PublicKey::from_jwk(jwk).ok()),
        )
    }
}

/// At most this much clock skew is forgiven on `exp` and `nbf`.
pub const MAX_LEEWAY_SECONDS: u64 = 60;

/// The longest token we look at: ours are under 600 bytes.
const MAX_TOKEN_BYTES: usize = 4096;

/// Verifies access tokens against a key set that can be replaced while in
/// use (key rotation, a refetched JWKS).
#[derive(Debug)]
pub struct JwtVerifier {
    keys: RwLock<Arc<KeySet>>,
    /// Grows whenever the key set changes (see [`JwtVerifier::key_epoch`]).
    epoch: AtomicU64,
    issuer: String,
    audience: String,
    leeway: i64,
}

impl JwtVerifier {
    /// `leeway_seconds` is capped at [`MAX_LEEWAY_SECONDS`].
    #[must_use]
    pub fn new(keys: KeySet, issuer: &str, audience: &str, leeway_seconds: u64) -> Self {
        let leeway = leeway_seconds.min(MAX_LEEWAY_SECONDS).cast_signed();
        Self {
            keys: RwLock::new(Arc::new(keys)),
            epoch: AtomicU64::new(0),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway,
        }
    }

    /// The keys in use now.
    #[must_use]
    pub fn keys(&self) -> Arc<KeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the key set; tokens in flight are checked against one set or
    /// the other. Returns whether the keys changed; if they did, the epoch
    /// grows (after the swap, under the lock: whoever reads the new epoch
    /// then reads the new keys).
    pub fn set_keys(&self, keys: KeySet) -> bool {
        let mut current = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if current.same_keys(&keys) {
            return false;
        }
        *current = Arc::new(keys);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// A number that grows whenever the key set changes: what was verified
    /// under an older epoch may no longer verify (a key was withdrawn).
    #[must_use]
    pub fn key_epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The time checks of [`AccessTokenVerifier::verify`], with this
    /// verifier's leeway: `exp` and `nbf` against `now`.
    pub fn check_times(
        &self,
        expires_at: i64,
        not_before: i64,
        now: Timestamp,
    ) -> Result<(), TokenError> {
        let now = now.unix_seconds();
        if now >= expires_at.saturating_add(self.leeway) {
            return Err(TokenError::Rejected(TokenRejection::Expired));
        }
        if now.saturating_add(self.leeway) < not_before {
            return Err(TokenError::Rejected(TokenRejection::NotYetValid));
        }
        Ok(())
    }

    fn validation(&self, algorithm: KeyAlgorithm) -> Validation {
        let mut validation = Validation::new(algorithm.jwt());
        // exp and nbf are checked below against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation
    }
}

impl AccessTokenVerifier for JwtVerifier {
    fn verify(&self, token: &str, now: Timestamp) -> Result<AccessClaims, TokenError> {
        let reject = |reason| TokenError::Rejected(reason);
        if token.len() > MAX_TOKEN_BYTES {
            return Err(reject(TokenRejection::Malformed));
        }
        // RFC 7515 §4.1.11: a `crit` header names extensions the verifier
        // must understand, and we understand none; jsonwebtoken would
        // ignore it. Refused whatever its value, even `null`.
        if has_crit(token) {
            return Err(reject(TokenRejection::Malformed));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| reject(TokenRejection::Malformed))?;
        let keys = self.keys();
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| keys.find(kid))
            .ok_or(reject(TokenRejection::UnknownKey))?;
        // The key fixes the algorithm: `alg: none` or HS256 with a public key never pass.
        if header.alg != key.algorithm.jwt() {
            return Err(reject(TokenRejection::BadSignature));
        }
        let wire = jsonwebtoken::decode::<WireClaims>(
            token,
            &key.decoding,
            &self.validation(key.algorithm),
        )
        .map_err(|e| reject(rejection(e.kind())))?
        .claims;
        self.check_times(wire.exp, wire.nbf, now)?;
        let username =
            Username::parse(&wire.username).map_err(|_| reject(TokenRejection::BadClaims))?;
        let role = Role::parse(&wire.role).map_err(|_| reject(TokenRejection::BadClaims))?;
        let bad_claims = || reject(TokenRejection::BadClaims);
        Ok(AccessClaims {
            subject: UserId::parse(&wire.sub).map_err(|_| bad_claims())?,
            username,
            role,
            issuer: wire.iss,
            audience: wire.aud,
            issued_at: wire.iat,
            not_before: wire.nbf,
            expires_at: wire.exp,
            token_id: uuid::Uuid::try_parse(&wire.jti).map_err(|_| bad_claims())?,
            session: wire
                .sid
                .as_deref()
                .map(SessionId::parse)
                .transpose()
                .map_err(|_| bad_claims())?,
        })
    }
}

/// Whether the token's header (its first segment, base64url JSON) has a
/// `crit` member. A header that does not decode answers `false`: the
/// header parse that follows refuses it.
fn has_crit(token: &str) -> bool {
    /// Only the member's presence matters, whatever its value (`null` too).
    #[derive(Deserialize)]
    struct Crit {
        #[serde(default, deserialize_with = "present")]
        crit: Option<()>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(value: D) -> Result<Option<()>, D::Error> {
        serde::de::IgnoredAny::deserialize(value).map(|_| Some(()))
    }
    let Some(segment) = token.split('.').next() else {
        return false;
    };
    let Ok(json) = URL_SAFE_NO_PAD.decode(segment) else {
        return false;
    };
    serde_json::from_slice::<Crit>(&json).is_ok_and(|h| h.crit.is_some())
}

fn rejection(kind: &ErrorKind) -> TokenRejection {
    match kind {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => TokenRejection::BadSignature,
        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
            TokenRejection::BadClaims
        }
        ErrorKind::ExpiredSignature => TokenRejection::Expired,
        ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
        _ => TokenRejection::Malformed,
    }
}

fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}
