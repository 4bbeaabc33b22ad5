//! TLS files: a configured certificate chain and key, or a self-signed
//! certificate created on first start and kept in the data directory. The
//! rustls configuration itself is todo-http's ([`todo_http::tls_server_config`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What can go wrong setting TLS up; each names the file concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's answer.
        source: std::io::Error,
    },
    /// A file holds no usable PEM.
    #[error("{path}: no PEM certificate or private key found in it")]
    Pem {
        /// The file.
        path: PathBuf,
    },
    /// rcgen could not make a certificate.
    #[error("could not create a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate and key.
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct TlsIdentity {
    /// The chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl TlsIdentity {
    /// Reads a PEM certificate chain and a PEM private key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(cert)?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|_| TlsError::Pem {
                path: cert.to_owned(),
            })?;
        if certs.is_empty() {
            return Err(TlsError::Pem {
                path: cert.to_owned(),
            });
        }
        let key_pem = zeroize::Zeroizing::new(read(key)?);
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Pem {
            path: key.to_owned(),
        })?;
        Ok(Self { certs, key })
    }

    /// The self-signed identity in `dir` (`tls-cert.pem`, `tls-key.pem`),
    /// created for `names` if missing. Returns whether it was created.
    pub fn self_signed_in(dir: &Path, names: &[String]) -> Result<(Self, bool), TlsError> {
        let cert = dir.join("tls-cert.pem");
        let key = dir.join("tls-key.pem");
        if cert.exists() && key.exists() {
            return Ok((Self::load(&cert, &key)?, false));
        }
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let generated = rcgen::generate_simple_self_signed(names.to_vec())?;
        write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert, generated.cert.pem()).map_err(|e| io(&cert, e))?;
        Ok((Self::load(&cert, &key)?, true))
    }

    /// SHA-256 of the leaf certificate, as colon-separated hex.
    #[must_use]
    pub fn fingerprint(&self) -> String {
        let Some(leaf) = self.certs.first() else {
            return String::new();
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf.as_ref());
        let mut text = String::with_capacity(95);
        for (i, byte) in digest.as_ref().iter().enumerate() {
            if i > 0 {
                text.push(':');
            }
            let _ = write!(text, "{byte:02X}");
        }
        text
    }

    /// The server configuration (see [`todo_http::tls_server_config`]).
    pub fn server_config(self) -> Result<Arc<ServerConfig>, TlsError> {
        Ok(todo_http::tls_server_config(self.certs, self.key)?)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| io(path, e))
}

fn io(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| io(path, e))?;
    file.write_all(contents).map_err(|e| io(path, e))
}
