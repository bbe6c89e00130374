//! The server's TLS settings, and the probe that tells sessions the SNI.

use std::cell::Cell;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert, UnbufferedServerConnection};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::TlsSession;
use crate::error::CloseReason;

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
    pub(super) fn new(config: Arc<ServerConfig>) -> Self {
        let mut config = Arc::unwrap_or_clone(config);
        config.max_early_data_size = 0;
        config.cert_resolver = Arc::new(SniProbe(config.cert_resolver.clone()));
        TlsAcceptor {
            config: Arc::new(config),
        }
    }

    pub(crate) fn session(&self) -> std::result::Result<TlsSession, CloseReason> {
        UnbufferedServerConnection::new(self.config.clone())
            .map(|conn| TlsSession {
                conn,
                incoming: Vec::new(),
                outgoing: Vec::new(),
                sent: 0,
                sni: None,
                notified: false,
                failed: false,
            })
            .map_err(|e| CloseReason::TlsHandshake(e.to_string()))
    }
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
