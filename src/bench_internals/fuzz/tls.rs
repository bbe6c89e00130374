//! The TLS layer's input path: an accepted connection's session (rustls'
//! unbuffered server connection) fed ciphertext as reads bring it, its
//! records written out between reads as a flush would.

use std::fmt;
use std::sync::Arc;

use bytes::BytesMut;

use crate::error::CloseReason;
use crate::transport::tls::{ServerConfig, TlsAcceptor, TlsSession};

/// One accepted connection's TLS session.
pub struct TlsServer {
    session: TlsSession,
    plain: BytesMut,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer").finish_non_exhaustive()
    }
}

impl TlsServer {
    /// A session as a server serving `config` accepts it (`Builder::tls`).
    ///
    /// # Errors
    ///
    /// `TlsHandshake` if rustls refuses to start a session.
    pub fn new(config: Arc<ServerConfig>) -> Result<Self, CloseReason> {
        Ok(TlsServer {
            session: TlsAcceptor::new(config).session()?,
            plain: BytesMut::new(),
        })
    }

    /// Feed the ciphertext of one read (decrypted in place, as the loop
    /// does in its scratch buffer), then write out what the session has
    /// to send (handshake records, alerts). Returns those bytes.
    ///
    /// # Errors
    ///
    /// The close reason (its alert is in what a later feed returns).
    pub fn feed(&mut self, input: &[u8]) -> Result<Vec<u8>, CloseReason> {
        let mut scratch = input.to_vec();
        let received = self.session.receive(&mut scratch, &mut self.plain);
        let mut out = Vec::new();
        if self.session.wants_write() {
            // Writing to a vector never blocks nor fails.
            let _ = self.session.flush(None, &mut out);
        }
        received.map(|_| out)
    }

    /// Plaintext received so far.
    pub fn plaintext(&self) -> &[u8] {
        &self.plain
    }

    /// A record (or a handshake message) is incomplete; the bytes held for it.
    pub fn held(&self) -> usize {
        self.session.held()
    }
}
