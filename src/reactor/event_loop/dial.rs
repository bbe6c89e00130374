//! Connections the loop dials: a non-blocking connect (completion on
//! WRITABLE, `SO_ERROR`), its timeout on the wheel, and, with a reconnect
//! policy, the way back after a loss: the connection keeps its slot, id,
//! user data and handles; it drops its socket, fails its waiting requests,
//! and connects again after the policy's backoff.

use mio::{Interest, Token};

use super::timers::TimerKind;
use super::EventLoop;
use crate::buf::LazyQueue;
use crate::conn::dial::{Resolve, Step};
use crate::conn::flag;
use crate::dispatch::exec;
use crate::error::CloseReason;
use crate::stats::Counters;
use crate::transport::Layer;

impl EventLoop {
    /// Start connecting the dialed connections reserved since last time.
    pub(super) fn start_dials(&mut self) {
        for id in self.core.table.take_dials() {
            if let Some(key) = self.core.table.down_dial(id) {
                self.start_connect(key);
            }
        }
    }

    /// A connect attempt: a new socket, registered for WRITABLE (connected
    /// or failed) and READABLE, with the attempt's deadline. A host dial
    /// resolves its name first (`start_resolve`), then comes back here
    /// for each address in turn.
    pub(super) fn start_connect(&mut self, key: usize) {
        let core = self.core.clone();
        let table = &core.table;
        let Some((step, timeout, udp)) = (table.dials.borrow_mut())
            .get_mut(&key)
            .map(|d| (d.next_step(), d.spec.connect_timeout, d.spec.udp))
        else {
            return;
        };
        let addr = match step {
            Step::Connect(addr) => addr,
            Step::Wait => return,
            Step::Resolve => return self.start_resolve(key),
            Step::Fail(why) => {
                let generation = table.conns.borrow().get(key).map(|c| c.generation);
                if let Some(generation) = generation {
                    self.connect_failed(key, generation, CloseReason::ResolveFailed(why));
                }
                return;
            }
        };
        if udp {
            return self.attach_udp(key, addr);
        }
        let profile = table.conns.borrow().get(key).map_or(0, |c| c.profile);
        let options = core.runtime.config.socket_of(profile);
        let connected = crate::sys::connect(addr, &options).and_then(|mut stream| {
            let interest = Interest::READABLE | Interest::WRITABLE;
            self.poll
                .registry()
                .register(&mut stream, Token(key), interest)?;
            Ok(stream)
        });
        let mut slab = table.conns.borrow_mut();
        let Some(conn) = slab.get_mut(key) else {
            return;
        };
        let generation = conn.generation;
        match connected {
            Ok(stream) => {
                conn.stream = Some(stream);
                conn.peer = addr;
                conn.set(flag::CONNECTING | flag::WRITABLE);
                drop(slab);
                self.schedule(key, generation, timeout, TimerKind::Connect);
            }
            Err(e) => {
                drop(slab);
                self.connect_failed(key, generation, CloseReason::ConnectFailed(e.into()));
            }
        }
    }

    /// A writable (or error) event. A dialed connection's connect
    /// completes (or fails) with one: handled here, returns true. Any
    /// other connection is marked for flushing if `writable` (one look at
    /// the slab), and the event goes on as an ordinary one.
    pub(super) fn writable_event(&mut self, key: usize, writable: bool) -> bool {
        {
            let table = &self.core.table;
            let mut slab = table.conns.borrow_mut();
            let Some(conn) = slab.get_mut(key) else {
                return false;
            };
            if !conn.has(flag::CONNECTING) {
                if writable {
                    table.mark_dirty(key, conn);
                }
                return false;
            }
        }
        self.connect_event(key)
    }

    /// An event on a connecting socket: connected, failed, or not yet.
    /// Returns false if the connection is not connecting (the event is an
    /// ordinary one).
    fn connect_event(&mut self, key: usize) -> bool {
        let core = self.core.clone();
        let table = &core.table;
        let mut slab = table.conns.borrow_mut();
        let Some(conn) = slab.get_mut(key).filter(|c| c.has(flag::CONNECTING)) else {
            return false;
        };
        let generation = conn.generation;
        let Some(stream) = conn.stream.as_ref() else {
            return false;
        };
        let outcome = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(false),
                Err(e) => Err(e),
            },
        };
        drop(slab);
        match outcome {
            Ok(true) => self.connected(key, generation),
            Ok(false) => {}
            Err(e) => {
                let reason = CloseReason::ConnectFailed(e.into());
                self.connect_failed(key, generation, reason);
            }
        }
        true
    }

    /// The TCP connect completed: socket options, then the layers of this
    /// attempt. Without TLS the connection is open at once; over TLS its
    /// ClientHello goes out now (the client speaks first), the handshake
    /// deadline starts, and it opens when the handshake completes (`read`).
    /// What was queued meanwhile is flushed once it is open.
    fn connected(&mut self, key: usize, generation: u32) {
        let core = self.core.clone();
        let table = &core.table;
        let config = &core.runtime.config;
        let Some(layer) = table
            .dials
            .borrow()
            .get(&key)
            .map(|d| Layer::dialed(d.spec.tls.as_ref(), d.spec.ws.as_ref().map(|w| &w.0)))
        else {
            return;
        };
        let handshaking = {
            let mut slab = table.conns.borrow_mut();
            let Some(conn) = slab.get_mut(key) else {
                return;
            };
            conn.unset(flag::CONNECTING);
            conn.last_active = self.timers.now32();
            if let Some(stream) = &conn.stream {
                crate::sys::tune(stream, conn.peer, &config.socket_of(conn.profile));
            }
            table.mark_dirty(key, conn);
            match layer {
                Ok(layer) => conn.layer = layer,
                Err(reason) => {
                    drop(slab);
                    table.close(key, generation, reason);
                    return;
                }
            }
            conn.layer.is_handshaking()
        };
        if handshaking {
            let after = config.handshake_timeout;
            self.schedule(key, generation, after, TimerKind::Handshake);
        } else {
            self.opened(key, generation);
        }
    }

    /// A dialed connection is open: connected and, over TLS, done with its
    /// handshake. The backoff starts over; the heartbeat starts (each
    /// attempt has its own); then `on_open` (the first time) or
    /// `on_reconnect`.
    pub(super) fn opened(&mut self, key: usize, generation: u32) {
        let core = self.core.clone();
        let table = &core.table;
        let (first, attempt, watch) = {
            let mut dials = table.dials.borrow_mut();
            let Some(dial) = dials.get_mut(&key) else {
                return;
            };
            let attempt = dial.attempt;
            dial.attempt = 0;
            dial.addrs.clear();
            let first = !dial.opened;
            dial.opened = true;
            (first, attempt, dial.spec.watch.clone())
        };
        Counters::add(&table.counters().connects, 1);
        if let Some(watch) = watch {
            (watch.0)(true);
        }
        self.start_heartbeat(key, generation);
        self.start_health(key, generation);
        if first {
            self.run_on_open(key, generation);
        } else {
            let app = self.app.clone();
            let id = table.id(key, generation);
            exec::on_loop(&core, id, move |s| app.hooks.reconnected(s, attempt));
        }
    }

    /// A connect attempt failed (refused, unreachable, timed out): the
    /// same as losing the connection; but a host dial with addresses left
    /// to try goes on with the next one.
    pub(super) fn connect_failed(&mut self, key: usize, generation: u32, reason: CloseReason) {
        if self.next_address(key, generation, &reason) {
            return;
        }
        Counters::add(&self.core.table.counters().connect_failures, 1);
        {
            let mut slab = self.core.table.conns.borrow_mut();
            let Some(conn) = slab.get_mut(key).filter(|c| c.generation == generation) else {
                return;
            };
            if conn.close_reason.is_none() {
                conn.close_reason = Some(Box::new(reason));
            }
            self.core.table.set_closing(conn);
        }
        self.finalize(key);
    }

    /// The connect deadline passed (of this attempt: `fire_timers` drops
    /// an earlier attempt's).
    pub(super) fn connect_expired(&mut self, key: usize, generation: u32) {
        if self.resolve_expired(key, generation) {
            return;
        }
        let late = {
            let slab = self.core.table.conns.borrow();
            slab.get(key).is_some_and(|c| {
                c.generation == generation && c.has(flag::CONNECTING) && !c.has(flag::CLOSING)
            })
        };
        if late {
            self.connect_failed(key, generation, CloseReason::ConnectTimeout);
        }
    }

    /// A dialed connection is being removed for `reason`: with a reconnect
    /// policy that allows another attempt, keep it (down, no socket) and
    /// schedule the attempt instead; returns true then.
    pub(super) fn keep_for_reconnect(&mut self, key: usize, reason: &CloseReason) -> bool {
        if matches!(
            reason,
            CloseReason::Local
                | CloseReason::Shutdown
                | CloseReason::Rejected(_)
                | CloseReason::HandlerPanic
        ) || self.shutdown.is_some()
            || self.exiting
        {
            return false;
        }
        let core = self.core.clone();
        let table = &core.table;
        let (delay, attempt) = {
            let mut dials = table.dials.borrow_mut();
            let Some(dial) = dials.get_mut(&key) else {
                return false;
            };
            let Some(policy) = dial.spec.reconnect else {
                return false;
            };
            if policy.max_attempts.is_some_and(|max| dial.attempt >= max) {
                return false;
            }
            dial.attempt += 1;
            dial.addrs.clear();
            dial.resolve = Resolve::Idle;
            let spread = self.jitter.next();
            (policy.delay(dial.attempt, spread), dial.attempt)
        };
        let dial_ws =
            (table.dials.borrow().get(&key)).and_then(|d| d.spec.ws.as_ref().map(|w| w.0.clone()));
        let (generation, out) = {
            let mut slab = table.conns.borrow_mut();
            let Some(conn) = slab.get_mut(key) else {
                return false;
            };
            if let Some(mut stream) = conn.stream.take() {
                let _ = self.poll.registry().deregister(&mut stream);
            }
            // What never started waits for the next socket, in order, with
            // what is sent from now on (a failed connect wrote nothing).
            // Dropped: a frame cut in the middle (its rest would be garbage
            // there), requests and replies (their requests fail below, or
            // died with the peer's session), and TLS records not written.
            let dropped = conn.queue.as_mut().map_or(0, |q| q.keep_unstarted());
            if dropped > 0 || conn.layer.wants_write() {
                Counters::add(&table.counters().unflushed_closes, 1);
            }
            LazyQueue {
                queue: &mut conn.queue,
                pool: &table.pool,
                track: false,
            }
            .release_if_empty();
            // The layers go first: what they held (a TLS record cut off by
            // the loss) is freed with them and must not stay counted.
            conn.layer = Layer::down(dial_ws.as_ref());
            table.release_partial(conn);
            conn.close_reason = None;
            // `EXEC`: a worker may hold its data across the loss.
            let keep = flag::OUTBOUND
                | flag::AWAITING
                | flag::SEND_WARNED
                | flag::BODY_WARNED
                | flag::EXEC;
            conn.flags &= keep;
            (conn.generation, conn.has(flag::EXEC))
        };
        table.fail_requests(key, generation);
        let id = table.id(key, generation);
        // The lost session's messages not yet handled go with it (as on a
        // close; a link closed for its backlog starts the next one empty).
        drop(core.lanes.borrow_mut().new_session(id, out));
        if let CloseReason::TlsHandshake(_) = reason {
            // A refused certificate or name does not fix itself: say so
            // louder than a refused connect.
            log::warn!("conn {id}: {reason}; reconnecting in {delay:?} (attempt {attempt})");
        } else {
            log::debug!(
                "conn {id}: lost ({reason}); reconnecting in {delay:?} (attempt {attempt})"
            );
        }
        self.timers_back(id);
        let (app, reason) = (self.app.clone(), reason.clone());
        exec::on_loop(&core, id, move |s| {
            app.hooks.disconnected(s, &reason, attempt, delay)
        });
        self.schedule(key, generation, delay, TimerKind::Reconnect);
        true
    }

    /// A reconnect's backoff is over: connect again (unless closed).
    pub(super) fn reconnect_due(&mut self, key: usize, generation: u32) {
        let table = &self.core.table;
        if let Some(key) = table.down_dial(table.id(key, generation)) {
            self.start_connect(key);
        }
    }
}
