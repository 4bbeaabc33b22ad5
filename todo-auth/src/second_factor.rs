//! What second factors need of cryptography: HMAC-SHA-1 for TOTP codes
//! (RFC 4226 names it; a MAC's use of SHA-1 is not broken by its
//! collisions) and AES-256-GCM to seal their secrets under a key kept
//! outside the database.

use std::io::Write as _;
use std::path::Path;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use std::sync::Arc;

use todo_core::{HmacSha1, Random, SealError, SecretSealer, UserId};
use zeroize::Zeroizing;

use crate::error::KeyError;

/// aws-lc's HMAC-SHA-1.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsHmacSha1;

impl HmacSha1 for AwsHmacSha1 {
    fn mac(&self, key: &[u8], message: &[u8]) -> [u8; 20] {
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        let tag = hmac::sign(&key, message);
        let mut out = [0u8; 20];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// The first byte of every sealed secret: the format, so that a later
/// one can be told apart. Then the key's id, the nonce, the ciphertext and
/// its tag.
const FORMAT: u8 = 1;
/// The bytes of a key's id: enough to tell keys apart in an error, never
/// to guess the key.
const KEY_ID_LEN: usize = 4;
/// What a sealed secret is bound to besides its user: its use.
const DOMAIN: &[u8] = b"todo totp secret\0";

/// Seals second factors' secrets with AES-256-GCM: a random 96-bit nonce
/// per secret, the user's id as associated data (a secret copied to
/// another user's row does not open), the key from a file of its own.
pub struct AesGcmSealer {
    key: LessSafeKey,
    /// The first bytes of the key's SHA-256, stored with each secret: a
    /// secret sealed under another key is said to be, not just refused.
    key_id: [u8; KEY_ID_LEN],
    /// Where nonces come from (`OsRandom` in production).
    random: Arc<dyn Random>,
}

impl std::fmt::Debug for AesGcmSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesGcmSealer(<key>)")
    }
}

impl AesGcmSealer {
    /// The length of the key, in bytes.
    pub const KEY_LEN: usize = 32;

    /// A sealer over these 32 bytes, its nonces drawn from `random`.
    ///
    /// # Errors
    ///
    /// [`KeyError`] unless the key is 32 bytes.
    pub fn new(key: &[u8], random: Arc<dyn Random>) -> Result<Self, KeyError> {
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| KeyError::SealingKeyLength)?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key);
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&digest.as_ref()[..KEY_ID_LEN]);
        Ok(Self {
            key: LessSafeKey::new(unbound),
            key_id,
            random,
        })
    }

    /// The sealer whose key is in `path` (32 random bytes), made there first
    /// (readable by its owner only) when the file does not exist. Instances
    /// starting at once on one path agree on one key: the new file is
    /// written whole beside it and linked into place, and whoever loses
    /// the race reads the winner's.
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the file cannot be read or made, or is not 32 bytes.
    pub fn from_file(path: &Path, random: Arc<dyn Random>) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => return Self::new(&Zeroizing::new(bytes), random),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let mut key = Zeroizing::new([0u8; Self::KEY_LEN]);
        let mut suffix = [0u8; 8];
        random
            .fill(key.as_mut())
            .and_then(|()| random.fill(&mut suffix))
            .map_err(|e| KeyError::Generation(Box::new(e)))?;
        let mut draft = path.as_os_str().to_owned();
        draft.push(format!(".{:016x}.new", u64::from_le_bytes(suffix)));
        let draft = std::path::PathBuf::from(draft);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&draft).and_then(|mut file| {
            file.write_all(key.as_ref())?;
            file.sync_all()
        });
        // A link fails if the path exists: of instances racing, one wins.
        let linked = written.and_then(|()| std::fs::hard_link(&draft, path));
        let _ = std::fs::remove_file(&draft);
        // (the new name on the disk too, before anything is sealed under it)
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        match linked {
            Ok(()) => Self::new(key.as_ref(), random),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::new(&Zeroizing::new(std::fs::read(path).map_err(io)?), random)
            }
            Err(e) => Err(io(e)),
        }
    }

    fn aad(user: UserId) -> Vec<u8> {
        let mut aad = Vec::with_capacity(DOMAIN.len() + 16);
        aad.extend_from_slice(DOMAIN);
        aad.extend_from_slice(user.as_uuid().as_bytes());
        aad
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SealFault(&'static str);

fn fault(what: &'static str) -> SealError {
    SealError(Box::new(SealFault(what)))
}

impl SecretSealer for AesGcmSealer {
    fn seal(&self, user: UserId, plain: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| fault("no randomness for a nonce"))?;
        let mut sealed = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + plain.len() + 16);
        sealed.push(FORMAT);
        sealed.extend_from_slice(&self.key_id);
        sealed.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(user)),
                &mut body,
            )
            .map_err(|_| fault("sealing failed"))?;
        sealed.extend_from_slice(&body);
        Ok(sealed)
    }

    fn open(&self, user: UserId, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let Some((&FORMAT, rest)) = sealed.split_first() else {
            return Err(fault("not a sealed secret of a known format"));
        };
        if rest.len() < KEY_ID_LEN + NONCE_LEN {
            return Err(fault("a sealed secret too short"));
        }
        let (key_id, rest) = rest.split_at(KEY_ID_LEN);
        if key_id != self.key_id {
            return Err(fault(
                "the secret was sealed under another key: this instance's --second-factor-key is not the one it was made with",
            ));
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fault("bad nonce"))?;
        let mut body = Zeroizing::new(body.to_vec());
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(Self::aad(user)), body.as_mut_slice())
            .map_err(|_| fault("the secret does not open: another key, user or an alteration"))?
            .len();
        body.truncate(plain_len);
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OsRandom;
    use todo_core::{TotpCode, TotpSecret};

    fn user(n: u128) -> UserId {
        UserId::from_uuid(uuid::Uuid::from_u128(n))
    }

    /// RFC 6238's appendix B, SHA-1, cut to six digits.
    #[test]
    fn codes_match_rfc_6238() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        for (time, eight) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            let code = secret.code_at(&AwsHmacSha1, time / 30);
            assert_eq!(code.digits(), eight[2..], "at {time}");
            assert_eq!(TotpCode::parse(&eight[2..]), Some(code));
        }
    }

    #[test]
    fn a_sealed_secret_opens_for_its_user_under_its_key_only() {
        let sealer = AesGcmSealer::new(&[7u8; 32], Arc::new(OsRandom)).unwrap();
        let sealed = sealer.seal(user(1), b"twenty bytes secret!").unwrap();
        assert_eq!(
            sealer.open(user(1), &sealed).unwrap().as_slice(),
            b"twenty bytes secret!"
        );
        assert!(!sealed.windows(6).any(|w| w == b"twenty"));
        assert!(sealer.open(user(2), &sealed).is_err(), "another user's row");
        let other = AesGcmSealer::new(&[8u8; 32], Arc::new(OsRandom)).unwrap();
        let another = other.open(user(1), &sealed).unwrap_err();
        assert!(
            todo_core::error_chain(&another).contains("another key"),
            "another key, said so"
        );
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(sealer.open(user(1), &altered).is_err(), "an alteration");
        assert!(sealer.open(user(1), &sealed[..10]).is_err());
        assert!(sealer.open(user(1), &[]).is_err());
        // A fresh nonce each time: the same secret seals differently.
        assert_ne!(
            sealer.seal(user(1), b"same").unwrap(),
            sealer.seal(user(1), b"same").unwrap()
        );
        assert!(AesGcmSealer::new(&[0u8; 16], Arc::new(OsRandom)).is_err());
    }

    #[test]
    fn the_key_file_is_made_once_for_its_owner_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mfa.key");
        let first = AesGcmSealer::from_file(&path, Arc::new(OsRandom)).unwrap();
        let sealed = first.seal(user(3), b"kept").unwrap();
        let again = AesGcmSealer::from_file(&path, Arc::new(OsRandom)).unwrap();
        assert_eq!(again.open(user(3), &sealed).unwrap().as_slice(), b"kept");
        assert_eq!(std::fs::read(&path).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(AesGcmSealer::from_file(&path, Arc::new(OsRandom)).is_err());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no draft left"
        );
    }

    #[test]
    fn instances_starting_at_once_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mfa.key");
        let sealers: Vec<AesGcmSealer> = std::thread::scope(|s| {
            let started: Vec<_> = (0..8)
                .map(|_| s.spawn(|| AesGcmSealer::from_file(&path, Arc::new(OsRandom)).unwrap()))
                .collect();
            started.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let sealed = sealers[0].seal(user(5), b"shared").unwrap();
        for sealer in &sealers {
            assert_eq!(sealer.open(user(5), &sealed).unwrap().as_slice(), b"shared");
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no draft left"
        );
    }
}
