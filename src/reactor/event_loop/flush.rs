//! The write side of a turn: write what connections queued, register for
//! WRITABLE only while the kernel buffer is full, resume reading below half
//! the high-water mark, and finish closes once everything is written.

use std::time::Duration;

use mio::{Interest, Token};

use super::timers::TimerKind;
use super::EventLoop;
use crate::buf::{Flushed, LazyQueue};
use crate::conn::table::ConnTable;
use crate::conn::{flag, Conn};
use crate::dispatch::exec;
use crate::error::{CloseReason, Ending};
use crate::stats::Counters;

impl EventLoop {
    pub(super) fn flush_dirty(&mut self) {
        let core = self.core.clone();
        let dirty = &core.table.dirty;
        let mut keys = std::mem::take(&mut *dirty.borrow_mut());
        // Flushing may close connections whose on_close sends to others:
        // keep going until nothing is dirty.
        while !keys.is_empty() {
            for key in keys.drain(..) {
                self.flush(key);
            }
            std::mem::swap(&mut keys, &mut *dirty.borrow_mut());
        }
        *dirty.borrow_mut() = keys;
    }

    /// If the connection is dirty: write what it has queued; adjust
    /// interest; resume reading once below half the high-water mark; finish
    /// a close once flushed. Called right after a connection's read (its
    /// replies need not wait for every other connection's read; replies to
    /// one read batch still leave in one write) and for the dirty list at
    /// the end of the turn, where connections flushed early are skipped.
    pub(super) fn flush(&mut self, key: usize) {
        let core = self.core.clone();
        let config = &core.runtime.config;
        let table = &core.table;
        let mut slab = table.conns.borrow_mut();
        let Some(conn) = slab.get_mut(key).filter(|c| c.has(flag::DIRTY)) else {
            return;
        };
        conn.unset(flag::DIRTY);
        let mut result = match conn.layer.is_udp() {
            true => Ok(self.udp_write_out(key, conn)),
            false => write_out(conn),
        };
        // Closing by our choice with everything written: say goodbye at the
        // layer level too (TLS close_notify), then write that.
        let written_all = result.as_ref().is_ok_and(|f| !f.blocked);
        if written_all && conn.has(flag::CLOSING) && conn.queued() == 0 {
            let goodbye = conn.layer.owes_goodbye()
                || conn
                    .close_reason
                    .as_deref()
                    .is_some_and(|r| r.ending().can_say_goodbye());
            if goodbye {
                conn.layer.close_notify();
                result = result.and_then(|f| Ok(f.then(write_out(conn)?)));
            }
        }
        let flushed = match result {
            Ok(f) => f,
            Err(e) => {
                if !conn.has(flag::CLOSING) {
                    conn.close_reason = Some(Box::new(CloseReason::from_io(e)));
                    table.set_closing(conn);
                }
                drop(slab);
                self.finalize(key);
                return;
            }
        };
        Counters::bump(&table.counters().bytes_out, flushed.written as u64);
        conn.traffic.wrote(flushed.written);
        LazyQueue {
            queue: &mut conn.queue,
            pool: &table.pool,
            track: false,
        }
        .release_if_empty();
        // A connecting socket keeps its WRITABLE interest whatever the
        // flush says (it wrote nothing): its connect completes with it.
        if flushed.blocked != conn.has(flag::WRITABLE) && !conn.has(flag::CONNECTING) {
            let interest = if flushed.blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let registry = self.poll.registry();
            if let Some(stream) = conn.stream.as_mut() {
                if let Err(e) = registry.reregister(stream, Token(key), interest) {
                    log::warn!("conn {}: reregister failed: {e}", table.id_of(key, conn));
                }
            }
            if flushed.blocked {
                conn.set(flag::WRITABLE);
            } else {
                conn.unset(flag::WRITABLE);
            }
        }
        // Paused until half drained; at once if it came to wait for
        // replies while paused (its first request).
        let drained = conn.queued() <= config.write_high_water / 2;
        let resume = drained || !ConnTable::may_pause(conn);
        if conn.has(flag::PAUSED)
            && resume
            && !exec::holds_reads(&self.core, table.id_of(key, conn))
        {
            conn.unset(flag::PAUSED);
            if conn.has(flag::FRAME_TIMER) {
                // Its frame window had a pause in it: not the peer's doing.
                conn.set(flag::FRAME_RESTART);
            }
            // Edge-triggered: data that arrived while paused raises no new
            // event, so read it next turn.
            if !conn.has(flag::PENDING_READ) {
                conn.set(flag::PENDING_READ);
                self.pending.push(key);
            }
        }
        if conn.has(flag::CLOSING) {
            // A connection that never opened has nothing to linger for
            // (what it said of the handshake itself was written above,
            // if it could be).
            let unopened = conn.unopened();
            let flushed_all = !conn.unsent() && !conn.layer.awaits_peer_close();
            // A peer taken for dead (`Ending::Unresponsive`) is not waited
            // for: what the socket took above went out (goodbyes included
            // if they fit), the rest is dropped as when the linger runs
            // out. Else a vanished peer holds `on_close`, and a link's
            // reconnect, for the whole `close_linger`.
            let given_up = conn
                .close_reason
                .as_deref()
                .is_some_and(|r| r.ending() == Ending::Unresponsive);
            if unopened || flushed_all || given_up {
                let unsent = conn.drops_unsent();
                drop(slab);
                if unsent {
                    self.finalize_unsent(key);
                } else {
                    self.finalize(key);
                }
            } else if !conn.has(flag::LINGER) {
                conn.set(flag::LINGER);
                let generation = conn.generation;
                drop(slab);
                let linger: Duration = config.close_linger;
                self.schedule(key, generation, linger, TimerKind::Linger);
            }
        }
    }
}

/// Write the queue through the connection's layers until done or the
/// socket is full. A connection without a socket (a dialed one that is
/// down), or still connecting, writes nothing yet.
fn write_out(conn: &mut Conn) -> std::io::Result<Flushed> {
    match &conn.stream {
        Some(stream) if !conn.has(flag::CONNECTING) => {
            let mut socket = stream;
            conn.layer.flush(conn.queue.as_deref_mut(), &mut socket)
        }
        _ => Ok(Flushed::default()),
    }
}
