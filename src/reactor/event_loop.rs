//! One event-loop thread: poll → read, decode, dispatch → inbox → timers →
//! flush, until shutdown.
//!
//! mio is edge-triggered: every readable connection is read until
//! `WouldBlock`, except that one connection gets at most `read_budget` bytes
//! per turn; the rest is read next turn (its key waits in `pending`, and the
//! poll does not sleep while anything is pending).

use std::io::{self, Read};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll, Token};

use super::{panic_message, Command, LoopCore, CURRENT};
use crate::config::UnknownIdPolicy;
use crate::conn::{flag, Conn};
use crate::context::{Context, Session};
use crate::error::CloseReason;
use crate::packer::{check_frame, Message, Packer, Peek};
use crate::stats::Counters;
use crate::timer::TimerWheel;
use crate::transport::{Protocol, QueueRef, Sink, Upgrade};

/// The token of each loop's waker.
pub(crate) const WAKER: Token = Token(usize::MAX);

/// Coarsest wheel tick: handshake timeouts and close lingers are this
/// precise; a heartbeat's check interval may make it finer.
const MAX_TICK: Duration = Duration::from_millis(100);

/// What a timer checks when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKind {
    /// Heartbeat: kick, ping or reschedule.
    Idle,
    /// A closing connection's flush deadline.
    Linger,
    /// The handshake deadline.
    Handshake,
}

/// A scheduled check of one connection.
#[derive(Debug, Clone, Copy)]
struct Timer {
    key: u32,
    generation: u32,
    kind: TimerKind,
}

pub(crate) struct EventLoop {
    core: Rc<LoopCore>,
    poll: Poll,
    events: Events,
    inbox: Receiver<Command>,
    wheel: TimerWheel<Timer>,
    due: Vec<Timer>,
    tick_ms: u64,
    start: Instant,
    /// Milliseconds since `start`, updated once per turn.
    now_ms: u64,
    /// Where every read lands first (shared by all connections).
    scratch: Box<[u8]>,
    /// Decode buffer for connections with no partial frame.
    rx: BytesMut,
    /// TLS plaintext on its way to the WebSocket layer (`wss://`).
    plain: BytesMut,
    /// Messages decoded by `Packer::decode` or made by a layer.
    msgs: Vec<Message>,
    /// Frames found by `Packer::peek`: their bodies lie in `batch`.
    frames: Vec<FrameRef>,
    /// The bytes of the frames in `frames`, split off the receive buffer.
    batch: Bytes,
    /// Emptied partial-frame buffers; back to the pool once the messages
    /// split from them have been handled (their bodies share them).
    spent: Vec<BytesMut>,
    /// Keys to read again next turn (their read budget ran out).
    pending: Vec<usize>,
    shutdown: Option<Instant>,
    /// Connections dropped with unsent data since shutdown began.
    unflushed_in_shutdown: usize,
}

impl EventLoop {
    pub(crate) fn new(core: LoopCore, poll: Poll, inbox: Receiver<Command>) -> Self {
        let config = &core.server.config;
        let mut tick = MAX_TICK;
        let mut longest = config.close_linger.max(config.handshake_timeout);
        if let Some(hb) = &config.heartbeat {
            tick = tick.min(hb.check_interval);
            longest = longest.max(hb.idle_timeout);
        }
        let tick_ms = (tick.as_millis() as u64).max(1);
        let slots = (longest.as_millis() as u64 / tick_ms + 2).min(1 << 16) as usize;
        let read_buffer = config.read_buffer;
        EventLoop {
            core: Rc::new(core),
            poll,
            events: Events::with_capacity(1024),
            inbox,
            wheel: TimerWheel::new(slots),
            due: Vec::new(),
            tick_ms,
            start: Instant::now(),
            now_ms: 0,
            scratch: vec![0; read_buffer].into_boxed_slice(),
            rx: BytesMut::new(),
            plain: BytesMut::new(),
            msgs: Vec::new(),
            frames: Vec::new(),
            batch: Bytes::new(),
            spent: Vec::new(),
            pending: Vec::new(),
            shutdown: None,
            unflushed_in_shutdown: 0,
        }
    }

    /// Run until shutdown; returns how many connections were closed with
    /// unflushed data when the shutdown deadline passed.
    pub(crate) fn run(mut self) -> usize {
        CURRENT.with(|c| *c.borrow_mut() = Some(self.core.clone()));
        let unflushed = self.turns();
        CURRENT.with(|c| *c.borrow_mut() = None);
        unflushed
    }

    fn turns(&mut self) -> usize {
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        // Whether the last wait returned events: only then may the next
        // one busy-poll (a turn that only fired timers does not spin).
        let mut active = false;
        loop {
            self.update_clock();
            let timeout = self.poll_timeout();
            let spin = spin_budget(self.core.server.config.busy_poll, timeout, active);
            if let Err(e) = self.wait(&mut events, timeout, spin) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Not recoverable (EBADF/EINVAL on the poll fd): close all.
                log::error!(
                    "loop {}: poll failed: {e}; closing its connections",
                    self.core.index
                );
                return self.close_all_now();
            }
            self.update_clock();
            active = !events.is_empty();
            for event in events.iter() {
                match event.token() {
                    WAKER => self.drain_inbox(),
                    Token(key) => {
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            // Without a hang-up in the event, a short read
                            // means the socket is drained: every later byte
                            // raises a new edge, so skip the read that would
                            // only return WouldBlock.
                            let short_read_drains = !event.is_read_closed() && !event.is_error();
                            self.read(key, short_read_drains);
                            self.flush(key);
                        }
                    }
                }
            }
            for key in std::mem::take(&mut self.pending) {
                if let Some(c) = self.core.conns.borrow_mut().get_mut(key) {
                    c.unset(flag::PENDING_READ);
                }
                self.read(key, false);
                self.flush(key);
            }
            self.fire_timers();
            self.flush_dirty();
            if let Some(deadline) = self.shutdown {
                if self.core.conns.borrow().is_empty() {
                    return self.unflushed_in_shutdown;
                }
                if Instant::now() >= deadline {
                    return self.close_all_now();
                }
            }
        }
    }

    /// Wait for events, at most `timeout`, polling without sleeping for
    /// the first `spin` of it (see [`spin_budget`]).
    fn wait(
        &mut self,
        events: &mut Events,
        timeout: Option<Duration>,
        spin: Duration,
    ) -> io::Result<()> {
        if spin.is_zero() {
            return self.poll.poll(events, timeout);
        }
        let start = Instant::now();
        loop {
            self.poll.poll(events, Some(Duration::ZERO))?;
            if !events.is_empty() {
                return Ok(());
            }
            let spun = start.elapsed();
            if spun >= spin {
                let rest = timeout.map(|t| t.saturating_sub(spun));
                return self.poll.poll(events, rest);
            }
        }
    }

    fn update_clock(&mut self) {
        self.now_ms = self.start.elapsed().as_millis() as u64;
    }

    /// Loop clock as stored in connections (wrapping milliseconds).
    fn now32(&self) -> u32 {
        self.now_ms as u32
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.pending.is_empty() {
            return Some(Duration::ZERO);
        }
        let timer = self
            .wheel
            .next_due()
            .map(|tick| Duration::from_millis((tick * self.tick_ms).saturating_sub(self.now_ms)));
        let shutdown = self
            .shutdown
            .map(|d| d.saturating_duration_since(Instant::now()));
        match (timer, shutdown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn mark_dirty(&self, key: usize) {
        let mut slab = self.core.conns.borrow_mut();
        if let Some(conn) = slab.get_mut(key) {
            if !conn.has(flag::DIRTY) {
                conn.set(flag::DIRTY);
                self.core.dirty.borrow_mut().push(key);
            }
        }
    }

    fn drain_inbox(&mut self) {
        let core = self.core.clone();
        let shared = core.shared();
        shared
            .notified
            .store(false, std::sync::atomic::Ordering::SeqCst);
        while let Ok(cmd) = self.inbox.try_recv() {
            match cmd {
                Command::Register(stream, peer, protocol) => self.open(stream, peer, protocol),
                Command::Frame(id, frame) => {
                    shared
                        .inflight
                        .fetch_sub(frame.len(), std::sync::atomic::Ordering::Relaxed);
                    if let Err(e) = self.core.push_frame(id, frame) {
                        log::debug!("conn {id}: cross-thread send dropped: {e}");
                    }
                }
                Command::Broadcast(encoded) => {
                    shared
                        .inflight
                        .fetch_sub(encoded.len(), std::sync::atomic::Ordering::Relaxed);
                    self.core.broadcast(&encoded);
                }
                Command::Close(id, goodbye) => self.core.close_with(
                    id.key as usize,
                    id.generation,
                    CloseReason::Local,
                    goodbye.as_deref(),
                ),
                Command::Snapshot(reply) => {
                    let _ = reply.send(self.core.ids());
                }
                Command::Shutdown(deadline) => self.begin_shutdown(deadline),
            }
        }
    }

    fn begin_shutdown(&mut self, deadline: Instant) {
        self.shutdown = Some(deadline);
        let open: Vec<(usize, u32)> = {
            let slab = self.core.conns.borrow();
            slab.iter().map(|(k, c)| (k, c.generation)).collect()
        };
        for (key, generation) in open {
            self.core.close(key, generation, CloseReason::Shutdown);
        }
    }

    /// Adopt an accepted socket: register it, schedule its heartbeat, run
    /// `on_open`.
    fn open(
        &mut self,
        mut stream: mio::net::TcpStream,
        peer: std::net::SocketAddr,
        protocol: Protocol,
    ) {
        let core = self.core.clone();
        let server = &core.server;
        let counters = self.core.counters();
        let generation = self.core.next_generation();
        let key = {
            let mut slab = self.core.conns.borrow_mut();
            let entry = slab.vacant_entry();
            let key = entry.key();
            let layer = server.layers.layer(protocol);
            let registered = match layer {
                Ok(layer) => self
                    .core
                    .registry
                    .register(&mut stream, Token(key), Interest::READABLE)
                    .map(|()| layer)
                    .map_err(|e| e.to_string()),
                Err(reason) => Err(reason.to_string()),
            };
            if let Err(e) = registered {
                log::warn!("loop {}: cannot adopt {peer}: {e}", self.core.index);
                server
                    .live
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                counters
                    .connections
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            let layer = registered.unwrap_or_default();
            entry.insert(Conn::new(stream, peer, generation, self.now32(), layer));
            key
        };
        Counters::add(&counters.accepted, 1);
        if let Some(hb) = &server.config.heartbeat {
            let first = hb.ping_after.unwrap_or(hb.idle_timeout);
            self.schedule(key, generation, first.as_millis() as u64, TimerKind::Idle);
        }
        if server.layers.has_handshake(protocol) {
            let after = server.config.handshake_timeout.as_millis() as u64;
            self.schedule(key, generation, after, TimerKind::Handshake);
        }
        // The acceptor is joined before loops get `Shutdown`, so this only
        // guards the contract: a socket adopted while shutting down is
        // opened (on_open runs) and closed at once.
        if self.shutdown.is_some() {
            self.core.close(key, generation, CloseReason::Shutdown);
        }
        let Some(hook) = &server.on_open else {
            return;
        };
        let id = self.core.conn_id(key, generation, protocol);
        let verdict = self.with_session(key, generation, |session| {
            catch_unwind(AssertUnwindSafe(|| hook(session)))
        });
        match verdict {
            Some(Ok(Ok(()))) | None => {}
            Some(Ok(Err(why))) => {
                log::debug!("conn {id} ({peer}): rejected by on_open: {why}");
                self.core.close(key, generation, CloseReason::Rejected(why));
            }
            Some(Err(panic)) => {
                log::error!(
                    "conn {id} ({peer}): on_open panicked: {}",
                    panic_message(&*panic)
                );
                self.core.close(key, generation, CloseReason::HandlerPanic);
            }
        }
    }

    /// Run `f` with a [`Session`] for the connection (its user data taken
    /// out of the slab meanwhile, so `f` may freely call back into the loop).
    fn with_session<R>(
        &self,
        key: usize,
        generation: u32,
        f: impl FnOnce(&mut Session<'_>) -> R,
    ) -> Option<R> {
        let (mut data, peer, id) = {
            let mut slab = self.core.conns.borrow_mut();
            let conn = slab.get_mut(key).filter(|c| c.generation == generation)?;
            let id = self.core.id_of(key, conn);
            (std::mem::take(&mut conn.data), conn.peer, id)
        };
        let mut session = Session {
            core: &self.core,
            id,
            peer,
            data: &mut data,
        };
        let r = f(&mut session);
        if let Some(conn) = self.core.conns.borrow_mut().get_mut(key) {
            if conn.generation == generation {
                conn.data = data;
            }
        }
        Some(r)
    }

    /// Read from a connection until `WouldBlock` (or, with
    /// `short_read_drains`, a read shorter than the buffer) or until its
    /// budget is spent, dispatching every complete message in order.
    fn read(&mut self, key: usize, short_read_drains: bool) {
        let core = self.core.clone();
        let mut budget = core.server.config.read_budget;
        loop {
            let mut slab = core.conns.borrow_mut();
            let Some(conn) = slab.get_mut(key) else {
                return;
            };
            // A closing connection is read only for the peer's half of a
            // close handshake (WebSocket close frame).
            let closing = conn.has(flag::CLOSING);
            if closing && !conn.layer.awaits_peer_close() || !closing && conn.has(flag::PAUSED) {
                return;
            }
            let generation = conn.generation;
            // Plain TCP reads straight into the decode buffer: the loop's
            // `rx` between frames, or the rest of a large frame into the
            // buffer the packer reserved for it. A small partial frame, TLS
            // and WebSocket read through the scratch buffer (a layer
            // transforms the bytes; a partial frame stays small).
            let direct = conn.layer.is_plain()
                && conn
                    .partial
                    .as_ref()
                    .is_none_or(|p| p.capacity() - p.len() >= self.scratch.len());
            let (read, asked) = match conn.partial.as_mut() {
                None if direct => {
                    self.rx.clear();
                    self.rx.reserve(self.scratch.len());
                    read_into_spare(&conn.stream, &mut self.rx, self.scratch.len())
                }
                // The whole rest of the frame in as few reads as the kernel
                // allows: the room is bounded by the packer's body limit.
                Some(p) if direct => read_into_spare(&conn.stream, p, usize::MAX),
                _ => ((&conn.stream).read(&mut self.scratch), self.scratch.len()),
            };
            let n = match read {
                Ok(0) if closing => {
                    conn.layer.peer_gone();
                    core.mark_dirty(key, conn);
                    return;
                }
                Ok(0) => {
                    drop(slab);
                    core.close(key, generation, CloseReason::PeerClosed);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) if closing => {
                    conn.layer.peer_gone();
                    core.mark_dirty(key, conn);
                    return;
                }
                Err(e) => {
                    drop(slab);
                    let reason = match e.kind() {
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                            CloseReason::PeerClosed
                        }
                        _ => CloseReason::Io(std::sync::Arc::new(e)),
                    };
                    core.close(key, generation, reason);
                    return;
                }
            };
            Counters::bump(&core.counters().bytes_in, n as u64);
            conn.last_active = self.now32();
            conn.unset(flag::PINGED);
            let (mut failed, upgrade) = self.decode(key, conn, n, direct);
            drop(slab);
            if let Some(upgrade) = upgrade {
                failed = failed.or_else(|| self.upgrade(key, generation, upgrade));
            }

            let count = self.msgs.len() + self.frames.len();
            if count > 0 {
                Counters::bump(&core.counters().messages_in, count as u64);
                let mut msgs = std::mem::take(&mut self.msgs);
                let mut frames = std::mem::take(&mut self.frames);
                let batch = std::mem::take(&mut self.batch);
                dispatch(&core, key, generation, &mut msgs, &mut frames, &batch);
                self.msgs = msgs;
                self.frames = frames;
            }
            self.recycle_spent();
            if let Some(reason) = failed {
                core.close(key, generation, reason);
                return;
            }
            if short_read_drains && n < asked {
                return;
            }
            budget = budget.saturating_sub(n);
            if budget == 0 {
                let mut slab = core.conns.borrow_mut();
                if let Some(conn) = slab.get_mut(key) {
                    if !conn.has(flag::PENDING_READ) {
                        conn.set(flag::PENDING_READ);
                        self.pending.push(key);
                    }
                }
                return;
            }
        }
    }

    /// Decode the `n` bytes just read (into the scratch buffer, or with
    /// `direct` into the connection's partial frame or `rx`) into
    /// `self.frames` (a packer that peeks) or `self.msgs`; keep a trailing
    /// partial frame on the connection. Returns why the connection must
    /// close, if it must (messages before the bad frame are still
    /// delivered): a protocol error, or a packer that panicked or returned a
    /// message without consuming input (which would loop forever); and a
    /// WebSocket upgrade request for the application to decide on.
    fn decode(
        &mut self,
        key: usize,
        conn: &mut Conn,
        n: usize,
        direct: bool,
    ) -> (Option<CloseReason>, Option<Upgrade>) {
        // Frames found earlier in this read (only before a WebSocket
        // upgrade) become messages: `batch` is about to be replaced.
        for f in self.frames.drain(..) {
            self.msgs.push(Message {
                id: f.id,
                seq: f.seq,
                body: self.batch.slice(f.body),
            });
        }
        let server = &*self.core.server;
        let packer = &*server.packer;
        let buf = match conn.partial.as_mut() {
            Some(p) => p,
            // Read straight into `rx`: the bytes are already there.
            None if direct => &mut self.rx,
            None => {
                self.rx.clear();
                &mut self.rx
            }
        };
        let mut failed = None;
        let mut wants_write = false;
        let mut upgrade = None;
        if !direct {
            // Plain TCP copies the bytes; TLS decrypts them (and may
            // answer); WebSocket unframes them into messages or packer bytes
            // (and may answer pings and close frames).
            let mut sink = Sink {
                stream: buf,
                messages: &mut self.msgs,
                data: &mut conn.data,
                out: QueueRef {
                    queue: &mut conn.queue,
                    pool: &self.core.pool,
                },
                plain: &mut self.plain,
            };
            match conn.layer.receive(&mut self.scratch[..n], &mut sink) {
                Ok(incoming) => {
                    wants_write = incoming.wants_write;
                    upgrade = incoming.upgrade;
                    if incoming.peer_closed {
                        failed = Some(CloseReason::PeerClosed);
                    }
                }
                Err(reason) => failed = Some(reason),
            }
        }
        let spare_before = buf.capacity() - buf.len();
        let peer = conn.peer;
        let decoded_before = self.frames.len() + self.msgs.len();
        let (frames, batch) = (&mut self.frames, &mut self.batch);
        let split = match &server.length_packer {
            Some(length) => split_frames(length, buf, frames, batch, peer),
            None => split_frames(packer, buf, frames, batch, peer),
        };
        let (decoded, missing) =
            split.unwrap_or_else(|| (decode_messages(packer, buf, &mut self.msgs, peer), 0));
        // Room is reserved ahead for at most the body limit plus one read:
        // a custom packer's declared length is the packer's to check, and
        // past this the buffer grows only as the bytes arrive.
        let ahead = server
            .config
            .max_body_length
            .saturating_add(self.scratch.len());
        let missing = missing.min(ahead);
        let split_off = self.frames.len() + self.msgs.len() > decoded_before;
        if let Err(reason) = decoded {
            failed = Some(reason);
        }
        if wants_write || failed.is_some() || conn.has(flag::CLOSING) {
            // Handshake records, a TLS alert, a pong or close frame to send;
            // or a close handshake that may have just finished.
            self.core.mark_dirty(key, conn);
        }
        if failed.is_some() {
            if let Some(p) = conn.partial.take() {
                self.spent.push(p);
            }
            self.rx.clear();
            return (failed, upgrade);
        }
        // Room for the rest of an incomplete frame of known length is
        // reserved only now, after the whole frames were split off: a buffer
        // they share is not grown in place.
        let spare_after = self.rx.capacity() - self.rx.len();
        let large = missing >= self.scratch.len()
            // `decode` reserved room for a large frame itself.
            || spare_after > spare_before && spare_after >= self.scratch.len();
        match conn.partial.take() {
            Some(p) if p.is_empty() => self.spent.push(p),
            // Frames were split off this buffer and a small partial frame
            // is left: it moves to a pooled buffer, so the connection does
            // not pin an allocation the bodies share (possibly a large
            // frame's), and this one is recycled once they are dropped.
            Some(p) if split_off && p.len() + missing < self.scratch.len() => {
                conn.partial = Some(self.pooled_copy(&p, missing));
                self.spent.push(p);
            }
            Some(mut p) => {
                p.reserve(missing);
                conn.partial = Some(p);
            }
            // A large frame: the connection keeps this buffer, and the rest
            // of the frame is read straight into it.
            None if large => {
                self.rx.reserve(missing);
                conn.partial = Some(std::mem::take(&mut self.rx));
            }
            None if !self.rx.is_empty() => {
                conn.partial = Some(self.pooled_copy(&self.rx, missing));
                self.rx.clear();
            }
            None => {}
        }
        (None, upgrade)
    }

    /// A partial frame's bytes copied into a buffer from the pool, with
    /// room for the `missing` rest of the frame.
    fn pooled_copy(&self, bytes: &[u8], missing: usize) -> BytesMut {
        let mut p = self.core.pool.borrow_mut().take_read();
        p.reserve(bytes.len() + missing);
        p.extend_from_slice(bytes);
        p
    }

    /// Give emptied partial-frame buffers back to the pool, now that the
    /// messages decoded from them are handled (the pool keeps only those
    /// no body still shares).
    fn recycle_spent(&mut self) {
        if self.spent.is_empty() {
            return;
        }
        let mut pool = self.core.pool.borrow_mut();
        for p in self.spent.drain(..) {
            pool.put_read(p);
        }
    }

    /// A WebSocket upgrade request is complete: run the application's
    /// hook, answer the request, then decode what came with it. Returns why
    /// the connection must close, if it must.
    fn upgrade(&mut self, key: usize, generation: u32, upgrade: Upgrade) -> Option<CloseReason> {
        let core = self.core.clone();
        let layers = &core.server.layers;
        let verdict = self.with_session(key, generation, |session| {
            catch_unwind(AssertUnwindSafe(|| layers.decide_upgrade(upgrade, session)))
        })?;
        let (verdict, panicked) = match verdict {
            Ok(v) => (v, false),
            Err(panic) => {
                log::error!(
                    "conn {}: ws_on_upgrade panicked: {}",
                    core.conn_id(key, generation, Protocol::default()),
                    panic_message(&*panic)
                );
                (Err(500), true)
            }
        };
        let mut slab = core.conns.borrow_mut();
        let conn = slab.get_mut(key).filter(|c| c.generation == generation)?;
        let out = QueueRef {
            queue: &mut conn.queue,
            pool: &core.pool,
        };
        let answered = conn.layer.finish_upgrade(layers, verdict, out);
        core.mark_dirty(key, conn);
        if panicked {
            return Some(CloseReason::HandlerPanic);
        }
        if let Err(reason) = answered {
            return Some(reason);
        }
        // Frames the client sent right behind its request.
        let (failed, _) = self.decode(key, conn, 0, false);
        failed
    }

    fn schedule(&mut self, key: usize, generation: u32, after_ms: u64, kind: TimerKind) {
        let at_ms = self.now_ms + after_ms;
        let tick = at_ms.div_ceil(self.tick_ms);
        self.wheel.insert(
            tick,
            Timer {
                key: key as u32,
                generation,
                kind,
            },
        );
    }

    fn fire_timers(&mut self) {
        let now_tick = self.now_ms / self.tick_ms;
        if now_tick <= self.wheel.current() {
            return;
        }
        let mut due = std::mem::take(&mut self.due);
        self.wheel.advance(now_tick, &mut due);
        for t in due.drain(..) {
            match t.kind {
                TimerKind::Idle => self.heartbeat(t),
                TimerKind::Linger => self.linger_expired(t),
                TimerKind::Handshake => self.handshake_expired(t),
            }
        }
        self.due = due;
    }

    fn linger_expired(&mut self, t: Timer) {
        let key = t.key as usize;
        let closing = self
            .core
            .conns
            .borrow()
            .get(key)
            .is_some_and(|c| c.generation == t.generation && c.has(flag::CLOSING));
        if closing {
            log::debug!(
                "conn {}: close linger expired with data unsent",
                self.core.conn_id(key, t.generation, Protocol::default())
            );
            self.count_unflushed(1);
            self.finalize(key);
        }
    }

    fn handshake_expired(&mut self, t: Timer) {
        let key = t.key as usize;
        let late = self.core.conns.borrow().get(key).is_some_and(|c| {
            c.generation == t.generation && !c.has(flag::CLOSING) && c.layer.is_handshaking()
        });
        if late {
            self.core
                .close(key, t.generation, CloseReason::HandshakeTimeout);
        }
    }

    /// A heartbeat check: kick, ping, or reschedule.
    fn heartbeat(&mut self, t: Timer) {
        let Some(hb) = self.core.server.config.heartbeat else {
            return;
        };
        let key = t.key as usize;
        let idle_timeout = hb.idle_timeout.as_millis() as u64;
        let (idle, pinged) = {
            let slab = self.core.conns.borrow();
            match slab.get(key) {
                Some(c) if c.generation == t.generation && !c.has(flag::CLOSING) => (
                    u64::from(self.now32().wrapping_sub(c.last_active)),
                    c.has(flag::PINGED),
                ),
                _ => return,
            }
        };
        if idle >= idle_timeout {
            log::debug!(
                "conn {}: idle for {idle} ms; closing",
                self.core.conn_id(key, t.generation, Protocol::default())
            );
            self.core.close(key, t.generation, CloseReason::IdleTimeout);
            return;
        }
        let mut next = idle_timeout - idle;
        if let (Some(ping_after), false) = (hb.ping_after, pinged) {
            let ping_after = ping_after.as_millis() as u64;
            if idle >= ping_after {
                if let Some(c) = self.core.conns.borrow_mut().get_mut(key) {
                    c.set(flag::PINGED);
                }
                self.core.ping(key, t.generation, hb.ping_id);
                // If the peer answers, its next ping is due `ping_after`
                // after the answer: check again by then at the latest.
                next = next.min(ping_after);
            } else {
                next = ping_after - idle;
            }
        }
        self.schedule(key, t.generation, next, TimerKind::Idle);
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut *self.core.dirty.borrow_mut());
        // Flushing may close connections whose on_close sends to others:
        // keep going until nothing is dirty.
        while !dirty.is_empty() {
            for key in dirty.drain(..) {
                self.flush(key);
            }
            std::mem::swap(&mut dirty, &mut *self.core.dirty.borrow_mut());
        }
        *self.core.dirty.borrow_mut() = dirty;
    }

    /// If the connection is dirty: write what it has queued; adjust
    /// interest; resume reading once below half the high-water mark; finish
    /// a close once flushed. Called right after a connection's read (its
    /// replies need not wait for every other connection's read; replies to
    /// one read batch still leave in one write) and for the dirty list at
    /// the end of the turn, where connections flushed early are skipped.
    fn flush(&mut self, key: usize) {
        let core = self.core.clone();
        let config = &core.server.config;
        let mut slab = core.conns.borrow_mut();
        let Some(conn) = slab.get_mut(key).filter(|c| c.has(flag::DIRTY)) else {
            return;
        };
        conn.unset(flag::DIRTY);
        let mut blocked = false;
        let mut result = Self::write_out(conn, &mut blocked);
        // Closing by our choice with everything written: say goodbye at the
        // layer level too (TLS close_notify), then write that.
        if result.is_ok() && !blocked && conn.has(flag::CLOSING) && conn.queued() == 0 {
            let ours = !matches!(
                conn.close_reason.as_deref(),
                Some(
                    CloseReason::PeerClosed
                        | CloseReason::Io(_)
                        | CloseReason::TlsHandshake(_)
                        | CloseReason::Tls(_)
                )
            );
            if ours {
                conn.layer.close_notify();
                result = result.and_then(|n| Ok(n + Self::write_out(conn, &mut blocked)?));
            }
        }
        let failed = match result {
            Ok(n) => {
                Counters::bump(&core.counters().bytes_out, n as u64);
                None
            }
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            if !conn.has(flag::CLOSING) {
                let reason = match e.kind() {
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                        CloseReason::PeerClosed
                    }
                    _ => CloseReason::Io(std::sync::Arc::new(e)),
                };
                conn.close_reason = Some(Box::new(reason));
                core.set_closing(conn);
            }
            drop(slab);
            self.finalize(key);
            return;
        }
        if let Some(q) = conn.queue.take_if(|q| q.is_empty()) {
            core.pool.borrow_mut().put_write(q);
        }
        if blocked != conn.has(flag::WRITABLE) {
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) = core
                .registry
                .reregister(&mut conn.stream, Token(key), interest)
            {
                log::warn!("conn {}: reregister failed: {e}", core.id_of(key, conn));
            }
            if blocked {
                conn.set(flag::WRITABLE);
            } else {
                conn.unset(flag::WRITABLE);
            }
        }
        if conn.has(flag::PAUSED) && conn.queued() <= config.write_high_water / 2 {
            conn.unset(flag::PAUSED);
            // Edge-triggered: data that arrived while paused raises no new
            // event, so read it next turn.
            if !conn.has(flag::PENDING_READ) {
                conn.set(flag::PENDING_READ);
                self.pending.push(key);
            }
        }
        if conn.has(flag::CLOSING) {
            let done =
                conn.queued() == 0 && !conn.layer.wants_write() && !conn.layer.awaits_peer_close();
            if done {
                drop(slab);
                self.finalize(key);
            } else if !conn.has(flag::LINGER) {
                conn.set(flag::LINGER);
                let generation = conn.generation;
                drop(slab);
                self.schedule(
                    key,
                    generation,
                    config.close_linger.as_millis() as u64,
                    TimerKind::Linger,
                );
            }
        }
    }

    /// Write the queue through the connection's layer until done or the
    /// socket is full. Returns bytes written.
    fn write_out(conn: &mut Conn, blocked: &mut bool) -> io::Result<usize> {
        let mut socket = &conn.stream;
        conn.layer
            .flush(conn.queue.as_deref_mut(), &mut socket, blocked)
    }

    /// Remove a connection for good: deregister, close the socket, count,
    /// log, run `on_close`.
    fn finalize(&mut self, key: usize) {
        let core = self.core.clone();
        let Some(mut conn) = core.conns.borrow_mut().try_remove(key) else {
            return;
        };
        let _ = core.registry.deregister(&mut conn.stream);
        let mut pool = core.pool.borrow_mut();
        if let Some(p) = conn.partial.take() {
            pool.put_read(p);
        }
        if let Some(q) = conn.queue.take() {
            pool.put_write(q);
        }
        drop(pool);
        let reason = conn.close_reason.take().map_or(CloseReason::Local, |b| *b);
        let id = core.id_of(key, &conn);
        if reason.is_failure() {
            log::warn!("conn {id} ({}) closed: {reason}", conn.peer);
        } else {
            log::debug!("conn {id} ({}) closed: {reason}", conn.peer);
        }
        let counters = core.counters();
        Counters::add(&counters.closed[reason.kind_index()], 1);
        counters
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        core.server
            .live
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let Conn {
            stream,
            peer,
            mut data,
            ..
        } = conn;
        if !matches!(reason, CloseReason::PeerClosed | CloseReason::Io(_)) {
            self.discard_input(&stream);
        }
        drop(stream);
        if let Some(hook) = &core.server.on_close {
            let mut session = Session {
                core: &core,
                id,
                peer,
                data: &mut data,
            };
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| hook(&mut session, &reason))) {
                log::error!(
                    "conn {id} ({peer}): on_close panicked: {}",
                    panic_message(&*panic)
                );
            }
        }
    }

    /// Read and drop what the peer sent that nobody will handle, so that
    /// closing sends FIN rather than RST: with unread input the kernel
    /// resets the connection and the peer may lose our last reply (say, the
    /// "401" before an auth middleware closes). Bounded: at most four reads.
    fn discard_input(&mut self, stream: &mio::net::TcpStream) {
        let mut reader = stream;
        for _ in 0..4 {
            match reader.read(&mut self.scratch) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }

    /// Shutdown deadline (or a broken poll): close everything now.
    fn close_all_now(&mut self) -> usize {
        let keys: Vec<(usize, bool)> = {
            let mut slab = self.core.conns.borrow_mut();
            slab.iter_mut()
                .map(|(k, c)| {
                    if c.close_reason.is_none() {
                        c.close_reason = Some(Box::new(CloseReason::Shutdown));
                    }
                    (k, c.queued() > 0)
                })
                .collect()
        };
        let unflushed = keys.iter().filter(|(_, u)| *u).count();
        self.count_unflushed(unflushed);
        for (key, _) in keys {
            self.finalize(key);
        }
        self.unflushed_in_shutdown
    }

    /// Connections closed with data still queued: counted in stats, and
    /// reported by `shutdown` when it happens while shutting down.
    fn count_unflushed(&mut self, n: usize) {
        Counters::add(&self.core.counters().unflushed_closes, n as u64);
        if self.shutdown.is_some() {
            self.unflushed_in_shutdown += n;
        }
    }
}

/// A frame found by [`Packer::peek`]: its body lies in the loop's batch.
#[derive(Debug, Clone)]
pub(crate) struct FrameRef {
    id: u32,
    seq: u32,
    body: std::ops::Range<usize>,
}

/// The `peek` path: note every whole frame at the front of `buf` in
/// `frames` and split them off into `batch` (one split for all of them).
/// `None` when the packer does not peek; else whether the connection must
/// close (`Err` says why; the frames before the bad one are kept) and how
/// many bytes the incomplete frame after them still misses (0 if unknown).
pub(crate) fn split_frames<P: Packer + ?Sized>(
    packer: &P,
    buf: &mut BytesMut,
    frames: &mut Vec<FrameRef>,
    batch: &mut Bytes,
    peer: SocketAddr,
) -> Option<(Result<(), CloseReason>, usize)> {
    let mut offset = 0;
    let mut result = Ok(());
    let mut missing = 0;
    loop {
        let rest = &buf[offset..];
        match catch_unwind(AssertUnwindSafe(|| packer.peek(rest))) {
            Ok(Ok(Peek::Frame { id, seq, body, len })) => {
                if let Err(e) = check_frame(&body, len, rest.len()) {
                    result = Err(CloseReason::Protocol(e));
                    break;
                }
                frames.push(FrameRef {
                    id,
                    seq,
                    body: offset + body.start..offset + body.end,
                });
                offset += len;
            }
            Ok(Ok(Peek::Incomplete { frame_len })) => {
                match frame_len {
                    Some(f) if f <= rest.len() => {
                        result = Err(CloseReason::Protocol(crate::PackError::Malformed(format!(
                            "packer's peek reported an incomplete frame of {f} bytes \
                             with {} bytes at hand",
                            rest.len()
                        ))));
                    }
                    Some(f) => missing = f - rest.len(),
                    None => {}
                }
                break;
            }
            Ok(Ok(Peek::Unsupported)) if offset == 0 => return None,
            Ok(Ok(Peek::Unsupported)) => {
                result = Err(CloseReason::Protocol(crate::PackError::Malformed(
                    "packer's peek answered Unsupported after a frame".into(),
                )));
                break;
            }
            Ok(Err(e)) => {
                result = Err(CloseReason::Protocol(e));
                break;
            }
            Err(panic) => {
                log::error!(
                    "{peer}: packer panicked in peek: {}",
                    panic_message(&*panic)
                );
                result = Err(CloseReason::HandlerPanic);
                break;
            }
        }
    }
    if offset > 0 {
        *batch = buf.split_to(offset).freeze();
    }
    Some((result, missing))
}

/// The `decode` path: decode every whole frame at the front of `buf` into
/// `msgs`. `Err` says why the connection must close (the messages before
/// the bad frame are kept).
fn decode_messages(
    packer: &dyn Packer,
    buf: &mut BytesMut,
    msgs: &mut Vec<Message>,
    peer: SocketAddr,
) -> Result<(), CloseReason> {
    loop {
        let before = buf.len();
        match catch_unwind(AssertUnwindSafe(|| packer.decode(buf))) {
            Ok(Ok(Some(m))) if buf.len() < before => msgs.push(m),
            Ok(Ok(Some(_))) => {
                return Err(CloseReason::Protocol(crate::PackError::Malformed(
                    "packer returned a message without consuming input".into(),
                )))
            }
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(CloseReason::Protocol(e)),
            Err(panic) => {
                log::error!(
                    "{peer}: packer panicked in decode: {}",
                    panic_message(&*panic)
                );
                return Err(CloseReason::HandlerPanic);
            }
        }
    }
}

/// Read at most `max` bytes from `stream` into the spare capacity of
/// `buf`. Returns the result and how many bytes were asked for.
fn read_into_spare(
    stream: &mio::net::TcpStream,
    buf: &mut BytesMut,
    max: usize,
) -> (io::Result<usize>, usize) {
    let spare = buf.spare_capacity_mut();
    let asked = spare.len().min(max);
    let n = match socket2::SockRef::from(stream).recv(&mut spare[..asked]) {
        Ok(n) => n,
        Err(e) => return (Err(e), asked),
    };
    // SAFETY: `recv` initialised the first `n` bytes of the spare capacity
    // and returns at most its length. No safe API reads from a socket into
    // uninitialised memory on stable Rust (`BorrowedBuf` is unstable), and
    // zeroing the capacity first would cost a pass over up to a whole
    // frame for every read.
    unsafe { buf.set_len(buf.len() + n) };
    (Ok(n), asked)
}

/// Run each message through its route, in order, catching panics: first
/// `msgs`, then `frames` (whose bodies lie in `batch`). Stops at the first
/// message after the connection starts closing.
pub(crate) fn dispatch(
    core: &LoopCore,
    key: usize,
    generation: u32,
    msgs: &mut Vec<Message>,
    frames: &mut Vec<FrameRef>,
    batch: &Bytes,
) {
    let open = {
        let mut slab = core.conns.borrow_mut();
        match slab.get_mut(key) {
            Some(c) if c.generation == generation && !c.has(flag::CLOSING) => {
                Some((std::mem::take(&mut c.data), c.peer, core.id_of(key, c)))
            }
            _ => None,
        }
    };
    let Some((mut data, peer, id)) = open else {
        msgs.clear();
        frames.clear();
        return;
    };
    // One `Context` for the whole batch: per message only its id, seq and
    // body change.
    let empty = Bytes::new();
    let mut ctx = Context {
        session: Session {
            core,
            id,
            peer,
            data: &mut data,
        },
        id: 0,
        seq: 0,
        body: &[],
        source: &empty,
        values: None,
    };
    let messages = msgs.iter().map(|m| (m.id, m.seq, &m.body[..], &m.body));
    let found = frames
        .iter()
        .map(|f| (f.id, f.seq, &batch[f.body.clone()], batch));
    let mut closings = core.closings();
    for (msg_id, seq, body, source) in messages.chain(found) {
        // Something started closing since the last look: is it this one?
        if core.closings() != closings {
            closings = core.closings();
            let closing = core
                .conns
                .borrow()
                .get(key)
                .is_none_or(|c| c.has(flag::CLOSING));
            if closing {
                break;
            }
        }
        ctx.id = msg_id;
        ctx.seq = seq;
        ctx.body = body;
        ctx.source = source;
        ctx.values = None;
        handle(&mut ctx, generation);
    }
    drop(ctx);
    msgs.clear();
    frames.clear();
    if let Some(c) = core.conns.borrow_mut().get_mut(key) {
        if c.generation == generation {
            c.data = data;
        }
    }
}

/// Run the message in `ctx` through its route.
#[inline]
fn handle(ctx: &mut Context<'_>, generation: u32) {
    let core = ctx.session.core;
    let (key, msg_id) = (ctx.session.id.key as usize, ctx.id);
    let server = &*core.server;
    let Some(route) = server.router.get(msg_id) else {
        Counters::add(&core.counters().unknown_ids, 1);
        match server.config.unknown_id {
            UnknownIdPolicy::Drop => {
                let (id, peer) = (ctx.session.id, ctx.session.peer);
                log::debug!("conn {id} ({peer}): no route for message id {msg_id}; dropped")
            }
            UnknownIdPolicy::Close => core.close(key, generation, CloseReason::UnknownId(msg_id)),
        }
        return;
    };
    let result = catch_unwind(AssertUnwindSafe(|| route.call(ctx)));
    let (id, peer) = (&ctx.session.id, &ctx.session.peer);
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            Counters::add(&core.counters().handler_errors, 1);
            log::warn!("conn {id} ({peer}): handler for message {msg_id} failed: {e}");
        }
        Err(panic) => {
            log::error!(
                "conn {id} ({peer}): handler for message {msg_id} panicked: {}",
                panic_message(&*panic)
            );
            core.close(key, generation, CloseReason::HandlerPanic);
        }
    }
}

/// How long a loop may poll without sleeping before it sleeps: `busy_poll`,
/// never past the wait's `timeout` (a due timer), and only after a wait
/// that returned events (`active`): a turn that found nothing to do, only
/// timers to fire, goes back to sleep at once, so an idle server with many
/// timers does not spin between them.
fn spin_budget(busy_poll: Duration, timeout: Option<Duration>, active: bool) -> Duration {
    if !active {
        return Duration::ZERO;
    }
    timeout.map_or(busy_poll, |t| t.min(busy_poll))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spin_stops_at_the_next_timer_and_only_follows_events() {
        let ms = Duration::from_millis;
        // Off stays off.
        assert_eq!(spin_budget(Duration::ZERO, None, true), Duration::ZERO);
        // After events: the whole spin, unless a timer is due sooner.
        assert_eq!(spin_budget(ms(10), None, true), ms(10));
        assert_eq!(spin_budget(ms(10), Some(ms(30)), true), ms(10));
        assert_eq!(spin_budget(ms(10), Some(ms(1)), true), ms(1));
        assert_eq!(
            spin_budget(ms(10), Some(Duration::ZERO), true),
            Duration::ZERO
        );
        // After a wait that found nothing (only timers fired): no spin.
        assert_eq!(spin_budget(ms(10), None, false), Duration::ZERO);
        assert_eq!(spin_budget(ms(10), Some(ms(1)), false), Duration::ZERO);
    }
}
