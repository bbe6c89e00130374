//! Lifecycle and resource behaviour over real loopback sockets: heartbeat
//! kicks and pings, backpressure on peers that do not read, the connection
//! limit, graceful shutdown, handles that outlive their connection, and
//! `on_close` running exactly once however a connection ends.
//!
//! Every wait is on an event (hook channels, blocking reads with timeouts)
//! or a bounded `wait_until`; the few sleeps are load (a client's pacing)
//! or race generation, never synchronisation.
//!
//! This file: the hooks and timing helpers the submodules share.
//! `lifecycle/heartbeat.rs`: idle kicks and pings (tests 1-3b).
//! `lifecycle/backpressure.rs`: peers that never read (tests 4-5).
//! `lifecycle/connections.rs`: the connection limit, handles that outlive
//! their connection, `on_close` once when reasons race (tests 6, 8, 9).
//! `lifecycle/shutdown.rs`: graceful shutdown (tests 7-7d).

mod backpressure;
mod connections;
mod fairness;
mod heartbeat;
mod shutdown;
mod unread;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{Builder, CloseReason, ConnId};

use crate::common::{Client, TIMEOUT};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The loops keep time in whole milliseconds, so a deadline measured from
/// outside may come up to one millisecond early.
const CLOCK_GRAIN: Duration = Duration::from_millis(1);

/// Allowance for thread scheduling on a loaded machine (two cores, other
/// builds running) on top of a documented upper bound. The upper bounds
/// then catch a timer late by a second or more (a wheel that rounds up to
/// seconds, a shutdown that waits for the 5 s close linger), not finer
/// errors; the lower bounds stay exact.
const SLACK: Duration = Duration::from_secs(1);

/// Tests that allocate tens of MiB, or measure the process's RSS, hold this
/// so the measurement is not disturbed by the others.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One `on_close` call as the hook saw it.
#[derive(Debug, Clone)]
struct Closed {
    id: ConnId,
    reason: CloseReason,
    at: Instant,
}

/// Channels fed by `on_open` and `on_close`.
struct Hooks {
    opens: Receiver<(ConnId, SocketAddr)>,
    closes: Receiver<Closed>,
    /// Connections seen opening, by peer address.
    known: HashMap<SocketAddr, ConnId>,
    /// Close events received while waiting for another connection's.
    closed: Vec<Closed>,
}

fn with_hooks(builder: Builder) -> (Builder, Hooks) {
    let (open_tx, opens) = unbounded();
    let (close_tx, closes) = unbounded();
    let builder = builder
        .on_open(move |s| {
            let _ = open_tx.send((s.id(), s.peer_addr()));
        })
        .on_close(move |s, reason| {
            let _ = close_tx.send(Closed {
                id: s.id(),
                reason: reason.clone(),
                at: Instant::now(),
            });
        });
    let hooks = Hooks {
        opens,
        closes,
        known: HashMap::new(),
        closed: Vec::new(),
    };
    (builder, hooks)
}

impl Hooks {
    /// The id of the connection whose peer is `addr`, once `on_open` ran.
    fn id_of(&mut self, addr: SocketAddr) -> ConnId {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(id) = self.known.get(&addr) {
                return *id;
            }
            let (id, peer) = self
                .opens
                .recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("no on_open for {addr} within {TIMEOUT:?}"));
            self.known.insert(peer, id);
        }
    }

    fn opened(&mut self, client: &Client) -> ConnId {
        self.id_of(client.stream.local_addr().unwrap())
    }

    /// Wait for `on_close` of `id` (keeping other connections' events).
    fn close_of(&mut self, id: ConnId) -> Closed {
        if let Some(i) = self.closed.iter().position(|c| c.id == id) {
            return self.closed.remove(i);
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let c = self
                .closes
                .recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("no on_close for {id} within {TIMEOUT:?}"));
            if c.id == id {
                return c;
            }
            self.closed.push(c);
        }
    }

    /// Every close event received so far (without waiting).
    fn closes_so_far(&mut self) -> Vec<Closed> {
        self.closed.extend(self.closes.try_iter());
        self.closed.clone()
    }
}
