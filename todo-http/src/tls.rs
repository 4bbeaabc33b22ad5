//! The TLS configuration the servers speak: rustls with the aws-lc
//! provider, TLS 1.3 and 1.2, ALPN `h2` then `http/1.1`. Where the
//! certificate comes from (files, a self-signed one) is the wiring's
//! business (`todo-server`).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The server configuration for a certificate chain and its private key.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // hyper-util's auto builder speaks HTTP/2 only when ALPN picks it.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
