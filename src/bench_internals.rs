//! Crate internals for the criterion benches in `benches/`, compiled only
//! with the `bench-internals` feature. Not part of the public API: nothing
//! here is stable, and a real build never enables it.
//!
//! * [`Wheel`] wraps the event loops' hashed timer wheel.
//! * [`Dispatcher`] runs decoded messages, or a whole read's frames,
//!   through the router, the middleware chain and an echo handler into a
//!   real connection's write queue, exactly as a loop does between read
//!   and flush.
//! * The fuzz targets' drivers (`fuzz/`): [`Reader`] (the inbound frame
//!   reader), [`Datagrams`] (the UDP datagram path), [`WsServer`] and
//!   [`WsClient`] (the WebSocket layer, feature `ws`), [`TlsServer`]
//!   (the TLS layer's input path, feature `tls`).

use std::cell::RefCell;
use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use bytes::BytesMut;

use crate::codec::reader::{split_frames, Batch};
use crate::codec::{LengthPacker, Message, ServerPacker};
use crate::config::Config;
use crate::conn::table::ConnTable;
use crate::conn::{flag, Conn};
use crate::dispatch::context::Context;
use crate::dispatch::hooks::Hooks;
use crate::dispatch::middleware::{handler_fn, middleware_fn, Next};
use crate::dispatch::router::{Route, Router};
use crate::dispatch::App;
use crate::reactor::event_loop::WAKER;
use crate::runtime::{LoopCore, LoopShared, Runtime};
use crate::timer::TimerWheel;
use crate::transport::{Layer, Wire};

mod fuzz;
#[cfg(feature = "tls")]
pub use fuzz::tls::TlsServer;
#[cfg(feature = "ws")]
pub use fuzz::ws::{WsClient, WsServer};
pub use fuzz::{Datagrams, Reader};

/// The loops' timer wheel holding `u64` values.
#[derive(Debug)]
pub struct Wheel {
    wheel: TimerWheel<u64>,
    due: Vec<u64>,
}

impl Wheel {
    /// A wheel with `slots` slots (rounded up to a power of two).
    pub fn new(slots: usize) -> Self {
        Wheel {
            wheel: TimerWheel::new(slots),
            due: Vec::new(),
        }
    }

    /// Schedule `value` at tick `at`.
    pub fn insert(&mut self, at: u64, value: u64) {
        self.wheel.insert(at, value);
    }

    /// The tick the wheel has reached.
    pub fn current(&self) -> u64 {
        self.wheel.current()
    }

    /// Advance to tick `now`; returns how many entries fired (they are
    /// dropped).
    pub fn advance(&mut self, now: u64) -> usize {
        self.due.clear();
        self.wheel.advance(now, &mut self.due);
        self.due.len()
    }

    /// The next tick with an entry, if any.
    pub fn next_due(&self) -> Option<u64> {
        self.wheel.next_due()
    }
}

/// One loop core with one open connection, and a router whose every id
/// echoes the body through `middleware` pass-through middleware.
///
/// [`dispatch`](Self::dispatch) runs the loop's own `App::dispatch` (route
/// lookup, closing check, `Context`, caught panics, user data lent and put
/// back); the socket is a real loopback connection, but nothing is ever
/// written to it:
/// [`take_output`](Self::take_output) empties the write queue as a flush
/// would, without the syscall.
pub struct Dispatcher {
    core: LoopCore,
    app: App,
    key: usize,
    generation: u32,
    /// The batch of the last read (`dispatch_read`).
    batch: RefCell<Batch>,
    // Kept alive for the wakers and the connection's peer.
    _poll: mio::Poll,
    _peer: TcpStream,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("key", &self.key)
            .finish()
    }
}

impl Dispatcher {
    /// A dispatcher whose router sends every id (through the fallback, as
    /// `Builder::fallback` does) to an echo handler behind `middleware`
    /// global middleware that only call `next.run(ctx)`.
    ///
    /// # Errors
    ///
    /// I/O errors from creating the poll, the wakers or the loopback pair.
    pub fn echo(middleware: usize) -> std::io::Result<Self> {
        let chain = (0..middleware)
            .map(|_| middleware_fn(|ctx: &mut Context<'_>, next: Next<'_>| next.run(ctx)))
            .collect();
        let handler = handler_fn(|ctx: &mut Context<'_>| ctx.reply(ctx.msg_id(), ctx.body()));
        let mut router = Router::default();
        router.set_fallback(Route::new(
            chain,
            handler,
            crate::runtime::exec::Target::Loop,
        ));
        let config = Config {
            event_loops: 1,
            ..Config::default()
        };
        let app = App {
            router,
            unknown_id: config.unknown_id,
            profiles: Vec::new(),
            timers: Default::default(),
            hooks: Hooks::default(),
            state: Arc::default(),
            exec: Default::default(),
            bad_bodies: Default::default(),
        };

        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let accept_waker = mio::Waker::new(poll.registry(), mio::Token(0))?;
        let (tx, _rx) = crossbeam_channel::unbounded();
        let packer = ServerPacker::Length(LengthPacker::default());
        let wire = Wire::new(packer, Vec::new(), None, None, Vec::new(), &config)
            .map_err(std::io::Error::other)?;
        let shared = LoopShared::new(tx, waker);
        let (counters, roster) = (shared.counters.clone(), shared.roster.clone());
        let runtime = Arc::new(Runtime::new(
            config,
            Arc::new(wire),
            vec![shared],
            accept_waker,
        ));
        let table = ConnTable::new(
            runtime.tag,
            0,
            runtime.wire.clone(),
            &runtime.config,
            counters,
            roster,
        );
        let core = LoopCore {
            runtime,
            table,
            state: app.state.clone(),
            timers: Default::default(),
            lanes: Default::default(),
        };

        let listener = TcpListener::bind("127.0.0.1:0")?;
        let peer = TcpStream::connect(listener.local_addr()?)?;
        let (stream, addr): (TcpStream, SocketAddr) = listener.accept()?;
        stream.set_nonblocking(true)?;
        let generation = core.table.next_generation();
        let key = core.table.insert(Conn::new(
            Some(mio::net::TcpStream::from_std(stream)),
            addr,
            generation,
            0,
            Layer::default(),
        ));
        Ok(Dispatcher {
            core,
            app,
            key,
            generation,
            batch: RefCell::new(Batch::default()),
            _poll: poll,
            _peer: peer,
        })
    }

    /// Run `msgs` (drained) through their routes, as the loop does after a
    /// read decoded them.
    pub fn dispatch(&self, msgs: &mut Vec<Message>) {
        let mut batch = self.batch.borrow_mut();
        batch.clear();
        std::mem::swap(&mut batch.msgs, msgs);
        self.app
            .dispatch(&self.core, self.key, self.generation, &batch);
        std::mem::swap(&mut batch.msgs, msgs);
        msgs.clear();
    }

    /// Handle one read's worth of bytes as the loop does: find the whole
    /// frames in `read` with `LengthPacker::peek`, split them off at once,
    /// and run them through their routes with borrowed bodies. Returns the
    /// number of frames handled; an incomplete tail stays in `read`.
    ///
    /// # Panics
    ///
    /// On a frame `LengthPacker` rejects (a benchmark's input is valid).
    pub fn dispatch_read(&self, read: &mut BytesMut) -> usize {
        let mut batch = self.batch.borrow_mut();
        batch.clear();
        let packer = LengthPacker::default();
        let peer = SocketAddr::from(([127, 0, 0, 1], 0));
        let found = split_frames(&packer, read, &mut batch, peer);
        assert!(matches!(found, Some((Ok(()), _))), "invalid frames");
        let n = batch.len();
        self.app
            .dispatch(&self.core, self.key, self.generation, &batch);
        n
    }

    /// Empty the connection's write queue into the pool (what a flush that
    /// wrote everything does) and clear the dirty list; returns the bytes
    /// that were queued.
    pub fn take_output(&self) -> usize {
        let table = &self.core.table;
        table.dirty.borrow_mut().clear();
        let mut slab = table.conns.borrow_mut();
        let Some(conn) = slab.get_mut(self.key) else {
            return 0;
        };
        conn.unset(flag::DIRTY);
        match conn.queue.take() {
            Some(q) => {
                let n = q.len();
                table.pool.borrow_mut().put_write(q);
                n
            }
            None => 0,
        }
    }
}
