//! A dialed connection's TLS settings, and the session of each connect
//! attempt.

use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use super::{End, OnWrite, TlsSession};
use crate::error::CloseReason;

/// How a dialed connection speaks TLS: the client settings and the name
/// the server's certificate must carry (also sent as SNI when it is a DNS
/// name).
#[derive(Debug, Clone)]
pub(crate) struct TlsConnector {
    pub(super) config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsConnector {
    /// Dial with `config`, with early data turned off: the loop writes
    /// only after the handshake (as it does for accepted connections), so
    /// offering 0-RTT would promise data that never comes.
    pub(crate) fn new(config: Arc<ClientConfig>, name: ServerName<'static>) -> Self {
        let config = match config.enable_early_data {
            true => {
                let mut config = Arc::unwrap_or_clone(config);
                config.enable_early_data = false;
                Arc::new(config)
            }
            false => config,
        };
        TlsConnector { config, name }
    }

    /// Whether rustls accepts these settings (it checks some only when a
    /// connection is made, e.g. `max_fragment_size`), so that a dial with
    /// settings that can never work is refused at once.
    ///
    /// # Errors
    ///
    /// rustls' complaint.
    pub(crate) fn check(&self) -> Result<(), String> {
        UnbufferedClientConnection::new(self.config.clone(), self.name.clone())
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The session of one connect attempt, made when the TCP connect
    /// completes: the client speaks first, so its ClientHello is already
    /// waiting to be written.
    pub(crate) fn session(&self) -> Result<TlsSession, CloseReason> {
        let failed = |e: rustls::Error| CloseReason::TlsHandshake(e.to_string());
        let conn = UnbufferedClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(failed)?;
        let mut session = TlsSession::new(End::Client(conn));
        session.settle(OnWrite::Nothing).map_err(failed)?;
        Ok(session)
    }
}
