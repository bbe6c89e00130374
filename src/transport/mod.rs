//! Layers between the socket and the packer: raw bytes ⇄ plaintext, with no
//! socket inside (the reactor does every socket call). Plain TCP is the
//! identity; TLS lives in [`tls`] behind the `tls` feature. Every `cfg` for
//! optional layers is in this file.

#[cfg(feature = "tls")]
pub(crate) mod tls;

use std::io::{self, Write};

use bytes::BytesMut;

use crate::conn::write::WriteQueue;
use crate::context::TypeMap;
use crate::error::CloseReason;

/// What a connection's bytes pass through: nothing (plain TCP) or TLS.
#[derive(Default)]
pub(crate) struct Layer {
    #[cfg(feature = "tls")]
    tls: Option<Box<tls::TlsSession>>,
}

/// The server-wide layer settings.
#[derive(Clone, Default)]
pub(crate) struct LayerConfig {
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tls::TlsAcceptor>,
}

impl LayerConfig {
    /// The layer for a newly accepted connection.
    pub(crate) fn layer(&self) -> Result<Layer, CloseReason> {
        #[cfg(feature = "tls")]
        if let Some(acceptor) = &self.tls {
            return Ok(Layer {
                tls: Some(Box::new(acceptor.session()?)),
            });
        }
        Ok(Layer::default())
    }

    /// A handshake must finish before the connection counts as open.
    pub(crate) fn has_handshake(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            return true;
        }
        false
    }
}

/// What a batch of received bytes produced, besides plaintext.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    /// The peer closed its side at the layer level (TLS close_notify).
    pub(crate) peer_closed: bool,
    /// The connection needs a flush: the layer has output to write
    /// (handshake, alerts), or the handshake just finished and what was
    /// queued during it may go now.
    pub(crate) wants_write: bool,
}

impl Layer {
    /// Still handshaking (no application data flows yet).
    pub(crate) fn is_handshaking(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.is_handshaking();
        }
        false
    }

    /// Bytes just read from the socket: append the plaintext they carry to
    /// `out`. Layer details (ALPN, SNI) go into `data` once known.
    pub(crate) fn receive(
        &mut self,
        input: &[u8],
        out: &mut BytesMut,
        data: &mut TypeMap,
    ) -> Result<Incoming, CloseReason> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            let received = tls.receive(input, out)?;
            // TLS 1.3 without session tickets finishes with nothing to
            // send: still flush, or what on_open queued would wait.
            let done = received.handshake_done.is_some();
            if let Some(info) = received.handshake_done {
                data.insert(info);
            }
            return Ok(Incoming {
                peer_closed: received.peer_closed,
                wants_write: done || tls.wants_write(),
            });
        }
        let _ = data;
        out.extend_from_slice(input);
        Ok(Incoming::default())
    }

    /// The connection is closing by our choice: say goodbye at the layer
    /// level (TLS close_notify) after what is queued.
    pub(crate) fn close_notify(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            tls.close_notify();
        }
    }

    /// Something other than the write queue waits to be written.
    pub(crate) fn wants_write(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.wants_write();
        }
        false
    }

    /// Write the queue (through the layer) to `w` until done or `w` would
    /// block (`*blocked` set). Returns bytes written to `w`.
    pub(crate) fn flush(
        &mut self,
        queue: Option<&mut WriteQueue>,
        w: &mut dyn Write,
        blocked: &mut bool,
    ) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            return tls.flush(queue, w, blocked);
        }
        let Some(queue) = queue else {
            return Ok(0);
        };
        let mut written = 0;
        while !queue.is_empty() {
            match queue.write_to(w) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }
}
