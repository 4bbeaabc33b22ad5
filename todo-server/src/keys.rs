//! Key files: auth-server's signing key (created on first start, rotated on
//! command), the rotated-out public keys that still verify, and the public
//! key files task-server is given. Every key file is read here, once.

use std::path::{Path, PathBuf};

use todo_auth::{KeyAlgorithm, PublicKey, SigningKey};

use crate::Error;

/// The signing key at `path`, created (0600) with `algorithm` if missing.
pub fn load_or_create_signing_key(
    path: &Path,
    algorithm: KeyAlgorithm,
) -> Result<SigningKey, Error> {
    if path.exists() {
        return SigningKey::load(path).map_err(|e| Error::key("--signing-key", e));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, e))?;
    }
    let key = SigningKey::generate(algorithm).map_err(|e| Error::key("generating a key", e))?;
    key.save(path).map_err(|e| Error::key("--signing-key", e))?;
    tracing::info!(path = %path.display(), kid = key.public_key().kid(), "created a signing key");
    Ok(key)
}

/// Makes a new signing key at `path` (same algorithm); the old public key
/// moves to `verification_dir`, so tokens it signed stay valid.
pub fn rotate(path: &Path, verification_dir: &Path, algorithm: KeyAlgorithm) -> Result<(), Error> {
    let old = load_or_create_signing_key(path, algorithm)?;
    std::fs::create_dir_all(verification_dir).map_err(|e| Error::file(verification_dir, e))?;
    let kept = verification_dir.join(format!("{}.pem", old.public_key().kid()));
    std::fs::write(&kept, old.public_key().to_pem()).map_err(|e| Error::file(&kept, e))?;
    let new = SigningKey::generate(old.public_key().algorithm())
        .map_err(|e| Error::key("generating a key", e))?;
    let staged = path.with_extension("pem.new");
    let _ = std::fs::remove_file(&staged);
    new.save(&staged)
        .map_err(|e| Error::key(staged.display(), e))?;
    std::fs::rename(&staged, path).map_err(|e| Error::file(path, e))?;
    tracing::info!(
        old = old.public_key().kid(),
        new = new.public_key().kid(),
        "signing key rotated; restart the servers to use it"
    );
    Ok(())
}

/// The public keys (`*.pem`) in `dir`; none if the directory is missing.
/// A directory that cannot be read is an error, never "no keys": after a
/// rotation that would refuse every token the old key signed.
pub fn public_keys_in(dir: &Path) -> Result<Vec<PublicKey>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::file(dir, e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::file(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "pem") {
            paths.push(path);
        }
    }
    read_public_keys(&paths, None)
}

/// The public keys in the files given to `setting` (e.g. `--jwt-public-key`).
pub fn public_key_files(paths: &[PathBuf], setting: &'static str) -> Result<Vec<PublicKey>, Error> {
    read_public_keys(paths, Some(setting))
}

fn read_public_keys(
    paths: &[PathBuf],
    setting: Option<&'static str>,
) -> Result<Vec<PublicKey>, Error> {
    let context = |path: &Path| match setting {
        Some(setting) => format!("{setting} {}", path.display()),
        None => path.display().to_string(),
    };
    paths
        .iter()
        .map(|path| {
            let pem = std::fs::read_to_string(path).map_err(|e| match setting {
                Some(setting) => Error::setting(setting, format!("{}: {e}", path.display())),
                None => Error::file(path, e),
            })?;
            PublicKey::from_pem(&pem).map_err(|e| Error::key(context(path), e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_rotation_keeps_the_old_public_key_verifying() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing-key.pem");
        let verification = dir.path().join("verification-keys");
        let first = load_or_create_signing_key(&path, KeyAlgorithm::EdDsa).unwrap();
        assert!(public_keys_in(&verification).unwrap().is_empty());
        rotate(&path, &verification, KeyAlgorithm::EdDsa).unwrap();
        let second = load_or_create_signing_key(&path, KeyAlgorithm::EdDsa).unwrap();
        assert_ne!(first.public_key().kid(), second.public_key().kid());
        let kept = public_keys_in(&verification).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].kid(), first.public_key().kid());
        let named = public_key_files(
            &[verification.join(format!("{}.pem", first.public_key().kid()))],
            "--jwt-public-key",
        )
        .unwrap();
        assert_eq!(named[0].kid(), first.public_key().kid());
    }

    #[test]
    fn a_missing_public_key_file_names_its_setting() {
        let error = public_key_files(&[PathBuf::from("/nonexistent/key.pem")], "--jwt-public-key")
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("--jwt-public-key: /nonexistent/key.pem: "),
            "{error}"
        );
    }

    /// Only a missing directory means no keys; one that is there and cannot
    /// be read (a file where the directory should be, say) is an error.
    #[test]
    fn an_unreadable_verification_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_dir = dir.path().join("verification-keys");
        std::fs::write(&not_a_dir, "a file").unwrap();
        assert!(public_keys_in(&not_a_dir).is_err());
        assert!(
            public_keys_in(&dir.path().join("missing"))
                .unwrap()
                .is_empty()
        );
    }
}
