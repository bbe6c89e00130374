//! A loop's UDP sockets: datagrams in (each peer address a virtual
//! session, a connection in the loop's table like any other), datagrams out
//! (a session's write queue, one frame per datagram), and the wait for
//! WRITABLE when the socket's send buffer is full.
//!
//! With `SO_REUSEPORT` (Linux) every loop has its own socket on each UDP
//! address and the kernel spreads peers over them by their address: a peer
//! always lands on the same loop, so its session lives there. Elsewhere
//! loop 0 has the one socket (`sys::udp_sockets`).

mod dial;
mod send;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::EventLoop;
use crate::codec::reader::Batch;
use crate::config::SERVER_PROFILE;
use crate::conn::{flag, Conn};
use crate::stats::{Counters, DatagramDrop};
use crate::transport::udp::{decode_datagram, UdpPeer, UdpSession};
use crate::transport::Layer;

/// Most UDP sockets one loop has: one per `bind_udp` address, and one per
/// UDP dial (`Dial::udp`) open on it.
pub(crate) const MAX_UDP_SOCKETS: usize = 1 << 20;

/// The token of a loop's UDP socket `i`: counted down from below the
/// waker's, far above any connection's slot.
fn token(i: usize) -> Token {
    Token(usize::MAX - 1 - i)
}

/// The UDP socket a token names, if it names one.
pub(super) fn socket_of(token: Token) -> Option<usize> {
    let i = (usize::MAX - 1).checked_sub(token.0)?;
    (i < MAX_UDP_SOCKETS).then_some(i)
}

/// Datagrams read from one socket per turn at most (then the loop serves
/// its other sockets and connections, and reads on next turn).
const DATAGRAM_BUDGET: usize = 256;

/// One UDP socket of a loop and the sessions of the peers it serves.
struct Socket {
    socket: UdpSocket,
    local: SocketAddr,
    /// Peer address → slot of its session in the loop's table.
    sessions: HashMap<SocketAddr, usize>,
    /// Sessions whose datagrams wait for the socket to be writable.
    blocked: Vec<(usize, u32)>,
    /// Registered for WRITABLE.
    writable: bool,
    /// Its read budget ran out: read on next turn.
    pending: bool,
    /// A UDP dial's own socket (connected to its one peer): it opens no
    /// session, and goes with its session.
    dialed: bool,
}

impl Socket {
    fn new(socket: UdpSocket, dialed: bool) -> io::Result<Socket> {
        Ok(Socket {
            local: socket.local_addr()?,
            socket,
            sessions: HashMap::new(),
            blocked: Vec::new(),
            writable: false,
            pending: false,
            dialed,
        })
    }
}

/// A loop's UDP sockets and the buffers they share.
#[derive(Default)]
pub(crate) struct UdpSockets {
    /// By index: a socket's token and its sessions' `UdpPeer::socket`.
    sockets: Slab<Socket>,
    /// One datagram received: `max_datagram + 1` bytes, so a longer one
    /// shows (it fills the buffer).
    scratch: Vec<u8>,
    /// A datagram to send that lies in several pieces of a queue.
    out: Vec<u8>,
    batch: Batch,
}

impl UdpSockets {
    /// Take the loop's sockets and register them for reading.
    pub(crate) fn new(
        sockets: Vec<UdpSocket>,
        registry: &Registry,
        max_datagram: usize,
    ) -> io::Result<Self> {
        let mut all = Slab::with_capacity(sockets.len());
        for mut socket in sockets {
            registry.register(&mut socket, token(all.vacant_key()), Interest::READABLE)?;
            all.insert(Socket::new(socket, false)?);
        }
        Ok(UdpSockets {
            sockets: all,
            scratch: vec![0; max_datagram + 1],
            ..UdpSockets::default()
        })
    }

    /// Add a UDP dial's socket, registered for reading; returns its index.
    fn add_dialed(&mut self, mut socket: UdpSocket, registry: &Registry) -> io::Result<usize> {
        let i = self.sockets.vacant_key();
        if i >= MAX_UDP_SOCKETS {
            return Err(io::Error::other("the loop has its most UDP sockets"));
        }
        registry.register(&mut socket, token(i), Interest::READABLE)?;
        Ok(self.sockets.insert(Socket::new(socket, true)?))
    }

    /// Some socket's read budget ran out last turn.
    pub(super) fn has_pending(&self) -> bool {
        self.sockets.iter().any(|(_, s)| s.pending)
    }

    /// A session is gone: forget its peer (if the socket's entry is still
    /// that session's); a dial's socket goes with it.
    fn forget(&mut self, socket: u32, peer: SocketAddr, key: usize, registry: &Registry) {
        let i = socket as usize;
        let Some(s) = self.sockets.get_mut(i) else {
            return;
        };
        if s.sessions.get(&peer) != Some(&key) {
            return;
        }
        s.sessions.remove(&peer);
        if s.dialed {
            let mut s = self.sockets.remove(i);
            let _ = registry.deregister(&mut s.socket);
        }
    }
}

impl EventLoop {
    /// An event on UDP socket `i`.
    pub(super) fn udp_event(&mut self, i: usize, event: &mio::event::Event) {
        if event.is_writable() {
            self.udp_writable(i);
        }
        if event.is_readable() || event.is_error() {
            self.udp_read(i);
        }
    }

    /// Read the sockets whose budget ran out last turn.
    pub(super) fn udp_pending(&mut self) {
        if !self.udp.has_pending() {
            return;
        }
        let pending: Vec<usize> = (self.udp.sockets.iter_mut())
            .filter_map(|(i, s)| std::mem::take(&mut s.pending).then_some(i))
            .collect();
        for i in pending {
            self.udp_read(i);
        }
    }

    /// Read datagrams from socket `i` until it would block (or its budget
    /// for the turn is spent), handling each as it comes.
    fn udp_read(&mut self, i: usize) {
        let counters = self.core.runtime.loops[self.core.table.index()]
            .counters
            .clone();
        let max = self.core.runtime.config.udp.max_datagram;
        let mut errors = 0;
        for _ in 0..DATAGRAM_BUDGET {
            let Some(socket) = self.udp.sockets.get(i) else {
                return;
            };
            let (n, from) = match socket.socket.recv_from(&mut self.udp.scratch) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // An ICMP error reported on the socket (a dial's peer
                    // not there): nothing to do with the next datagram. A
                    // few in a row end this read (edge-triggered: a later
                    // datagram raises a new event).
                    log::debug!("udp {}: receive failed: {e}", socket.local);
                    errors += 1;
                    if errors > 4 {
                        return;
                    }
                    continue;
                }
            };
            Counters::bump(&counters.datagrams_in, 1);
            Counters::bump(&counters.bytes_in, n as u64);
            if n > max {
                drop_datagram(&counters, DatagramDrop::Oversized);
                log::debug!("udp {from}: datagram over {max} bytes dropped");
                continue;
            }
            let datagram = BytesMut::from(&self.udp.scratch[..n]);
            self.datagram(i, from, datagram);
        }
        if let Some(socket) = self.udp.sockets.get_mut(i) {
            socket.pending = true;
        }
    }

    /// One datagram from `from` on socket `i`: find or open its session,
    /// decode its frames, dispatch them.
    fn datagram(&mut self, i: usize, from: SocketAddr, datagram: BytesMut) {
        let core = self.core.clone();
        let table = &core.table;
        let counters = table.counters();
        let len = datagram.len();
        let socket = &self.udp.sockets[i];
        let (known, dialed) = (socket.sessions.get(&from).copied(), socket.dialed);
        // Paused (its handlers are behind): what it brings is dropped,
        // but for replies to its requests, which need no handler.
        let (key, generation, profile, paused) = match known {
            Some(key) => {
                let slab = table.conns.borrow();
                match slab.get(key) {
                    Some(c) if c.has(flag::CLOSING) => {
                        return drop_datagram(counters, DatagramDrop::Closing)
                    }
                    Some(c) if c.has(flag::PAUSED) && !c.has(flag::AWAITING) => {
                        return drop_datagram(counters, DatagramDrop::Backlog)
                    }
                    Some(c) => (key, c.generation, c.profile, c.has(flag::PAUSED)),
                    None => return drop_datagram(counters, DatagramDrop::Closing),
                }
            }
            // A dial's socket is connected: only its peer can be heard.
            None if dialed => return drop_datagram(counters, DatagramDrop::Closing),
            None => match self.open_session(i, from) {
                Some((key, generation)) => (key, generation, SERVER_PROFILE, false),
                None => return,
            },
        };
        let mut batch = std::mem::take(&mut self.udp.batch);
        let packer = table.wire().packer(profile);
        if let Err(bad) = decode_datagram(packer, datagram, &mut batch, from) {
            self.udp.batch = batch;
            drop_datagram(counters, DatagramDrop::Malformed);
            log::debug!(
                "conn {} ({from}): malformed datagram dropped: {}",
                table.id(key, generation),
                bad.0
            );
            return;
        }
        {
            let mut slab = table.conns.borrow_mut();
            let Some(conn) = slab.get_mut(key).filter(|c| c.generation == generation) else {
                return;
            };
            conn.last_active = self.timers.now32();
            conn.unset(flag::PINGED);
            if let Some(peer) = conn.layer.udp_peer_mut() {
                peer.received(len, &core.runtime.config.udp);
            }
            conn.traffic.read(len);
            conn.traffic.decoded(batch.len());
        }
        if batch.len() > 0 {
            Counters::bump(&counters.messages_in, batch.len() as u64);
            if !paused {
                self.app.dispatch(&core, key, generation, &batch);
            } else if self.app.replies_only(&core, key, generation, &batch) > 0 {
                drop_datagram(counters, DatagramDrop::Backlog);
            }
        }
        batch.clear();
        self.udp.batch = batch;
        self.flush(key);
    }

    /// A first datagram from `from`: open its session and run `on_open`.
    /// `None` if it may not be opened (the session limit, shutdown) or
    /// `on_open` refused it.
    fn open_session(&mut self, i: usize, from: SocketAddr) -> Option<(usize, u32)> {
        let core = self.core.clone();
        let (runtime, table) = (&core.runtime, &core.table);
        let counters = table.counters();
        if self.shutdown.is_some() {
            drop_datagram(counters, DatagramDrop::Closing);
            return None;
        }
        let config = &runtime.config;
        let sessions = runtime.udp_sessions.fetch_add(1, Ordering::Relaxed);
        let live = runtime.live.fetch_add(1, Ordering::Relaxed);
        if sessions >= config.udp.max_sessions || live >= config.max_connections {
            runtime.udp_sessions.fetch_sub(1, Ordering::Relaxed);
            runtime.live.fetch_sub(1, Ordering::Relaxed);
            drop_datagram(counters, DatagramDrop::SessionLimit);
            log::debug!("udp {from}: no session opened: at the session limit");
            return None;
        }
        let generation = table.next_generation();
        let layer = Layer::udp(UdpPeer::new(i as u32));
        let mut conn = Conn::new(None, from, generation, self.timers.now32(), layer);
        conn.data.insert(UdpSession {
            local_addr: self.udp.sockets[i].local,
        });
        let key = table.insert(conn);
        self.udp.sockets[i].sessions.insert(from, key);
        counters.connections.fetch_add(1, Ordering::Relaxed);
        Counters::add(&counters.accepted, 1);
        self.start_heartbeat(key, generation);
        self.run_on_open(key, generation);
        if table.is_closing(table.id(key, generation)) {
            // Refused: the datagram that opened it goes unhandled.
            self.flush(key);
            return None;
        }
        Some((key, generation))
    }

    /// A UDP session removed from the table: its peer is forgotten (and
    /// a dial's socket closed); an accepted one leaves room for another.
    pub(super) fn udp_session_gone(&mut self, key: usize, conn: &Conn) {
        let Some(udp) = conn.layer.udp_peer() else {
            return;
        };
        if !conn.has(flag::OUTBOUND) {
            self.core
                .runtime
                .udp_sessions
                .fetch_sub(1, Ordering::Relaxed);
        }
        if udp.is_attached() {
            let registry = self.poll.registry();
            self.udp.forget(udp.socket, conn.peer, key, registry);
        }
    }
}

#[cold]
fn drop_datagram(counters: &Counters, cause: DatagramDrop) {
    Counters::bump(&counters.datagram_drops[cause as usize], 1);
}
