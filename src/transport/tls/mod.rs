//! TLS with rustls, sans-I/O: the reactor reads ciphertext into its own
//! buffer and hands it here; we hand back plaintext, and encrypt queued
//! plaintext into records the reactor writes. The only module that names
//! rustls: the session is here; our end of it and the loop over rustls'
//! states (`end`), the acceptor (server settings, loading PEM files, the
//! SNI probe), the connector (a dialed connection's client settings) and
//! the blocking client's stream are in submodules.
//!
//! rustls' unbuffered API (`UnbufferedServerConnection` for accepted
//! connections, `UnbufferedClientConnection` for dialed ones) is driven
//! here, so the ciphertext buffers are ours and an idle connection owns
//! none:
//!
//! - **In.** `process_tls_records` runs over the bytes a read just put in
//!   the loop's scratch buffer and decrypts them there, in place; each
//!   [`ConnectionState`] is answered (plaintext to the caller, handshake
//!   records and alerts to `outgoing`) until rustls rests: it needs more
//!   bytes, has nothing to do, or is closed. What rustls leaves unconsumed
//!   (a record cut off by the end of the read, or the fragments of a
//!   handshake message it reassembles in place) is copied to the session's
//!   `incoming` buffer and completed from the next read, copying only the
//!   missing bytes of the record; the rest of that read is again decrypted
//!   in place.
//! - **Out.** `outgoing` holds records not yet written. Plaintext is
//!   encrypted into it only while it is empty and the handshake is over,
//!   at most [`TLS_BATCH`] per round, so what waits here stays within one
//!   batch and the write queue's high-water mark keeps its meaning.
//!
//! Both buffers are freed as soon as they are empty: between records a
//! connection keeps only rustls' keys and state.

use std::io::{self, Write};

use bytes::BytesMut;
use rustls::unbuffered::WriteTraffic;

use super::Incoming;
use crate::buf::queue::WriteQueue;
use crate::buf::{grow_toward, write_until_blocked, Flushed};
use crate::error::CloseReason;

/// Most plaintext bytes encrypted per flush round.
pub(crate) const TLS_BATCH: usize = 64 << 10;

/// A TLS record header: content type, version, length.
const HEADER: usize = 5;

/// Most bytes `incoming` may hold: one handshake message of the most
/// rustls accepts (64 KiB, its own limit in the buffered API) plus one
/// whole record of the largest size TLS allows (16 KiB of payload, 2 KiB
/// of expansion, the header). rustls' unbuffered API joins a fragmented
/// handshake message in the caller's buffer and leaves the limit to the
/// caller: without it, a peer sending a large message in one-byte
/// records would make a connection hold several times the message.
const MAX_INCOMING: usize = 0xffff + (16 << 10) + 2048 + HEADER;

/// Plaintext bytes per record (rustls' default fragment size).
const RECORD_PAYLOAD: usize = 16 << 10;

/// Room reserved per record beyond its plaintext: header, TLS 1.2 explicit
/// nonce or TLS 1.3 content type, AEAD tag, with some to spare (a smaller
/// `max_fragment_size` or a queued KeyUpdate just costs one retry).
const RECORD_OVERHEAD: usize = 64;

/// What the TLS handshake settled, stored as connection data once the
/// handshake completes: read it with `session.data().get::<TlsInfo>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// The ALPN protocol agreed on, if any.
    pub alpn: Option<Vec<u8>>,
    /// The server name the client asked for (SNI), if it sent one. Always
    /// `None` on a dialed connection: there the server name is the one
    /// given to [`Dial::tls`](crate::Dial::tls).
    pub sni: Option<String>,
    /// The TLS version, e.g. "TLSv1_3".
    pub version: String,
}

/// One connection's TLS state, server or client.
pub(crate) struct TlsSession {
    end: End,
    /// Ciphertext rustls has not consumed yet, kept in place between reads:
    /// a partial record, or the fragments of a handshake message. Empty,
    /// with no allocation, between records.
    incoming: Vec<u8>,
    /// Records to write: `outgoing[sent..]`. Freed once all are written.
    outgoing: Vec<u8>,
    sent: usize,
    /// close_notify queued (or given up on: the handshake never finished).
    notified: bool,
    /// The peer sent close_notify.
    peer_notified: bool,
    /// rustls reported an error: nothing more is encrypted or decrypted;
    /// only its alert is left to write.
    failed: bool,
}

/// What one batch of ciphertext produced, besides plaintext.
#[derive(Debug, Default)]
pub(super) struct Received {
    /// The peer sent close_notify.
    pub(super) peer_closed: bool,
    /// The handshake completed during this batch.
    handshake_done: Option<TlsInfo>,
}

impl TlsSession {
    fn new(end: End) -> TlsSession {
        TlsSession {
            end,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
            notified: false,
            peer_notified: false,
            failed: false,
        }
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        self.end.is_handshaking()
    }

    /// Decrypt `input` (ciphertext just read; decrypted in place, so its
    /// contents are garbage afterwards), appending plaintext to `out`.
    /// Handshake records and alerts to send wait in the session
    /// ([`wants_write`](Self::wants_write)).
    pub(crate) fn receive(
        &mut self,
        input: &mut [u8],
        out: &mut BytesMut,
    ) -> std::result::Result<Incoming, CloseReason> {
        let mut received = Received::default();
        if self.failed {
            return Ok(Incoming::default());
        }
        let was_handshaking = self.end.is_handshaking();
        let probe_sni = was_handshaking && matches!(self.end, End::Server { .. });
        if probe_sni {
            SEEN_SNI.set(None);
        }
        let result = self.take_in(input, out, &mut received);
        if let (true, End::Server { sni, .. }) = (probe_sni, &mut self.end) {
            if let Some(seen) = SEEN_SNI.take() {
                *sni = Some(seen);
            }
        }
        if received.peer_closed || self.incoming.is_empty() {
            // Nothing after close_notify is read; an empty buffer is freed.
            self.incoming = Vec::new();
        }
        if let Err(e) = result {
            self.failed = true;
            self.incoming = Vec::new();
            return Err(self.failure(e.to_string()));
        }
        if was_handshaking && !self.end.is_handshaking() {
            received.handshake_done = Some(self.info());
        }
        // TLS 1.3 without session tickets finishes with nothing to send:
        // still flush, or what was queued during the handshake would wait.
        Ok(Incoming {
            ws_response: None,
            peer_closed: received.peer_closed,
            wants_write: received.handshake_done.is_some() || self.wants_write(),
            tls_info: received.handshake_done,
            upgrade: None,
        })
    }

    /// Feed `input` to rustls: first into `incoming` if it holds the start
    /// of a record, copying only what completes it; the rest in place.
    fn take_in(
        &mut self,
        mut input: &mut [u8],
        out: &mut BytesMut,
        received: &mut Received,
    ) -> std::result::Result<(), rustls::Error> {
        while !self.incoming.is_empty() && !input.is_empty() && !received.peer_closed {
            let missing = self.missing();
            let take = missing.min(input.len());
            let (head, rest) = std::mem::take(&mut input).split_at_mut(take);
            input = rest;
            grow_toward(&mut self.incoming, take, missing as u64);
            self.incoming.extend_from_slice(head);
            let used = self.end.drive(
                &mut self.outgoing,
                &mut self.incoming,
                out,
                received,
                &mut OnWrite::Nothing,
            )?;
            self.incoming.drain(..used);
            Self::check_incoming(&self.incoming)?;
        }
        if !self.incoming.is_empty() || input.is_empty() || received.peer_closed {
            return Ok(());
        }
        // The record it held is done: the next partial one gets a buffer
        // of its own size, not this one's.
        self.incoming = Vec::new();
        let used = self.end.drive(
            &mut self.outgoing,
            input,
            out,
            received,
            &mut OnWrite::Nothing,
        )?;
        if !received.peer_closed {
            let rest = &input[used..];
            Self::check_incoming(rest)?;
            self.incoming.extend_from_slice(rest);
        }
        Ok(())
    }

    /// Refuse to keep more than [`MAX_INCOMING`] bytes of unfinished records
    /// between reads (while rustls works on a read, `incoming` may briefly
    /// hold that read too).
    fn check_incoming(kept: &[u8]) -> std::result::Result<(), rustls::Error> {
        if kept.len() > MAX_INCOMING {
            return Err(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::MessageTooLarge,
            ));
        }
        Ok(())
    }

    /// How many more bytes `incoming` (not empty) needs before rustls can
    /// take a step: the rest of the record it starts with; or, when it
    /// already holds a whole record (fragments of a handshake message that
    /// rustls joins in place), all there is.
    fn missing(&self) -> usize {
        match self.incoming.get(3..HEADER) {
            Some(&[hi, lo]) => (HEADER + usize::from(u16::from_be_bytes([hi, lo])))
                .checked_sub(self.incoming.len())
                .filter(|&n| n > 0)
                .unwrap_or(usize::MAX),
            _ => HEADER - self.incoming.len(),
        }
    }

    /// What the handshake settled (when it just completed).
    fn info(&mut self) -> TlsInfo {
        let state = self.end.state();
        let alpn = state.alpn_protocol().map(<[u8]>::to_vec);
        let version = state
            .protocol_version()
            .map_or_else(String::new, |v| format!("{v:?}"));
        let sni = match &mut self.end {
            End::Server { sni, .. } => sni.take().map(String::from),
            End::Client(_) => None,
        };
        TlsInfo { alpn, sni, version }
    }

    fn failure(&self, message: String) -> CloseReason {
        if self.end.is_handshaking() {
            CloseReason::TlsHandshake(message)
        } else {
            CloseReason::Tls(message)
        }
    }

    /// Records (handshake, data or alerts) wait to be written.
    pub(crate) fn wants_write(&self) -> bool {
        self.sent < self.outgoing.len()
    }

    /// A record (or a handshake message's fragments) is not complete yet.
    pub(crate) fn in_unit(&self) -> bool {
        !self.incoming.is_empty()
    }

    /// Bytes held for it: `incoming`'s allocation (none between records).
    pub(crate) fn held(&self) -> usize {
        self.incoming.capacity()
    }

    /// Take rustls to rest over what `incoming` holds (it holds no whole
    /// record: `receive` consumed them), doing `on_write` if rustls offers
    /// its `WriteTraffic` state.
    fn settle(&mut self, mut on_write: OnWrite<'_>) -> std::result::Result<(), rustls::Error> {
        let mut plain = BytesMut::new();
        let mut received = Received::default();
        let used = self.end.drive(
            &mut self.outgoing,
            &mut self.incoming,
            &mut plain,
            &mut received,
            &mut on_write,
        )?;
        self.incoming.drain(..used);
        if !plain.is_empty() {
            // `receive` always runs rustls to rest, so this cannot happen;
            // if it did, the plaintext would have nowhere to go.
            return Err(rustls::Error::General(
                "TLS records left unread after receive".into(),
            ));
        }
        Ok(())
    }

    /// Encrypt queued plaintext and write records to `w` until everything is
    /// written or `w` would block (`blocked`).
    pub(crate) fn flush(
        &mut self,
        mut queue: Option<&mut WriteQueue>,
        w: &mut dyn Write,
    ) -> io::Result<Flushed> {
        let result = write_until_blocked(w, |w| {
            if !self.wants_write() {
                self.outgoing.clear();
                self.sent = 0;
                let q = queue.as_deref_mut().filter(|q| !q.is_empty())?;
                if let Err(e) = self.seal(q) {
                    self.failed = true;
                    return Some(Err(io::Error::other(e)));
                }
                if !self.wants_write() {
                    return None;
                }
            }
            let written = w.write(&self.outgoing[self.sent..]);
            if let Ok(n) = written {
                self.sent += n;
            }
            Some(written)
        });
        if !self.wants_write() {
            self.outgoing = Vec::new();
            self.sent = 0;
        }
        result
    }

    /// Encrypt up to [`TLS_BATCH`] bytes of `queue` into `outgoing`: none
    /// while handshaking, after close_notify or after a failure.
    fn seal(&mut self, queue: &mut WriteQueue) -> std::result::Result<(), rustls::Error> {
        if self.end.is_handshaking() || self.notified || self.failed {
            return Ok(());
        }
        self.settle(OnWrite::Seal(queue))
    }
}

/// Encrypt up to [`TLS_BATCH`] bytes of `queue` into `outgoing`, in
/// records of at most [`RECORD_PAYLOAD`] bytes.
fn seal_batch<D>(
    queue: &mut WriteQueue,
    traffic: &mut WriteTraffic<'_, D>,
    outgoing: &mut Vec<u8>,
) -> std::result::Result<(), rustls::Error> {
    let mut failed = None;
    queue.drain_into(TLS_BATCH, |chunk| {
        let estimate = chunk.len() + (chunk.len() / RECORD_PAYLOAD + 1) * RECORD_OVERHEAD;
        match append(
            outgoing,
            estimate,
            |b| traffic.encrypt(chunk, b),
            encrypt_room,
        ) {
            Ok(()) => chunk.len(),
            Err(e) => {
                failed = Some(rustls::Error::General(e.to_string()));
                0
            }
        }
    });
    failed.map_or(Ok(()), Err)
}

mod acceptor;
mod client;
mod connector;
mod end;
mod goodbye;
mod room;

pub(crate) use acceptor::TlsAcceptor;
use acceptor::SEEN_SNI;
pub(crate) use client::ClientTls;
pub(crate) use connector::TlsConnector;
use end::{End, OnWrite};
use room::{append, encrypt_room};
/// The rustls types the public API takes (named here, so that only this
/// module names rustls).
pub(crate) use rustls::pki_types::ServerName;
pub(crate) use rustls::{ClientConfig, ServerConfig};

#[cfg(test)]
mod tests;
