//! Crate internals for the criterion benches in `benches/`, compiled only
//! with the `bench-internals` feature. Not part of the public API: nothing
//! here is stable, and a real build never enables it.
//!
//! * [`Wheel`] wraps the event loops' hashed timer wheel.
//! * [`Dispatcher`] runs decoded messages, or a whole read's frames,
//!   through the router, the middleware chain and an echo handler into a
//!   real connection's write queue, exactly as a loop does between read
//!   and flush.

use std::cell::RefCell;
use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::config::Config;
use crate::conn::{flag, Conn};
use crate::context::Context;
use crate::middleware::{handler_fn, middleware_fn, Next};
use crate::packer::{LengthPacker, Message};
use crate::reactor::event_loop::{self, FrameRef, WAKER};
use crate::reactor::{LoopCore, LoopShared, ServerShared};
use crate::router::{Route, Router};
use crate::stats::Counters;
use crate::timer::TimerWheel;
use crate::transport::{Layer, LayerConfig};

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
/// [`dispatch`](Self::dispatch) mirrors the event loop's private
/// `dispatch` function (route lookup, closing check, `Context`, caught
/// panics, user data taken out and put back) line for line; the socket is a
/// real loopback connection, but nothing is ever written to it:
/// [`take_output`](Self::take_output) empties the write queue as a flush
/// would, without the syscall.
pub struct Dispatcher {
    core: LoopCore,
    key: usize,
    generation: u32,
    /// Frames found in the last read (`dispatch_read`).
    frames: RefCell<Vec<FrameRef>>,
    // Kept alive for the registry and the connection's peer.
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
    /// I/O errors from creating the poll, the waker or the loopback pair.
    pub fn echo(middleware: usize) -> std::io::Result<Self> {
        let chain = (0..middleware)
            .map(|_| middleware_fn(|ctx: &mut Context<'_>, next: Next<'_>| next.run(ctx)))
            .collect();
        let handler = handler_fn(|ctx: &mut Context<'_>| ctx.reply(ctx.msg_id(), ctx.body()));
        let mut router = Router::default();
        router.set_fallback(Route::new(chain, handler));

        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKER)?;
        let (tx, _rx) = crossbeam_channel::unbounded();
        let config = Config {
            event_loops: 1,
            ..Config::default()
        };
        let server = Arc::new(ServerShared {
            layers: LayerConfig::default(),
            config,
            packer: Box::new(LengthPacker::default()),
            length_packer: Some(LengthPacker::default()),
            router,
            on_open: None,
            on_close: None,
            loops: vec![LoopShared {
                tx,
                waker,
                notified: AtomicBool::new(false),
                inflight: AtomicUsize::new(0),
                counters: Counters::default(),
            }],
            live: AtomicUsize::new(1),
            shut_down: AtomicBool::new(false),
        });
        let core = LoopCore::new(0, server, poll.registry().try_clone()?);

        let listener = TcpListener::bind("127.0.0.1:0")?;
        let peer = TcpStream::connect(listener.local_addr()?)?;
        let (stream, addr): (TcpStream, SocketAddr) = listener.accept()?;
        stream.set_nonblocking(true)?;
        let generation = core.next_generation();
        let key = core.conns.borrow_mut().insert(Conn::new(
            mio::net::TcpStream::from_std(stream),
            addr,
            generation,
            0,
            Layer::default(),
        ));
        Ok(Dispatcher {
            core,
            key,
            generation,
            frames: RefCell::new(Vec::new()),
            _poll: poll,
            _peer: peer,
        })
    }

    /// Run `msgs` (drained) through their routes, as the loop does after a
    /// read decoded them.
    pub fn dispatch(&self, msgs: &mut Vec<Message>) {
        event_loop::dispatch(
            &self.core,
            self.key,
            self.generation,
            msgs,
            &mut Vec::new(),
            &Bytes::new(),
        );
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
        let mut frames = self.frames.borrow_mut();
        let mut batch = Bytes::new();
        let packer = LengthPacker::default();
        let peer = SocketAddr::from(([127, 0, 0, 1], 0));
        let found = event_loop::split_frames(&packer, read, &mut frames, &mut batch, peer);
        assert!(matches!(found, Some((Ok(()), _))), "invalid frames");
        let n = frames.len();
        event_loop::dispatch(
            &self.core,
            self.key,
            self.generation,
            &mut Vec::new(),
            &mut frames,
            &batch,
        );
        n
    }

    /// Empty the connection's write queue into the pool (what a flush that
    /// wrote everything does) and clear the dirty list; returns the bytes
    /// that were queued.
    pub fn take_output(&self) -> usize {
        let core = &self.core;
        core.dirty.borrow_mut().clear();
        let mut slab = core.conns.borrow_mut();
        let Some(conn) = slab.get_mut(self.key) else {
            return 0;
        };
        conn.unset(flag::DIRTY);
        match conn.queue.take() {
            Some(q) => {
                let n = q.len();
                core.pool.borrow_mut().put_write(q);
                n
            }
            None => 0,
        }
    }
}
