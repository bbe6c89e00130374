//! The server's TLS settings, and the probe that tells sessions the SNI.

use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, UnbufferedServerConnection};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::{End, TlsSession};
use crate::error::{CloseReason, Error, Result};

/// The server's TLS settings, shared by all loops.
#[derive(Clone)]
pub(crate) struct TlsAcceptor {
    config: Arc<ServerConfig>,
}

impl TlsAcceptor {
    /// Serve with `config`, changed in two ways: early data is refused
    /// (`max_early_data_size = 0`: clients then send their first messages
    /// after the handshake, as usual), and the certificate resolver is
    /// wrapped in [`SniProbe`] so sessions learn the client's SNI.
    pub(crate) fn new(config: Arc<ServerConfig>) -> Self {
        let mut config = Arc::unwrap_or_clone(config);
        config.max_early_data_size = 0;
        config.cert_resolver = Arc::new(SniProbe(config.cert_resolver.clone()));
        TlsAcceptor {
            config: Arc::new(config),
        }
    }

    /// Serve a certificate chain and private key read from PEM files, TLS
    /// 1.2 and 1.3, no client authentication, ALPN as given (may be empty).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if a file cannot be read or parsed, or the key
    /// does not match the certificate.
    pub(crate) fn from_pem_files(
        cert_chain: &Path,
        private_key: &Path,
        alpn: &[&[u8]],
    ) -> Result<Self> {
        let certs = CertificateDer::pem_file_iter(cert_chain)
            .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| Error::Config(format!("{}: {e}", cert_chain.display())))?;
        let key = PrivateKeyDer::from_pem_file(private_key)
            .map_err(|e| Error::Config(format!("{}: {e}", private_key.display())))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| Error::Config(format!("certificate and key: {e}")))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::new(Arc::new(config)))
    }

    pub(crate) fn session(&self) -> std::result::Result<TlsSession, CloseReason> {
        UnbufferedServerConnection::new(self.config.clone())
            .map(|conn| TlsSession::new(End::Server { conn, sni: None }))
            .map_err(|e| CloseReason::TlsHandshake(e.to_string()))
    }
}

/// The crypto provider for configurations netloom builds itself: the
/// process default if the application installed one
/// (`CryptoProvider::install_default`), else rustls' default provider,
/// aws-lc-rs (post-quantum key exchange first). Named explicitly rather
/// than through `ServerConfig::builder()`, which panics when the crate
/// graph enables two providers and none was installed.
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

thread_local! {
    /// The SNI of the last ClientHello [`SniProbe`] saw on this thread.
    pub(super) static SEEN_SNI: Cell<Option<Box<str>>> = const { Cell::new(None) };
}

/// Notes the SNI of every ClientHello, then lets the configured resolver
/// choose the certificate.
///
/// rustls 0.23's unbuffered server connection has no `server_name()`. The
/// resolver, though, is asked for every ClientHello (full and resumed
/// handshakes alike), synchronously inside `process_tls_records`, on the
/// thread driving that session: [`TlsSession::receive`] reads the name
/// from [`SEEN_SNI`] right after.
#[derive(Debug)]
struct SniProbe(Arc<dyn ResolvesServerCert>);

impl ResolvesServerCert for SniProbe {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        SEEN_SNI.set(client_hello.server_name().map(Box::from));
        self.0.resolve(client_hello)
    }

    fn only_raw_public_keys(&self) -> bool {
        self.0.only_raw_public_keys()
    }
}
