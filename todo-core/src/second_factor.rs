//! Second factors: a TOTP authenticator (RFC 6238: HMAC-SHA-1, 6 digits,
//! 30-second steps, one step of skew either way) with ten single-use
//! recovery codes, and the two-step login's `mfa_token`.
//!
//! The secret is stored sealed ([`SecretSealer`]: authenticated encryption
//! under a key kept apart from the database, bound to its user), recovery
//! codes and login tokens as SHA-256 digests. A code is accepted once: the
//! store keeps the last step used and takes only a later one, atomically.

use std::time::Duration;

use zeroize::Zeroizing;

use crate::error::{BoxError, RandomError};
use crate::ports::Sha256;
use crate::random::Random;
use crate::time::Timestamp;
use crate::user::{UserId, Username};

/// How long a step lasts.
pub const TOTP_STEP: Duration = Duration::from_secs(30);
/// The digits of a code.
pub const TOTP_DIGITS: usize = 6;
/// How many recovery codes a confirmed enrolment hands out.
pub const RECOVERY_CODES: usize = 10;
/// How long the two-step login's token lives.
pub const MFA_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
/// How many codes one `mfa_token` lets a client try.
pub const MFA_TOKEN_ATTEMPTS: u32 = 5;
/// How long an enrolment may wait for its confirming code.
pub const TOTP_ENROLMENT_TTL: Duration = Duration::from_secs(15 * 60);

/// The bytes of a TOTP secret: 160 bits (RFC 4226's recommendation),
/// wiped from memory when dropped, never printed.
#[derive(Clone)]
pub struct TotpSecret(Zeroizing<[u8; 20]>);

impl TotpSecret {
    /// A fresh secret.
    ///
    /// # Errors
    ///
    /// When the randomness fails.
    pub fn generate(random: &dyn Random) -> Result<Self, RandomError> {
        let mut bytes = Zeroizing::new([0u8; 20]);
        random.fill(bytes.as_mut())?;
        Ok(Self(bytes))
    }

    /// A secret from its bytes (as unsealed); `None` unless 20 of them.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 20] = bytes.try_into().ok()?;
        Some(Self(Zeroizing::new(array)))
    }

    /// A secret as typed into an authenticator app: base32 (case and
    /// spaces do not matter); `None` unless it is 20 bytes' worth.
    #[must_use]
    pub fn from_base32(text: &str) -> Option<Self> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(20));
        let mut buffer: u32 = 0;
        let mut bits = 0;
        for c in text.chars().filter(|c| *c != ' ') {
            let value = match c.to_ascii_uppercase() {
                letter @ 'A'..='Z' => letter as u32 - 'A' as u32,
                digit @ '2'..='7' => digit as u32 - '2' as u32 + 26,
                _ => return None,
            };
            buffer = (buffer << 5) | value;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                bytes.push(((buffer >> bits) & 0xff) as u8);
            }
        }
        Self::from_bytes(&bytes)
    }

    /// The secret's bytes, to seal or to key the HMAC; never log them.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// The secret in base32 without padding (RFC 4648), as authenticator
    /// apps take it typed in: 32 characters.
    #[must_use]
    pub fn base32(&self) -> Zeroizing<String> {
        Zeroizing::new(base32(self.expose()))
    }

    /// The `otpauth://` URI an authenticator app scans, labelled with the
    /// issuer and the username (both percent-encoded).
    #[must_use]
    pub fn otpauth_uri(&self, issuer: &str, username: &Username) -> Zeroizing<String> {
        let issuer = percent_encode(issuer);
        Zeroizing::new(format!(
            "otpauth://totp/{issuer}:{user}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={TOTP_DIGITS}&period={period}",
            user = percent_encode(username.as_str()),
            secret = self.base32().as_str(),
            period = TOTP_STEP.as_secs(),
        ))
    }

    /// The code of `step` (RFC 4226's HOTP of the step number, cut to
    /// [`TOTP_DIGITS`] digits).
    #[must_use]
    pub fn code_at(&self, hmac: &dyn HmacSha1, step: u64) -> TotpCode {
        let mac = hmac.mac(self.expose(), &step.to_be_bytes());
        let offset = usize::from(mac[19] & 0x0f);
        let binary = u32::from_be_bytes([
            mac[offset],
            mac[offset + 1],
            mac[offset + 2],
            mac[offset + 3],
        ]) & 0x7fff_ffff;
        TotpCode(binary % 1_000_000)
    }

    /// The step among `now`'s and its neighbours whose code is `code`, if
    /// any (each compared in full, whichever matches).
    #[must_use]
    pub fn matching_step(
        &self,
        hmac: &dyn HmacSha1,
        code: TotpCode,
        now: Timestamp,
    ) -> Option<u64> {
        let current = step_of(now);
        let mut found = None;
        for step in [
            current.saturating_sub(1),
            current,
            current.saturating_add(1),
        ] {
            if self.code_at(hmac, step).0 == code.0 && found.is_none() {
                found = Some(step);
            }
        }
        found
    }
}

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

/// The step `at` falls in: seconds since the epoch over [`TOTP_STEP`]
/// (0 before the epoch).
#[must_use]
pub fn step_of(at: Timestamp) -> u64 {
    u64::try_from(at.unix_seconds()).unwrap_or(0) / TOTP_STEP.as_secs()
}

/// A six-digit code as typed: digits only, spaces allowed between them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TotpCode(u32);

impl TotpCode {
    /// A code as typed; `None` unless exactly six digits (spaces aside).
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() > 16 {
            return None;
        }
        let mut value = 0u32;
        let mut digits = 0;
        for c in raw.chars() {
            match c {
                ' ' => {}
                '0'..='9' => {
                    digits += 1;
                    value = value * 10 + (c as u32 - '0' as u32);
                    if digits > TOTP_DIGITS {
                        return None;
                    }
                }
                _ => return None,
            }
        }
        (digits == TOTP_DIGITS).then_some(Self(value))
    }

    /// The code as six digits.
    #[must_use]
    pub fn digits(&self) -> String {
        format!("{:06}", self.0)
    }
}

impl std::fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpCode(<redacted>)")
    }
}

/// HMAC-SHA-1, as RFC 4226 asks (todo-auth's is aws-lc's).
pub trait HmacSha1: Send + Sync {
    /// The MAC of `message` under `key`.
    fn mac(&self, key: &[u8], message: &[u8]) -> [u8; 20];
}

/// Why a secret could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
#[error("the second-factor key could not seal or open a secret")]
pub struct SealError(#[source] pub BoxError);

/// Seals secrets for storage under a key kept outside the database, bound
/// to their user (a sealed secret moved to another user's row opens for
/// nobody).
pub trait SecretSealer: Send + Sync {
    /// `plain`, encrypted and authenticated for `user`.
    ///
    /// # Errors
    ///
    /// When the encryption or its nonce fails.
    fn seal(&self, user: UserId, plain: &[u8]) -> Result<Vec<u8>, SealError>;
    /// The plain bytes of what [`seal`](Self::seal) made for `user`.
    ///
    /// # Errors
    ///
    /// When it was made for someone else, under another key, or altered.
    fn open(&self, user: UserId, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError>;
}

/// A user's TOTP authenticator as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRecord {
    /// Whose it is.
    pub user_id: UserId,
    /// The secret, sealed ([`SecretSealer`]).
    pub sealed_secret: Vec<u8>,
    /// When enrolment began; it names this enrolment (a confirmation
    /// confirms only the one it read).
    pub created_at: Timestamp,
    /// When the user confirmed it with a code; `None` while pending.
    pub confirmed_at: Option<Timestamp>,
    /// The last step whose code was accepted: only a later one is taken.
    pub last_step: Option<u64>,
}

/// What second factors a user has, as login and the account read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecondFactors {
    /// Their TOTP authenticator, confirmed or pending.
    pub totp: Option<TotpRecord>,
    /// How many of their recovery codes are unused.
    pub recovery_codes_left: u32,
    /// How many passkeys they have.
    pub passkeys: u32,
}

impl SecondFactors {
    /// Whether a login needs a second factor: a confirmed authenticator.
    #[must_use]
    pub fn required(&self) -> bool {
        self.totp.as_ref().is_some_and(|t| t.confirmed_at.is_some())
    }

    /// What the user has enrolled, as the API names it (`mfa`): the
    /// second step's methods, and `passkey` when they have one (a passkey
    /// signs in alone: it is no second step).
    #[must_use]
    pub fn enrolled(&self) -> Vec<&'static str> {
        let mut enrolled = self.methods();
        if self.passkeys > 0 {
            enrolled.push("passkey");
        }
        enrolled
    }

    /// The methods a login's second step takes, as the API names them.
    #[must_use]
    pub fn methods(&self) -> Vec<&'static str> {
        let mut methods = Vec::new();
        if self.required() {
            methods.push("totp");
            if self.recovery_codes_left > 0 {
                methods.push("recovery_code");
            }
        }
        methods
    }
}

/// A recovery code: 80 random bits as four groups of four base32
/// characters (`abcd-efgh-ijkl-mnop`), shown once, stored as a SHA-256.
#[derive(Clone)]
pub struct RecoveryCode(Zeroizing<String>);

/// What the store keeps of a [`RecoveryCode`]: its SHA-256 in hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecoveryCodeHash(String);

impl RecoveryCodeHash {
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

impl RecoveryCode {
    /// A fresh code.
    ///
    /// # Errors
    ///
    /// When the randomness fails.
    pub fn generate(random: &dyn Random) -> Result<Self, RandomError> {
        let mut bytes = Zeroizing::new([0u8; 10]);
        random.fill(bytes.as_mut())?;
        let plain = Zeroizing::new(base32(bytes.as_ref()).to_ascii_lowercase());
        let mut grouped = Zeroizing::new(String::with_capacity(19));
        for (i, c) in plain.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                grouped.push('-');
            }
            grouped.push(c);
        }
        Ok(Self(grouped))
    }

    /// A code as typed: case, spaces and dashes do not matter; `None`
    /// unless it is 16 base32 characters.
    #[must_use]
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() > 64 {
            return None;
        }
        let plain: Zeroizing<String> = Zeroizing::new(
            raw.chars()
                .filter(|c| *c != '-' && *c != ' ')
                .map(|c| c.to_ascii_lowercase())
                .collect(),
        );
        let valid = plain.len() == 16
            && plain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
        if !valid {
            return None;
        }
        let mut grouped = Zeroizing::new(String::with_capacity(19));
        for (i, c) in plain.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                grouped.push('-');
            }
            grouped.push(c);
        }
        Some(Self(grouped))
    }

    /// The code, to show once; never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the store keeps of it (domain-separated from other secrets).
    #[must_use]
    pub fn digest(&self, sha: &dyn Sha256) -> RecoveryCodeHash {
        RecoveryCodeHash(crate::secret::sha256_hex(
            sha,
            &[b"recovery-code:", self.0.as_bytes()],
        ))
    }
}

impl std::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

crate::secret::link_secret!(
    /// The two-step login's token, handed out when the password matched
    /// and a second factor is needed: 256 random bits in URL-safe base64,
    /// wiped from memory when dropped, never printed.
    MfaToken,
    /// What the store keeps of an [`MfaToken`]: its SHA-256, in hex.
    MfaTokenHash,
    b"mfa-token:"
);

/// A two-step login waiting for its second factor, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaChallengeRecord {
    /// The token's digest.
    pub hash: MfaTokenHash,
    /// Whose password matched.
    pub user_id: UserId,
    /// When the password matched.
    pub created_at: Timestamp,
    /// When the token stops working.
    pub expires_at: Timestamp,
    /// How many codes it still lets a client try.
    pub attempts_left: u32,
}

/// The second factor offered at a login's second step, or to confirm an
/// action.
#[derive(Debug, Clone)]
pub enum SecondFactorAnswer {
    /// A code from the authenticator.
    Totp(TotpCode),
    /// One of the recovery codes.
    RecoveryCode(RecoveryCode),
    /// One of the user's passkeys, answering a challenge begun with
    /// `SessionService::start_passkey_sign_in` (confirming an action, not
    /// a login's second step).
    Passkey {
        /// The challenge the answer is to.
        challenge_id: crate::passkey::ChallengeId,
        /// What the browser answered.
        answer: String,
    },
}

/// RFC 4648 base32, upper case, without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeSha256, SeededRandom};

    #[test]
    fn base32_matches_rfc_4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fo"), "MZXQ");
        assert_eq!(base32(b"foo"), "MZXW6");
        assert_eq!(base32(b"foob"), "MZXW6YQ");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn codes_parse_as_typed_and_nothing_else() {
        assert_eq!(TotpCode::parse("012345").unwrap().digits(), "012345");
        assert_eq!(TotpCode::parse("012 345").unwrap().digits(), "012345");
        for bad in [
            "",
            "12345",
            "1234567",
            "12345a",
            "١٢٣٤٥٦",
            "+12345",
            "0123456789012345678",
        ] {
            assert!(TotpCode::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn recovery_codes_are_grouped_parse_loosely_and_digest_apart() {
        let random = SeededRandom::new(7);
        let code = RecoveryCode::generate(&random).unwrap();
        assert_eq!(code.expose().len(), 19);
        assert_eq!(code.expose().matches('-').count(), 3);
        let typed = code.expose().to_ascii_uppercase().replace('-', " ");
        let back = RecoveryCode::parse(&typed).unwrap();
        assert_eq!(back.digest(&FakeSha256), code.digest(&FakeSha256));
        assert!(RecoveryCode::parse("abcd-efgh-ijkl-mno").is_none());
        assert!(RecoveryCode::parse("abcd-efgh-ijkl-mno1").is_none());
        assert!(!format!("{code:?}").contains(code.expose()));
        let other = RecoveryCode::generate(&random).unwrap();
        assert_ne!(other.expose(), code.expose());
    }

    #[test]
    fn the_uri_names_issuer_user_and_parameters() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        let user = Username::parse("alice.b").unwrap();
        let uri = secret.otpauth_uri("todo app", &user);
        assert_eq!(
            uri.as_str(),
            "otpauth://totp/todo%20app:alice.b?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=todo%20app&algorithm=SHA1&digits=6&period=30"
        );
        assert!(!format!("{secret:?}").contains("GEZD"));
        let typed = TotpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(typed.expose(), secret.expose());
        assert!(TotpSecret::from_base32("GEZDGNBV").is_none());
        assert!(TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1").is_none());
    }
}
