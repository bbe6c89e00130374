//! A UDP session's way out: its write queue, a datagram per frame, after
//! the size and amplification checks; a socket whose send buffer is full
//! registers WRITABLE once for all its waiting sessions.

use std::io;

use mio::Interest;

use super::{drop_datagram, token};
use crate::buf::Flushed;
use crate::conn::{flag, Conn};
use crate::reactor::event_loop::EventLoop;
use crate::stats::{Counters, DatagramDrop};

/// What became of the front datagram of a session's queue.
enum Sent {
    Done(usize),
    Blocked,
    Dropped(DatagramDrop),
    Failed(io::Error),
}

impl EventLoop {
    /// Send what a session has queued, a datagram per frame, until done or
    /// the socket's send buffer is full (then the session waits for
    /// WRITABLE with what is left).
    pub(in crate::reactor::event_loop) fn udp_write_out(
        &mut self,
        key: usize,
        conn: &mut Conn,
    ) -> Flushed {
        let config = &self.core.runtime.config.udp;
        let counters = self.core.table.counters();
        let mut flushed = Flushed::default();
        // Already in its socket's waiting list (blocked before, not woken
        // since): listed once.
        let listed = conn.has(flag::WRITABLE);
        let Conn {
            queue,
            layer,
            peer,
            generation,
            ..
        } = conn;
        let (Some(queue), Some(udp)) = (queue.as_deref_mut(), layer.udp_peer_mut()) else {
            return flushed;
        };
        // A dial's session waits for its socket with what it has queued.
        let Some(socket) = self.udp.sockets.get_mut(udp.socket as usize) else {
            return flushed;
        };
        loop {
            let sent = queue.with_front_frame(&mut self.udp.out, |datagram| {
                if datagram.len() > config.max_datagram {
                    return Sent::Dropped(DatagramDrop::TooLarge);
                }
                if !udp.allows(datagram.len(), config.amplification) {
                    return Sent::Dropped(DatagramDrop::Unvalidated);
                }
                match socket.socket.send_to(datagram, *peer) {
                    Ok(n) => Sent::Done(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::Blocked,
                    Err(e) => Sent::Failed(e),
                }
            });
            match sent {
                None => break,
                Some(Sent::Done(n)) => {
                    udp.sent(queue.pop_frame());
                    flushed.written += n;
                    Counters::bump(&counters.datagrams_out, 1);
                }
                Some(Sent::Blocked) => {
                    flushed.blocked = true;
                    if !listed {
                        socket.blocked.push((key, *generation));
                    }
                    if !socket.writable {
                        let interest = Interest::READABLE | Interest::WRITABLE;
                        let i = udp.socket as usize;
                        match self.poll.registry().reregister(
                            &mut socket.socket,
                            token(i),
                            interest,
                        ) {
                            Ok(()) => socket.writable = true,
                            Err(e) => log::warn!("udp {}: reregister failed: {e}", socket.local),
                        }
                    }
                    break;
                }
                Some(Sent::Failed(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Some(Sent::Dropped(cause)) => {
                    queue.pop_frame();
                    drop_datagram(counters, cause);
                }
                Some(Sent::Failed(e)) => {
                    queue.pop_frame();
                    drop_datagram(counters, DatagramDrop::SendFailed);
                    log::debug!("udp {peer}: datagram not sent: {e}");
                }
            }
        }
        flushed
    }

    /// Socket `i` can send again: its waiting sessions go on.
    pub(super) fn udp_writable(&mut self, i: usize) {
        let Some(socket) = self.udp.sockets.get_mut(i) else {
            return;
        };
        if socket.writable {
            let registry = self.poll.registry();
            match registry.reregister(&mut socket.socket, token(i), Interest::READABLE) {
                Ok(()) => socket.writable = false,
                Err(e) => log::warn!("udp {}: reregister failed: {e}", socket.local),
            }
        }
        let blocked = std::mem::take(&mut socket.blocked);
        let table = &self.core.table;
        for (key, generation) in blocked {
            let mut slab = table.conns.borrow_mut();
            if let Some(conn) = slab.get_mut(key).filter(|c| c.generation == generation) {
                conn.unset(flag::WRITABLE);
                table.mark_dirty(key, conn);
            }
        }
    }
}
