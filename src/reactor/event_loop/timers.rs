//! The loop's timers: the clock, the hashed timer wheel, and what each
//! timer checks when it fires (heartbeat, close linger, handshake
//! deadline). The wheel's next deadline is the poll timeout, so an idle
//! loop sleeps and a due timer is never late by a whole interval.

use std::time::{Duration, Instant};

use super::EventLoop;
use crate::config::{Heartbeat, SERVER_PROFILE};
use crate::conn::{flag, Conn};
use crate::error::{CloseReason, Error};
use crate::stats::Counters;

mod clock;
pub(super) use clock::Timers;

/// What a timer checks when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TimerKind {
    /// Heartbeat: kick, ping or reschedule.
    Idle,
    /// A closing connection's flush deadline.
    Linger,
    /// The handshake deadline.
    Handshake,
    /// The deadline of the frame in progress.
    Frame,
    /// A dialed connection's connect deadline.
    Connect,
    /// A dialed connection's backoff is over.
    Reconnect,
    /// The earliest request deadline (or tombstone end) of a connection.
    Request,
    /// A dialed connection's next health check (`Dial::health_check`).
    Health,
    /// An application timer: `key` is its slot in the loop's
    /// `UserTimers`, `generation` its serial.
    User,
}

/// A scheduled check of one connection.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timer {
    key: u32,
    generation: u32,
    kind: TimerKind,
    /// A dialed connection's connect attempt when the timer was set
    /// (`DialState::tries`, truncated; 0 on accepted connections). The
    /// attempt belongs to the timer, not to a kind: a timer of an earlier
    /// attempt is stale and never fires (`EventLoop::fire_timers`). It
    /// fits in `kind`'s padding: a `Timer` is still 16 bytes.
    attempt: u16,
    /// `Request`: the serial the connection's request timer was armed
    /// with (free room: the wheel stores a `u64` tick beside each timer).
    mark: u32,
}

// One heartbeat timer per connection lives on the wheel: keep it small.
const _: () = assert!(std::mem::size_of::<Timer>() == 16);

impl EventLoop {
    /// Set a timer of `kind` on a connection, `after` from now.
    pub(super) fn schedule(
        &mut self,
        key: usize,
        generation: u32,
        after: Duration,
        kind: TimerKind,
    ) {
        self.schedule_marked(key, generation, after, kind, 0);
    }

    /// As [`schedule`](Self::schedule), carrying `mark` (see [`Timer`]).
    fn schedule_marked(
        &mut self,
        key: usize,
        generation: u32,
        after: Duration,
        kind: TimerKind,
        mark: u32,
    ) {
        let timer = Timer {
            key: key as u32,
            generation,
            kind,
            attempt: self.attempt(key),
            mark,
        };
        self.timers.schedule(timer, after);
    }

    /// A dialed connection's current connect attempt (0 for an accepted
    /// one: only dialed connections have a `DialState`).
    fn attempt(&self, key: usize) -> u16 {
        let dials = self.core.table.dials.borrow();
        dials.get(&key).map_or(0, |d| d.tries as u16)
    }

    /// A timer of a connection that is gone is stale, whatever its slot
    /// holds now: the slot's next occupant (a dial's try counts start
    /// over, so its attempt may match) is another connection. And a
    /// dialed connection keeps its generation from one connect attempt
    /// to the next, so a timer set during an earlier attempt (a heartbeat,
    /// a linger, a frame or handshake deadline of a socket since lost)
    /// must not act on the current one. Request timers are the exception:
    /// they belong to the requests (whose tombstones outlive the
    /// connection), and `conn::requests` checks their generation itself.
    fn is_stale(&self, t: &Timer) -> bool {
        if t.kind == TimerKind::Request || Self::is_user(t.kind) {
            return false;
        }
        let key = t.key as usize;
        let current = self
            .core
            .table
            .conns
            .borrow()
            .get(key)
            .map(|c| c.generation);
        current != Some(t.generation)
            || (self.core.table.dials.borrow())
                .get(&key)
                .is_some_and(|d| d.tries as u16 != t.attempt)
    }

    pub(super) fn fire_timers(&mut self) {
        let mut due = self.timers.take_due();
        for t in due.drain(..) {
            if self.is_stale(&t) {
                continue;
            }
            match t.kind {
                TimerKind::Idle => self.heartbeat(t),
                TimerKind::Linger => self.linger_expired(t),
                TimerKind::Handshake => self.handshake_expired(t),
                TimerKind::Frame => self.frame_check(t),
                TimerKind::Connect => self.connect_expired(t.key as usize, t.generation),
                TimerKind::Reconnect => self.reconnect_due(t.key as usize, t.generation),
                TimerKind::Request => self.request_expired(t),
                TimerKind::Health => self.health_due(t.key as usize, t.generation),
                TimerKind::User => self.user_timer_due(t.key as usize, t.generation),
            }
        }
        self.timers.restore(due);
    }

    fn linger_expired(&mut self, t: Timer) {
        let key = t.key as usize;
        let closing = self
            .core
            .table
            .conns
            .borrow()
            .get(key)
            .is_some_and(|c| c.generation == t.generation && c.has(flag::CLOSING));
        if closing {
            log::debug!(
                "conn {}: close linger expired with data unsent",
                self.core.table.id(key, t.generation)
            );
            self.finalize_unsent(key);
        }
    }

    /// After a read of `n` bytes: while a unit (a packer frame, a
    /// WebSocket frame or fragmented message, a TLS record) is unfinished,
    /// a timer checks every `frame_timeout` that the connection received
    /// at least `frame_min_rate` bytes a second during the window
    /// (`frame_check`). Progress is `Conn::window`, a count of the bytes
    /// received in the window, whatever frames they completed: a client
    /// streaming whole frames whose reads end mid-frame is making
    /// progress, however different the partial frames at two instants.
    /// The first window starts with the unit's first byte.
    pub(super) fn track_frame(&mut self, key: usize, conn: &mut Conn, in_unit: bool, n: usize) {
        if !in_unit {
            conn.unset(flag::IN_FRAME);
            return;
        }
        if conn.has(flag::IN_FRAME) {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            conn.window = conn.window.saturating_add(n);
            return;
        }
        // A unit begins: a fresh window.
        conn.set(flag::IN_FRAME);
        conn.window = 0;
        if conn.has(flag::FRAME_TIMER) {
            // The timer of an earlier unit's window is still pending: it
            // starts this one's window afresh instead of judging it.
            conn.set(flag::FRAME_RESTART);
        } else {
            conn.set(flag::FRAME_TIMER);
            let window = self.core.runtime.config.frame_timeout;
            self.schedule(key, conn.generation, window, TimerKind::Frame);
        }
    }

    /// A frame window ended: if the connection is still inside a unit and
    /// received fewer than `frame_min_rate` bytes a second during the
    /// window, close it; else watch the next window. A window that began
    /// late (a new unit after the timer was set) or during which the
    /// server stopped reading the connection (backpressure: the peer is
    /// not to blame) is not judged: a fresh one starts.
    fn frame_check(&mut self, t: Timer) {
        let config = &self.core.runtime.config;
        let (window, rate) = (config.frame_timeout, config.frame_min_rate);
        let key = t.key as usize;
        let advanced = {
            let mut slab = self.core.table.conns.borrow_mut();
            let Some(c) = slab.get_mut(key).filter(|c| c.generation == t.generation) else {
                return;
            };
            c.unset(flag::FRAME_TIMER);
            if c.has(flag::CLOSING) || !c.has(flag::IN_FRAME) {
                c.unset(flag::FRAME_RESTART);
                return;
            }
            let needed = u64::from(rate)
                .saturating_mul(window.as_millis().min(u128::from(u64::MAX)) as u64)
                / 1000;
            let fresh = c.has(flag::FRAME_RESTART | flag::PAUSED);
            let advanced = fresh || u64::from(c.window) >= needed.max(1);
            if advanced {
                c.unset(flag::FRAME_RESTART);
                c.set(flag::FRAME_TIMER);
                c.window = 0;
            }
            advanced
        };
        if advanced {
            self.schedule(key, t.generation, window, TimerKind::Frame);
        } else {
            self.core
                .table
                .close(key, t.generation, CloseReason::FrameTimeout);
        }
    }

    /// Arm the request timers asked for since the last turn (at most one
    /// per connection at a time: see `conn::requests`).
    pub(super) fn arm_request_timers(&mut self) {
        let deadlines = self.core.table.requests.borrow_mut().take_deadlines();
        if deadlines.is_empty() {
            return;
        }
        for d in deadlines {
            let kind = TimerKind::Request;
            self.timers
                .schedule_at(d.key, d.generation, d.at, kind, d.serial);
        }
    }

    /// A connection's request timer: fail the requests that timed out
    /// (each leaves a tombstone), forget old tombstones, arm the next.
    fn request_expired(&mut self, t: Timer) {
        let table = &self.core.table;
        let sinks = table.requests.borrow_mut().expire_due(
            t.key as usize,
            t.generation,
            t.mark,
            Instant::now(),
        );
        Counters::add(&table.counters().request_timeouts, sinks.len() as u64);
        let timed_out = !sinks.is_empty();
        for sink in sinks {
            table.deliver(sink, Err(Error::Timeout));
        }
        if timed_out {
            self.timeouts_in_a_row(t.key as usize, t.generation);
        }
        self.arm_request_timers();
    }

    /// The handshake deadline passed: close the connection if it is still
    /// handshaking.
    fn handshake_expired(&mut self, t: Timer) {
        let key = t.key as usize;
        let table = &self.core.table;
        let late = table.conns.borrow().get(key).is_some_and(|c| {
            c.generation == t.generation && !c.has(flag::CLOSING) && c.layer.is_handshaking()
        });
        if late {
            table.close(key, t.generation, CloseReason::HandshakeTimeout);
        }
    }

    /// The heartbeat of the connection at `key` (its profile's, or the
    /// server's), if it has one.
    fn heartbeat_of(&self, key: usize) -> Option<Heartbeat> {
        let (slab, config) = (self.core.table.conns.borrow(), &self.core.runtime.config);
        let c = slab.get(key)?;
        config.heartbeat_for(c.profile, c.layer.is_udp())
    }

    /// The first heartbeat check of a connection that just opened (accepted,
    /// or dialed and connected: again after every reconnect).
    pub(super) fn start_heartbeat(&mut self, key: usize, generation: u32) {
        if let Some(hb) = self.heartbeat_of(key) {
            let first = hb.ping_after.unwrap_or(hb.idle_timeout);
            self.schedule(key, generation, first, TimerKind::Idle);
        }
    }

    /// A heartbeat check: kick, ping, or reschedule.
    fn heartbeat(&mut self, t: Timer) {
        let key = t.key as usize;
        let (idle, pinged, hb, own, ws) = {
            let slab = self.core.table.conns.borrow();
            match slab.get(key) {
                // A dialed connection's heartbeat starts on every open
                // (`start_heartbeat`); one that is down or connecting has none.
                Some(c)
                    if c.generation == t.generation
                        && !c.has(flag::CLOSING | flag::CONNECTING)
                        && c.is_connected() =>
                {
                    let config = &self.core.runtime.config;
                    let Some(hb) = config.heartbeat_for(c.profile, c.layer.is_udp()) else {
                        return;
                    };
                    (
                        u64::from(self.timers.now32().wrapping_sub(c.last_active)),
                        c.has(flag::PINGED),
                        hb,
                        c.profile == SERVER_PROFILE,
                        // hotpot's envelope is spoken in message mode only
                        // (packer mode carries sequence numbers).
                        c.layer.protocol() == crate::transport::Protocol::WebSocket
                            && !self.core.table.wire().ws().is_some_and(|w| w.carries_seq()),
                    )
                }
                _ => return,
            }
        };
        let idle_timeout = hb.idle_timeout.as_millis() as u64;
        let table = &self.core.table;
        if idle >= idle_timeout {
            log::debug!(
                "conn {}: idle for {idle} ms; closing",
                table.id(key, t.generation)
            );
            table.close(key, t.generation, CloseReason::IdleTimeout);
            return;
        }
        let mut next = idle_timeout - idle;
        if let (Some(ping_after), false) = (hb.ping_after, pinged) {
            let ping_after = ping_after.as_millis() as u64;
            if idle >= ping_after {
                if let Some(c) = table.conns.borrow_mut().get_mut(key) {
                    c.set(flag::PINGED);
                }
                // Under `keepalived` the server's WebSocket connections get
                // the envelope's ping, its other connections none (only the
                // idle close); a dial profile pings as it was told.
                let envelope = self.core.runtime.config.ping_body.as_ref();
                match envelope.filter(|_| own) {
                    Some(body) if ws => table.ping(key, t.generation, hb.ping_id, Some(body)),
                    Some(_) => {}
                    None => table.ping(key, t.generation, hb.ping_id, None),
                }
                // If the peer answers, its next ping is due `ping_after`
                // after the answer: check again by then at the latest.
                next = next.min(ping_after);
            } else {
                next = ping_after - idle;
            }
        }
        let next = Duration::from_millis(next);
        self.schedule(key, t.generation, next, TimerKind::Idle);
    }
}
