//! The `Builder` methods that turn TLS on.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use super::TlsAcceptor;
use crate::error::{Error, Result};
use crate::server::Builder;

impl Builder {
    /// Serve TLS on every listener of this server with a rustls
    /// configuration (certificates, ALPN, client auth, versions: all set
    /// there). The negotiated ALPN protocol and SNI name are available as
    /// [`TlsInfo`](super::TlsInfo) connection data once the handshake completes. TLS 1.3
    /// early data (0-RTT) is not accepted, whatever `max_early_data_size`
    /// says: clients send after the handshake instead.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn config() -> std::sync::Arc<rustls::ServerConfig> { unimplemented!() }
    /// let server = netloom::Server::builder()
    ///     .tls(config())
    ///     .route(0, |ctx| ctx.reply(0, ctx.body()))
    ///     .bind("127.0.0.1:6565")?
    ///     .start()?;
    /// server.join();
    /// # Ok::<(), netloom::Error>(())
    /// ```
    pub fn tls(mut self, config: Arc<ServerConfig>) -> Self {
        self.layers.tls = Some(TlsAcceptor::new(config));
        self
    }

    /// Serve TLS with a certificate chain and private key read from PEM
    /// files, TLS 1.2 and 1.3, no client authentication; ALPN as given
    /// (may be empty).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if a file cannot be read or parsed, or the key
    /// does not match the certificate.
    pub fn tls_pem_files(
        self,
        cert_chain: impl AsRef<Path>,
        private_key: impl AsRef<Path>,
        alpn: &[&[u8]],
    ) -> Result<Self> {
        let certs = CertificateDer::pem_file_iter(cert_chain.as_ref())
            .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| Error::Config(format!("{}: {e}", cert_chain.as_ref().display())))?;
        let key = PrivateKeyDer::from_pem_file(private_key.as_ref())
            .map_err(|e| Error::Config(format!("{}: {e}", private_key.as_ref().display())))?;
        let mut config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::Config(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| Error::Config(format!("certificate and key: {e}")))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(self.tls(Arc::new(config)))
    }
}
