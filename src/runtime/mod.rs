//! What the threads of one server share, and how they reach each other:
//! [`Runtime`] (settings, the loops' inboxes, wakers and counters, the
//! shutdown signal), [`LoopCore`] (the loop running on this thread, for
//! handles used from inside it), and the handles the application holds
//! ([`ConnHandle`], [`Hub`]).
//!
//! The application (routes, middleware, hooks) is not here: it is
//! `dispatch`'s, one layer up. The runtime moves bytes and commands.

mod dial;
pub(crate) mod exec;
mod handle;
pub(crate) mod local;
mod pool;
mod receipt;
mod request;
mod rooms;
mod timers;
#[cfg(feature = "metrics")]
mod traffic;
#[cfg(feature = "ws")]
mod ws;

pub use handle::{ConnHandle, Hub};
pub(crate) use local::{with_current, CurrentLoop, LoopCore};
pub use pool::{Pool, PoolStats, Pooled};
pub use receipt::Receipt;
pub(crate) use receipt::Reply;
pub(crate) use request::start_on as start_request_on;
pub use request::{PendingReply, Responder};
pub(crate) use rooms::room_op;
pub use timers::TimerHandle;
pub(crate) use timers::{Due, TimerFn, UserTimers};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Sender;
use mio::net::TcpStream;

use crate::config::Config;
use crate::conn::dial::Dial;
use crate::conn::requests::ReplySink;
use crate::conn::roster::Roster;
use crate::error::{Error, Result};
use crate::id::ConnId;
use crate::stats::Counters;
use crate::transport::{Encoded, Goodbye, Protocol, Wire};

/// A request to a loop from another thread.
pub(crate) enum Command {
    /// A freshly accepted socket to adopt, and what its listener speaks.
    Register(TcpStream, SocketAddr, Protocol),
    /// A message for one connection, encoded by the loop.
    Send {
        to: ConnId,
        id: u32,
        seq: u32,
        body: Bytes,
    },
    /// A message encoded for every connection of the loop but one.
    Broadcast(Encoded, Option<ConnId>),
    /// A message encoded for these connections of the loop.
    SendTo(Vec<ConnId>, Encoded),
    /// Code to run on the loop (`ConnHandle::run`, `send_confirmed`); it
    /// reports its outcome itself. `bytes` are charged to the inbox.
    Run { bytes: usize, job: Job },
    /// Close one connection (after flushing), with a WebSocket close frame
    /// of the application's choice.
    Close(ConnId, Option<Box<Goodbye>>),
    /// Close everything, flushing until the deadline, then exit.
    Shutdown(Instant),
    /// Dial a connection on this loop; its id (or why not) goes back on
    /// `reply`.
    Dial(Arc<Dial>, Sender<Result<ConnId>>),
    /// A request on one connection: send it with a fresh sequence number
    /// and route its reply to `sink`.
    Request {
        to: ConnId,
        id: u32,
        body: Bytes,
        timeout: Duration,
        sink: ReplySink,
    },
    /// What a worker or the logic thread did with a connection's work:
    /// its sends, and its data back.
    Outcome(Box<exec::Outcome>),
}

/// Code sent to a loop, run there with the loop's core.
pub(crate) type Job = Box<dyn FnOnce(&LoopCore) + Send>;

/// What every thread of one server shares.
pub(crate) struct Runtime {
    pub(crate) config: Config,
    pub(crate) wire: Arc<Wire>,
    pub(crate) loops: Vec<LoopShared>,
    /// Open connections over all loops (checked against max_connections).
    pub(crate) live: AtomicUsize,
    /// Open UDP sessions over all loops (checked against
    /// `UdpConfig::max_sessions`; counted in `live` too).
    pub(crate) udp_sessions: AtomicUsize,
    shut_down: AtomicBool,
    stop: Mutex<Stop>,
    /// Wakes the acceptor to see the shutdown.
    accept_waker: mio::Waker,
    /// The loop the next dial from outside a loop goes to (round-robin).
    next_dial: AtomicUsize,
    /// This server's tag in its connections' ids (unique in the process).
    pub(crate) tag: u32,
    /// Told when shutdown begins (the pools: their callers may be parked
    /// for a while, in a connect backoff, say).
    watchers: Mutex<Vec<Weak<dyn ShutdownWatch>>>,
}

/// What must hear of a shutdown at once, not at its next look at
/// [`Runtime::is_shut_down`].
pub(crate) trait ShutdownWatch: Send + Sync {
    /// The server began shutting down. Runs on the thread that asked for
    /// it: it must not block.
    fn shutting_down(&self);
}

/// The shutdown handshake between whoever asks for it and the acceptor:
/// the loops are told only once the acceptor has stopped, so no socket
/// reaches a loop after it was told.
#[derive(Default)]
struct Stop {
    deadline: Option<Instant>,
    acceptor_gone: bool,
}

impl Runtime {
    pub(crate) fn new(
        config: Config,
        wire: Arc<Wire>,
        loops: Vec<LoopShared>,
        accept_waker: mio::Waker,
    ) -> Self {
        Runtime {
            config,
            wire,
            loops,
            live: AtomicUsize::new(0),
            udp_sessions: AtomicUsize::new(0),
            shut_down: AtomicBool::new(false),
            stop: Mutex::new(Stop::default()),
            accept_waker,
            next_dial: AtomicUsize::new(0),
            tag: crate::id::next_server_tag(),
            watchers: Mutex::default(),
        }
    }

    /// Tell `watcher` when shutdown begins (the watchers gone are
    /// forgotten here, so the list holds only live ones). Register before
    /// the caller's last look at [`is_shut_down`](Self::is_shut_down).
    pub(crate) fn watch_shutdown(&self, watcher: Weak<dyn ShutdownWatch>) {
        let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        watchers.retain(|w| w.strong_count() > 0);
        watchers.push(watcher);
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Begin shutting down (once; later calls do nothing): the acceptor
    /// stops, then every loop closes its connections, flushing until
    /// `deadline`.
    /// The shutdown's deadline, once one was asked for.
    pub(crate) fn shutdown_deadline(&self) -> Option<Instant> {
        self.stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .deadline
    }

    pub(crate) fn request_shutdown(&self, deadline: Instant) {
        let mut stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
        if stop.deadline.is_some() {
            return;
        }
        stop.deadline = Some(deadline);
        self.shut_down.store(true, Ordering::Release);
        if stop.acceptor_gone {
            self.tell_loops(deadline);
        } else if let Err(e) = self.accept_waker.wake() {
            log::error!("cannot wake the acceptor: {e}");
        }
        drop(stop);
        // Called outside the lock: each takes its own.
        let watchers: Vec<_> =
            std::mem::take(&mut *self.watchers.lock().unwrap_or_else(PoisonError::into_inner));
        for watcher in watchers.iter().filter_map(Weak::upgrade) {
            watcher.shutting_down();
        }
    }

    /// The acceptor has stopped (for good): tell the loops if shutdown was
    /// asked for.
    pub(crate) fn acceptor_stopped(&self) {
        let mut stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
        stop.acceptor_gone = true;
        if let Some(deadline) = stop.deadline {
            self.tell_loops(deadline);
        }
    }

    fn tell_loops(&self, deadline: Instant) {
        for lp in &self.loops {
            if lp.tx.send(Command::Shutdown(deadline)).is_ok() {
                lp.notify();
            }
        }
    }

    /// Hand a command to loop `index`, charging `bytes` to its inbox.
    pub(crate) fn push(&self, index: usize, bytes: usize, cmd: Command) -> Result<()> {
        self.push_or(index, bytes, cmd, drop)
    }

    /// [`push`](Self::push), handing a refused command to `refused` (what
    /// it carries, a reply sink, say, is the caller's to settle).
    pub(crate) fn push_or(
        &self,
        index: usize,
        bytes: usize,
        cmd: Command,
        refused: impl FnOnce(Command),
    ) -> Result<()> {
        let Some(lp) = self.loops.get(index) else {
            refused(cmd);
            return Err(self.count_send_error(Error::Closed));
        };
        if bytes > 0 {
            let before = lp.inflight.fetch_add(bytes, Ordering::Relaxed);
            if before + bytes > self.config.inbox_capacity {
                lp.inflight.fetch_sub(bytes, Ordering::Relaxed);
                refused(cmd);
                return Err(self.count_send_error(Error::InboxFull));
            }
        }
        if let Err(back) = lp.tx.send(cmd) {
            lp.inflight.fetch_sub(bytes, Ordering::Relaxed);
            refused(back.0);
            return Err(self.count_send_error(Error::ShutDown));
        }
        lp.notify();
        Ok(())
    }

    /// The loop a dial from outside the loops goes to.
    pub(crate) fn dial_loop(&self) -> usize {
        self.next_dial.fetch_add(1, Ordering::Relaxed) % self.loops.len()
    }

    /// Count a failed send (on loop 0's counters: any block serves) and
    /// return the error.
    pub(crate) fn count_send_error(&self, e: Error) -> Error {
        self.count_send_errors(1);
        e
    }

    /// Count `n` failed sends (on loop 0's counters).
    pub(crate) fn count_send_errors(&self, n: usize) {
        if let Some(l) = self.loops.first() {
            Counters::add(&l.counters.send_errors, n as u64);
        }
    }
}

/// How other threads reach one loop.
pub(crate) struct LoopShared {
    pub(crate) tx: Sender<Command>,
    pub(crate) waker: mio::Waker,
    /// Set by senders, cleared by the loop before it drains the inbox: at
    /// most one wake-up syscall per batch of commands.
    pub(crate) notified: AtomicBool,
    /// Bytes of messages in the inbox (bounded by `inbox_capacity`).
    pub(crate) inflight: AtomicUsize,
    pub(crate) counters: Arc<Counters>,
    pub(crate) roster: Arc<Roster>,
    /// Timers cancelled through their handles (slot, serial in the loop's
    /// `UserTimers`), whose callbacks the loop drops on its next turn.
    pub(crate) cancels: Mutex<Vec<(u32, u32)>>,
    /// The loop has exited: work of its connections still at an executor
    /// is dropped, not run (their `on_close` has run).
    pub(crate) exited: AtomicBool,
}

impl LoopShared {
    pub(crate) fn new(tx: Sender<Command>, waker: mio::Waker) -> Self {
        LoopShared {
            tx,
            waker,
            notified: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            counters: Arc::default(),
            roster: Arc::default(),
            cancels: Mutex::default(),
            exited: AtomicBool::new(false),
        }
    }

    pub(crate) fn notify(&self) {
        if !self.notified.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake event loop: {e}");
            }
        }
    }
}
