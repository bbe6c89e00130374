//! The less common parts of the write path, kept out of `table.rs`: a
//! message encoded once for a set of connections, and what a packer's
//! refusal logs.

use super::ConnTable;
use crate::buf::LazyQueue;
use crate::buf::Payload;
use crate::config::SERVER_PROFILE;
use crate::conn::{flag, Conn};
use crate::error::{Error, PackError};
use crate::id::ConnId;
use crate::stats::{Counters, DatagramDrop};
use crate::transport::{Encoded, Protocol};

/// Why a datagram was not queued.
enum DatagramError {
    Pack(PackError),
    TooLarge(usize),
}

impl From<PackError> for DatagramError {
    fn from(e: PackError) -> Self {
        DatagramError::Pack(e)
    }
}

impl ConnTable {
    /// Queue an encoded message on each of `ids` (connections of this
    /// loop; each gets the frame for its protocol, shared). An id that is
    /// closed, stale or over its high-water mark misses it, counted in
    /// `send_errors`, as a broadcast's recipient does.
    /// A recipient of a dial profile has the message encoded by its own
    /// packer (`Encoded::message`), after the others.
    pub(crate) fn send_encoded(&self, ids: &[ConnId], encoded: &Encoded) {
        let mut own_packer = Vec::new();
        let mut slab = self.conns.borrow_mut();
        for to in ids {
            let Some((key, conn)) = self.open_conn(&mut slab, *to) else {
                self.send_error(Error::Closed);
                continue;
            };
            let protocol = conn.layer.protocol();
            if conn.profile != SERVER_PROFILE || matches!(protocol, Protocol::WsClient { .. }) {
                own_packer.push(*to);
                continue;
            }
            if !conn.is_connected() && self.refuses_while_down(key) {
                self.send_error(Error::Disconnected);
                continue;
            }
            match encoded.get(protocol) {
                Some(frame) => self.push_shared(key, conn, frame),
                None => {
                    self.send_error(Error::Closed);
                }
            }
        }
        drop(slab);
        for to in own_packer {
            match encoded.message() {
                // `send` counts its own errors.
                Some((id, seq, body)) => {
                    let _ = self.send(to, *id, *seq, Payload::Shared(body.clone()));
                }
                None => {
                    self.send_error(Error::Closed);
                }
            }
        }
    }

    /// Heartbeat ping: the layer's own (WebSocket ping frame) or a packer
    /// message with `ping_id` and an empty body; with `body`, always a
    /// message `ping_id` with that body.
    pub(crate) fn ping(
        &self,
        key: usize,
        generation: u32,
        ping_id: u32,
        body: Option<&bytes::Bytes>,
    ) {
        let to = self.id(key, generation);
        if let Some(body) = body {
            let _ = self.send(to, ping_id, 0, Payload::Shared(body.clone()));
            return;
        }
        {
            let mut slab = self.conns.borrow_mut();
            let Some((key, conn)) = self.open_conn(&mut slab, to) else {
                return;
            };
            let track = conn.tracks_frames();
            let out = LazyQueue {
                queue: &mut conn.queue,
                pool: &self.pool,
                track,
            };
            if conn.layer.ping(out) {
                self.mark_dirty(key, conn);
                return;
            }
        }
        // A full queue just means the peer will be kicked instead.
        let _ = self.send(to, ping_id, 0, Payload::Slice(&[]));
    }

    /// Queue one message on a UDP session as one frame, its datagram: the
    /// send fails if the frame would be longer than `max_datagram`.
    pub(super) fn send_datagram(
        &self,
        key: usize,
        conn: &mut Conn,
        id: u32,
        seq: u32,
        body: &[u8],
    ) -> Result<(), Error> {
        let speaks = (conn.profile, conn.layer.protocol());
        let max = self.max_datagram;
        let mut queue = LazyQueue {
            queue: &mut conn.queue,
            pool: &self.pool,
            track: true,
        };
        let encoded = queue.get().encode_with(|out| {
            let before = out.len();
            self.wire().encode(speaks, id, seq, body, out)?;
            match out.len() - before {
                len if len > max => Err(DatagramError::TooLarge(len)),
                _ => Ok(()),
            }
        });
        match encoded {
            Ok(()) => {
                Counters::bump(&self.counters().messages_out, 1);
                conn.traffic.queued();
                self.mark_dirty(key, conn);
                Ok(())
            }
            Err(e) => {
                queue.release_if_empty();
                Err(match e {
                    DatagramError::TooLarge(len) => self.datagram_too_large(len),
                    DatagramError::Pack(e) => {
                        self.log_refusal(key, conn, id, &e);
                        self.send_error(Error::Pack(e))
                    }
                })
            }
        }
    }

    /// The peer of UDP session `id` is validated (by the application).
    pub(crate) fn validate_udp_peer(&self, id: ConnId) {
        let mut slab = self.conns.borrow_mut();
        if let Some((_, conn)) = self.lookup(&mut slab, id) {
            if let Some(peer) = conn.layer.udp_peer_mut() {
                peer.validate();
            }
        }
    }

    /// A frame of `len` bytes cannot go in one datagram: counted as a
    /// failed send and as a dropped datagram.
    #[cold]
    pub(super) fn datagram_too_large(&self, len: usize) -> Error {
        Counters::add(
            &self.counters().datagram_drops[DatagramDrop::TooLarge as usize],
            1,
        );
        self.send_error(Error::DatagramTooLarge {
            len,
            max: self.max_datagram,
        })
    }

    /// Something logged once per connection happened to `id` (`warned`:
    /// `flag::SEND_WARNED`, `flag::BODY_WARNED`): true the first time (the
    /// caller logs it at warn), false after.
    pub(crate) fn first_warning(&self, id: ConnId, warned: u16) -> bool {
        let mut slab = self.conns.borrow_mut();
        let Some((_, conn)) = self.lookup(&mut slab, id) else {
            return false;
        };
        flag::first(&mut conn.flags, warned)
    }

    /// The packer refused message `msg_id` for `conn`: warn the first time
    /// per connection (a bug or a limit to raise, and the caller may not
    /// look at the error: a cross-thread send cannot return it), then
    /// debug, so a handler that hits the limit on every request does not
    /// flood the log. Every refusal is counted in `Stats::send_errors`.
    #[cold]
    pub(super) fn log_refusal(&self, key: usize, conn: &mut Conn, msg_id: u32, e: &PackError) {
        let (id, peer) = (self.id_of(key, conn), conn.peer);
        if flag::first(&mut conn.flags, flag::SEND_WARNED) {
            log::warn!(
                "conn {id} ({peer}): message {msg_id} not sent: {e} \
                 (further refusals on this connection are logged at debug)"
            );
        } else {
            log::debug!("conn {id} ({peer}): message {msg_id} not sent: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_refusal_per_connection_is_a_warning() {
        let mut a = flag::DIRTY;
        let mut b = 0;
        assert!(flag::first(&mut a, flag::SEND_WARNED));
        assert!(!flag::first(&mut a, flag::SEND_WARNED));
        assert!(!flag::first(&mut a, flag::SEND_WARNED));
        assert_eq!(a, flag::DIRTY | flag::SEND_WARNED, "other flags kept");
        assert!(
            flag::first(&mut b, flag::SEND_WARNED),
            "each connection warns once"
        );
    }
}
