//! The `Builder` methods that turn TLS on (feature `tls`).

use std::path::Path;
use std::sync::Arc;

use super::Builder;
use crate::error::Result;
use crate::transport::tls::{ServerConfig, TlsAcceptor};

impl Builder {
    /// Serve TLS on every listener of this server with a rustls
    /// configuration (certificates, ALPN, client auth, versions: all set
    /// there). The negotiated ALPN protocol and SNI name are available as
    /// [`TlsInfo`](crate::TlsInfo) connection data once the handshake
    /// completes. TLS 1.3 early data (0-RTT) is not accepted, whatever
    /// `max_early_data_size` says: clients send after the handshake instead.
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
    /// server.join()?;
    /// # Ok::<(), netloom::Error>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: Arc<ServerConfig>) -> Self {
        self.tls = Some(TlsAcceptor::new(config));
        self
    }

    /// Serve TLS with a certificate chain and private key read from PEM
    /// files, TLS 1.2 and 1.3, no client authentication; ALPN as given
    /// (may be empty).
    ///
    /// # Errors
    ///
    /// [`Error::Config`](crate::Error::Config) if a file cannot be read or
    /// parsed, or the key does not match the certificate.
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls_pem_files(
        mut self,
        cert_chain: impl AsRef<Path>,
        private_key: impl AsRef<Path>,
        alpn: &[&[u8]],
    ) -> Result<Self> {
        let acceptor =
            TlsAcceptor::from_pem_files(cert_chain.as_ref(), private_key.as_ref(), alpn)?;
        self.tls = Some(acceptor);
        Ok(self)
    }
}
