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
use crate::transport::{Encoded, Protocol};

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
            if conn.stream.is_none() && self.refuses_while_down(key) {
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
            let outbound = conn.has(flag::OUTBOUND);
            let out = LazyQueue {
                queue: &mut conn.queue,
                pool: &self.pool,
                track: outbound,
            };
            if conn.layer.ping(out) {
                self.mark_dirty(key, conn);
                return;
            }
        }
        // A full queue just means the peer will be kicked instead.
        let _ = self.send(to, ping_id, 0, Payload::Slice(&[]));
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
