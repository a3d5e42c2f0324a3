//! The admin API over TLS: a certificate chain and its private key, PEM
//! files, read once at start (`--admin-tls-cert`, `--admin-tls-key`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The admin API's certificate and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTls {
    /// The certificate chain (PEM), the server's own first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the admin API's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the admin API's TLS {what} {}: {reason}", path.display())]
pub struct TlsError {
    what: &'static str,
    path: PathBuf,
    reason: String,
}

impl AdminTls {
    /// The server configuration: TLS 1.2 and 1.3, HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let failed = |what, path: &Path, reason: String| TlsError {
            what,
            path: path.to_owned(),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|error| failed("certificate", &self.cert, error.to_string()))?;
        if chain.is_empty() {
            return Err(failed(
                "certificate",
                &self.cert,
                "no PEM certificate in it".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|error| failed("key", &self.key, error.to_string()))?;
        #[expect(
            deprecated,
            reason = "ring, as weir's TLS clients (sqlx, reqwest) use: no post-quantum key exchange"
        )]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| failed("certificate", &self.cert, error.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|error| {
                failed(
                    "key",
                    &self.key,
                    format!(
                        "it does not go with the certificate {}: {error}",
                        self.cert.display()
                    ),
                )
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
