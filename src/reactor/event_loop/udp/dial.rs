//! A UDP dial's socket: made on its loop when the dial starts (there is
//! no connect to wait for), and the dial opens at once.

use std::net::SocketAddr;

use super::EventLoop;
use crate::error::CloseReason;

impl EventLoop {
    /// Make the socket of the UDP dial at `key` (its peer `addr`), add it
    /// to the loop's UDP sockets with the session as its one peer, and
    /// open the dial (`on_open`, the heartbeat); a socket that cannot be
    /// made fails the dial (`ConnectFailed`).
    pub(in crate::reactor::event_loop) fn attach_udp(&mut self, key: usize, addr: SocketAddr) {
        let core = self.core.clone();
        let table = &core.table;
        let Some((generation, profile)) = (table.conns.borrow())
            .get(key)
            .map(|c| (c.generation, c.profile))
        else {
            return;
        };
        let options = core.runtime.config.socket_of(profile);
        let registry = self.poll.registry();
        // The peer as the socket names it (a dial to 0.0.0.0 is connected
        // to a local address): the one its datagrams come from.
        let attached = crate::sys::udp_dial(addr, &options).and_then(|socket| {
            let peer = socket.peer_addr()?;
            Ok((self.udp.add_dialed(socket, registry)?, peer))
        });
        let (i, addr) = match attached {
            Ok(attached) => attached,
            Err(e) => {
                return self.connect_failed(key, generation, CloseReason::ConnectFailed(e.into()))
            }
        };
        {
            let mut slab = table.conns.borrow_mut();
            let Some(conn) = slab.get_mut(key).filter(|c| c.generation == generation) else {
                return;
            };
            conn.peer = addr;
            conn.last_active = self.timers.now32();
            if let Some(udp) = conn.layer.udp_peer_mut() {
                udp.socket = i as u32;
            }
            self.udp.sockets[i].sessions.insert(addr, key);
            // What was sent before the socket was there.
            table.mark_dirty(key, conn);
        }
        self.opened(key, generation);
    }
}
