//! Ending a TLS session: our close_notify, and the answer to the peer's.

use super::{OnWrite, TlsSession};

impl TlsSession {
    /// close_notify was queued (or given up on): nothing more may be sent.
    pub(crate) fn said_goodbye(&self) -> bool {
        self.notified
    }

    /// The peer sent close_notify: whether our own close_notify is owed
    /// once what is queued is written.
    pub(crate) fn owes_goodbye(&self) -> bool {
        self.peer_notified && !self.notified
    }

    /// The peer sent close_notify; answer it. TLS 1.3 closes one direction
    /// only (RFC 8446 6.1): what is queued (replies to what came before)
    /// still goes, then our close_notify. TLS 1.2 (RFC 5246 7.2.1): our
    /// close_notify now, and pending writes are dropped; returns true when
    /// the caller must drop them.
    pub(crate) fn answer_peer_close(&mut self) -> bool {
        self.peer_notified = true;
        if self.end.state().protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
            return false;
        }
        self.close_notify();
        true
    }

    /// Queue close_notify (once). Only once the handshake is over: before,
    /// rustls has no way to send it (and the peer learns nothing from it
    /// that the end of the stream does not say).
    pub(crate) fn close_notify(&mut self) {
        if self.notified || self.failed {
            return;
        }
        self.notified = true;
        if self.end.is_handshaking() {
            return;
        }
        if self.settle(OnWrite::CloseNotify).is_err() {
            self.failed = true;
        }
    }
}
