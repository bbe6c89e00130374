//! The acceptor thread: accepts on every listener and hands each socket to
//! a loop. Loops never accept, so a busy loop cannot delay (or reset) a
//! connection that is waiting to be accepted.
//!
//! Accept errors such as EMFILE/ENFILE leave the connection in the kernel's
//! backlog and raise no new readiness event, so the acceptor backs off (5 ms
//! doubling up to `accept_backoff_max`) and then retries by itself; it logs
//! once when a burst of errors starts and once when it ends.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Poll, Token};

use crate::config::Balance;
use crate::runtime::{Command, Runtime};
use crate::stats::Counters;
use crate::transport::Protocol;

pub(crate) const WAKE: Token = Token(usize::MAX);

pub(crate) struct Acceptor {
    pub(crate) poll: Poll,
    pub(crate) listeners: Vec<TcpListener>,
    /// What each listener's connections speak.
    protocols: Vec<Protocol>,
    runtime: Arc<Runtime>,
    next: usize,
    /// Accept errors in the current burst (0: no burst).
    burst: u64,
    /// Over-limit rejections not yet logged, and when we last logged.
    rejected_unlogged: u64,
    rejected_logged_at: Option<Instant>,
}

impl Acceptor {
    pub(crate) fn new(
        poll: Poll,
        listeners: Vec<TcpListener>,
        protocols: Vec<Protocol>,
        runtime: Arc<Runtime>,
    ) -> Self {
        Acceptor {
            poll,
            listeners,
            protocols,
            runtime,
            next: 0,
            burst: 0,
            rejected_unlogged: 0,
            rejected_logged_at: None,
        }
    }

    /// Accept until shutdown (or a broken poll); then close the listeners
    /// and tell the runtime, which tells the loops (also if this thread
    /// panics).
    pub(crate) fn run(self) {
        // Locals drop in reverse order: the acceptor (its listeners) first,
        // then `Stopped`, so no connect completes after the loops are told.
        let _stopped = Stopped(self.runtime.clone());
        let mut acceptor = self;
        acceptor.accept_until_stopped();
    }

    fn accept_until_stopped(&mut self) {
        let mut events = Events::with_capacity(64);
        let mut backoff: Option<Duration> = None;
        loop {
            if let Err(e) = self.poll.poll(&mut events, backoff) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("acceptor: poll failed: {e}; no longer accepting");
                    return;
                }
            }
            if self.runtime.is_shut_down() {
                return;
            }
            // Try every listener: after a back-off there is no event to say
            // which one has connections waiting.
            let mut failed = false;
            for i in 0..self.listeners.len() {
                failed |= self.accept_all(i);
            }
            backoff = if failed {
                let max = self.runtime.config.accept_backoff_max;
                Some(backoff.map_or(Duration::from_millis(5), |b| (b * 2).min(max)))
            } else {
                None
            };
        }
    }

    /// Accept until `WouldBlock`; true if an error stopped it.
    fn accept_all(&mut self, i: usize) -> bool {
        loop {
            match self.listeners[i].accept() {
                Ok((stream, peer)) => {
                    if self.burst > 0 {
                        log::warn!("accept recovered after {} error(s)", self.burst);
                        self.burst = 0;
                    }
                    let protocol = self.protocols.get(i).copied().unwrap_or_default();
                    self.hand_over(stream, peer, protocol);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    Counters::add(&self.runtime.loops[0].counters.accept_errors, 1);
                    if self.burst == 0 {
                        log::warn!(
                            "accept failed: {e}; backing off and retrying (logged once per burst)"
                        );
                    }
                    self.burst += 1;
                    return true;
                }
            }
        }
    }

    fn hand_over(&mut self, stream: TcpStream, peer: SocketAddr, protocol: Protocol) {
        let server = &*self.runtime;
        let config = &server.config;
        let live = server.live.fetch_add(1, Ordering::Relaxed);
        if live >= config.max_connections {
            server.live.fetch_sub(1, Ordering::Relaxed);
            Counters::add(&server.loops[0].counters.rejected, 1);
            drop(stream);
            self.log_rejected(peer);
            return;
        }
        crate::sys::tune(&stream, peer, &config.server_socket());
        let index = match config.balance {
            Balance::RoundRobin => {
                let i = self.next % server.loops.len();
                self.next = i + 1;
                i
            }
            Balance::LeastConnections => server
                .loops
                .iter()
                .enumerate()
                .min_by_key(|(_, l)| l.counters.connections.load(Ordering::Relaxed))
                .map_or(0, |(i, _)| i),
        };
        // Counted at assignment, not registration, so a burst of accepts
        // spreads over loops under `LeastConnections`.
        let counters = &server.loops[index].counters;
        counters.connections.fetch_add(1, Ordering::Relaxed);
        if server
            .push(index, 0, Command::Register(stream, peer, protocol))
            .is_err()
        {
            counters.connections.fetch_sub(1, Ordering::Relaxed);
            server.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Log over-limit rejections at most once a second, with a count.
    fn log_rejected(&mut self, peer: SocketAddr) {
        self.rejected_unlogged += 1;
        let now = Instant::now();
        if self
            .rejected_logged_at
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            log::warn!(
                "max_connections ({}) reached: closed {} new connection(s), latest from {peer}",
                self.runtime.config.max_connections,
                self.rejected_unlogged
            );
            self.rejected_unlogged = 0;
            self.rejected_logged_at = Some(now);
        }
    }
}

/// Tells the runtime the acceptor stopped, however its thread ends.
struct Stopped(Arc<Runtime>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.acceptor_stopped();
    }
}
