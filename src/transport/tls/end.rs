//! Our end of a TLS connection, and the loop that answers rustls' states.
//!
//! rustls has one unbuffered connection type per side, and spells
//! `process_tls_records` once for each side's connection data. [`Side`]
//! names that one call, so [`drive`] is written once and compiled once per
//! side: the server's path is what it was before there were clients, with
//! no dynamic dispatch per record. [`End`] holds either connection; a
//! session chooses between them once per batch of input, not per record.

use bytes::BytesMut;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, UnbufferedStatus, WriteTraffic};
use rustls::CommonState;

use super::room::{append, encode_room, encrypt_room};
use super::{seal_batch, Received};
use crate::buf::queue::WriteQueue;

/// rustls' connection for our end of the handshake.
pub(super) enum End {
    /// An accepted connection. `sni` is the client's SNI, noted from the
    /// ClientHello until the handshake completes (then it moves into
    /// [`TlsInfo`](super::TlsInfo)).
    Server {
        conn: UnbufferedServerConnection,
        sni: Option<Box<str>>,
    },
    /// A dialed connection.
    Client(UnbufferedClientConnection),
}

impl End {
    /// What both sides share: handshake progress, version, ALPN.
    pub(super) fn state(&self) -> &CommonState {
        match self {
            End::Server { conn, .. } => conn,
            End::Client(conn) => conn,
        }
    }

    pub(super) fn is_handshaking(&self) -> bool {
        self.state().is_handshaking()
    }

    /// [`drive`] this end's connection.
    pub(super) fn drive(
        &mut self,
        outgoing: &mut Vec<u8>,
        buf: &mut [u8],
        out: &mut BytesMut,
        received: &mut Received,
        on_write: &mut OnWrite<'_>,
    ) -> Result<usize, rustls::Error> {
        match self {
            End::Server { conn, .. } => drive(conn, outgoing, buf, out, received, on_write),
            End::Client(conn) => drive(conn, outgoing, buf, out, received, on_write),
        }
    }
}

/// The one rustls call each side spells for itself.
pub(super) trait Side {
    /// The side's connection data (`ServerConnectionData`, ...).
    type Data;

    /// `process_tls_records` over `buf`.
    fn process<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data>;

    /// Whether rustls holds records to hand out (an alert after an error).
    fn wants_write(&self) -> bool;
}

impl Side for UnbufferedServerConnection {
    type Data = ServerConnectionData;

    fn process<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(buf)
    }

    fn wants_write(&self) -> bool {
        CommonState::wants_write(self)
    }
}

impl Side for UnbufferedClientConnection {
    type Data = ClientConnectionData;

    fn process<'c, 'i>(&'c mut self, buf: &'i mut [u8]) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(buf)
    }

    fn wants_write(&self) -> bool {
        CommonState::wants_write(self)
    }
}

/// What to do when rustls offers to take application data (its
/// `WriteTraffic` state: the handshake is over and nothing else is due).
pub(super) enum OnWrite<'q> {
    /// Nothing (reading, or starting a handshake).
    Nothing,
    /// Encrypt the next batch of this queue.
    Seal(&'q mut WriteQueue),
    /// Queue close_notify.
    CloseNotify,
}

impl OnWrite<'_> {
    fn write<D>(
        &mut self,
        traffic: &mut WriteTraffic<'_, D>,
        outgoing: &mut Vec<u8>,
    ) -> Result<(), rustls::Error> {
        match self {
            OnWrite::Nothing => Ok(()),
            OnWrite::Seal(queue) => seal_batch(queue, traffic, outgoing),
            OnWrite::CloseNotify => append(
                outgoing,
                64,
                |b| traffic.queue_close_notify(b),
                encrypt_room,
            )
            .map_err(|e| rustls::Error::General(e.to_string())),
        }
    }
}

/// Run rustls over `buf` until it rests: it needs more bytes
/// (`BlockedHandshake`), has nothing to do (`WriteTraffic`, where
/// `on_write` may encrypt into `outgoing`), or both sides have closed.
/// Plaintext goes to `out`; handshake records to `outgoing`, where the
/// flush writes them in order (so they count as transmitted at once).
/// Returns how many bytes at the front of `buf` rustls is done with; the
/// rest must be passed again, unchanged, with more appended.
///
/// After an error rustls may have an alert to send: it goes to `outgoing`
/// too.
fn drive<C: Side>(
    conn: &mut C,
    outgoing: &mut Vec<u8>,
    buf: &mut [u8],
    out: &mut BytesMut,
    received: &mut Received,
    on_write: &mut OnWrite<'_>,
) -> Result<usize, rustls::Error> {
    let mut used = 0;
    loop {
        let UnbufferedStatus { mut discard, state } = conn.process(&mut buf[used..]);
        let state = match state {
            Ok(state) => state,
            Err(e) => {
                take_alert(conn, outgoing);
                return Err(e);
            }
        };
        let rests = match state {
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    let record = record?;
                    discard += record.discard;
                    out.extend_from_slice(record.payload);
                }
                false
            }
            ConnectionState::EncodeTlsData(mut data) => {
                append(outgoing, 0, |b| data.encode(b), encode_room)
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
                false
            }
            ConnectionState::TransmitTlsData(data) => {
                data.done();
                false
            }
            ConnectionState::PeerClosed => {
                received.peer_closed = true;
                false
            }
            // Both sides said close_notify (the peer's came as
            // `PeerClosed` first).
            ConnectionState::Closed | ConnectionState::BlockedHandshake => true,
            ConnectionState::WriteTraffic(mut traffic) => {
                on_write.write(&mut traffic, outgoing)?;
                true
            }
            // Not reached: a server never invites early data
            // (`TlsAcceptor::new`), and a client gets none. Were it to
            // come, it is refused rather than dropped or replayed.
            ConnectionState::ReadEarlyData(_) => {
                return Err(rustls::Error::General("early data is not accepted".into()));
            }
            other => {
                return Err(rustls::Error::General(format!(
                    "unexpected TLS state {other:?}"
                )));
            }
        };
        used += discard;
        if rests {
            return Ok(used);
        }
    }
}

/// After rustls failed: move the alert it queued, if any, to `outgoing`,
/// so the peer learns why. rustls hands out what it queued before it looks
/// at any input; it is not asked for more, which would deframe the bad
/// bytes again.
fn take_alert<C: Side>(conn: &mut C, outgoing: &mut Vec<u8>) {
    while conn.wants_write() {
        let UnbufferedStatus { state, .. } = conn.process(&mut []);
        let Ok(ConnectionState::EncodeTlsData(mut data)) = state else {
            return;
        };
        if append(outgoing, 0, |b| data.encode(b), encode_room).is_err() {
            return;
        }
    }
}
