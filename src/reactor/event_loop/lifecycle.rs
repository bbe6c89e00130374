//! A connection's birth and death on the loop: adopt a socket and run
//! `on_open`; remove a connection for good and run `on_close`; shutdown.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::timers::TimerKind;
use super::EventLoop;
use crate::buf::LazyQueue;
use crate::conn::flag;
use crate::conn::Conn;
use crate::dispatch::with_session;
use crate::error::{CloseReason, Ending};
use crate::id::ConnId;
use crate::stats::Counters;
use crate::transport::Protocol;

impl EventLoop {
    /// Adopt an accepted socket: register it, schedule its heartbeat and
    /// handshake deadline, run `on_open`.
    pub(super) fn open(&mut self, mut stream: TcpStream, peer: SocketAddr, protocol: Protocol) {
        let core = self.core.clone();
        let (runtime, table) = (&core.runtime, &core.table);
        let generation = table.next_generation();
        let key = table.conns.borrow().vacant_key();
        let adopted = runtime
            .wire
            .layer(protocol)
            .map_err(|r| r.to_string())
            .and_then(|layer| {
                self.poll
                    .registry()
                    .register(&mut stream, Token(key), Interest::READABLE)
                    .map(|()| layer)
                    .map_err(|e| e.to_string())
            });
        let layer = match adopted {
            Ok(layer) => layer,
            Err(e) => {
                log::warn!("loop {}: cannot adopt {peer}: {e}", table.index());
                runtime.live.fetch_sub(1, Ordering::Relaxed);
                table.counters().connections.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        };
        let conn = Conn::new(Some(stream), peer, generation, self.timers.now32(), layer);
        let inserted = table.insert(conn);
        debug_assert_eq!(inserted, key);
        Counters::add(&table.counters().accepted, 1);
        self.start_heartbeat(key, generation);
        if runtime.wire.has_handshake(protocol) {
            let after = runtime.config.handshake_timeout;
            self.schedule(key, generation, after, TimerKind::Handshake);
        }
        // The acceptor stops before loops are told to shut down, so this
        // only guards the contract: a socket adopted while shutting down is
        // opened (on_open runs) and closed at once.
        if self.shutdown.is_some() {
            table.close(key, generation, CloseReason::Shutdown);
        }
        self.run_on_open(key, generation);
    }

    /// Run `on_open`; a connection it refuses is closed with its reason.
    pub(super) fn run_on_open(&mut self, key: usize, generation: u32) {
        let (core, app) = (&self.core, &self.app);
        match with_session(core, key, generation, |s| app.hooks.open(s)) {
            Some(Err(reason)) => core.table.close(key, generation, reason),
            Some(Ok(())) => {
                let id = core.table.id(key, generation);
                if !core.table.is_closing(id) {
                    app.timers.start_cron(core, id);
                }
            }
            None => {}
        }
    }

    pub(super) fn begin_shutdown(&mut self, deadline: Instant) {
        self.shutdown = Some(deadline);
        let open: Vec<(usize, u32)> = {
            let slab = self.core.table.conns.borrow();
            slab.iter().map(|(k, c)| (k, c.generation)).collect()
        };
        for (key, generation) in open {
            self.core
                .table
                .close(key, generation, CloseReason::Shutdown);
        }
    }

    /// [`finalize`](Self::finalize) a closing connection that leaves data
    /// unsent: one close counted in `unflushed_closes` (before `on_close`
    /// runs), except for a link kept for its reconnect, which counts only
    /// if it drops what it cannot keep (`keep_for_reconnect`), never twice.
    pub(super) fn finalize_unsent(&mut self, key: usize) {
        self.finalize_counting(key, true);
    }

    /// Remove a connection for good: deregister, close the socket, count,
    /// log, run `on_close`.
    pub(super) fn finalize(&mut self, key: usize) {
        self.finalize_counting(key, false);
    }

    fn finalize_counting(&mut self, key: usize, unsent: bool) {
        let core = self.core.clone();
        let table = &core.table;
        let watch = (table.dials.borrow())
            .get(&key)
            .and_then(|d| d.spec.watch.clone());
        let outbound = {
            let slab = table.conns.borrow();
            let Some(conn) = slab.get(key) else {
                return;
            };
            conn.has(flag::OUTBOUND).then(|| {
                let reason = conn.close_reason.as_deref().cloned();
                (
                    reason.unwrap_or(CloseReason::Local),
                    conn.layer.is_handshaking(),
                )
            })
        };
        if let Some((reason, handshaking)) = outbound {
            // Over TLS a connect attempt can fail in its handshake too.
            if handshaking && !matches!(reason, CloseReason::Local | CloseReason::Shutdown) {
                Counters::add(&table.counters().connect_failures, 1);
            }
            if self.keep_for_reconnect(key, &reason) {
                return;
            }
        }
        if unsent {
            self.count_unflushed(1);
        }
        let Some(mut conn) = table.remove(key) else {
            return;
        };
        // After the removal: a callback that retries finds it gone.
        table.fail_requests(key, conn.generation);
        self.udp_session_gone(key, &conn);
        if let Some(stream) = conn.stream.as_mut() {
            let _ = self.poll.registry().deregister(stream);
        }
        if let Some(p) = conn.partial.take() {
            table.pool.borrow_mut().put_read(p);
        }
        LazyQueue {
            queue: &mut conn.queue,
            pool: &table.pool,
            track: false,
        }
        .discard();
        let reason = conn.close_reason.take().map_or(CloseReason::Local, |b| *b);
        let id = table.id_of(key, &conn);
        // Its timers end with it (their callbacks dropped outside the
        // borrow: they are user code).
        let timers = core.timers.borrow_mut().drop_conn(id);
        drop(timers);
        if reason.is_failure() {
            log::warn!("conn {id} ({}) closed: {reason}", conn.peer);
        } else {
            log::debug!("conn {id} ({}) closed: {reason}", conn.peer);
        }
        let counters = table.counters();
        Counters::add(&counters.closed[reason.kind_index()], 1);
        counters.connections.fetch_sub(1, Ordering::Relaxed);
        core.runtime.live.fetch_sub(1, Ordering::Relaxed);
        let out_at_worker = conn.has(flag::EXEC);
        let Conn {
            stream,
            peer,
            profile,
            mut data,
            traffic,
            ..
        } = conn;
        if let (Some(stream), false) = (&stream, reason.ending() == Ending::Gone) {
            self.discard_input(stream);
        }
        drop(stream);
        table.debug_assert_unborrowed("on_close");
        if out_at_worker {
            // Its data is at a worker: `on_close` runs when it is back.
            self.app.close_when_back(&core, id, reason, peer, profile);
        } else {
            let lane = core.lanes.borrow_mut().remove(id);
            // `traffic()` answers for it while its `on_close` runs.
            let _last = crate::conn::metered::closing(id, traffic);
            self.app
                .closing(&core, (id, peer, profile), &mut data, lane, &reason);
        }
        if let Some(watch) = watch {
            (watch.0)(false);
        }
    }

    /// Read and drop what the peer sent that nobody will handle, so that
    /// closing sends FIN rather than RST: with unread input the kernel
    /// resets the connection and the peer may lose our last reply (say, the
    /// "401" before an auth middleware closes). Bounded: at most four reads.
    fn discard_input(&mut self, stream: &TcpStream) {
        let mut reader = stream;
        for _ in 0..4 {
            match reader.read(self.reader.scratch()) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
    }

    /// Shutdown deadline (or a broken poll): close everything now, dialed
    /// connections with a reconnect policy too (the loop exits).
    pub(super) fn close_all_now(&mut self) -> usize {
        self.exiting = true;
        let table = &self.core.table;
        let keys: Vec<(usize, Option<ConnId>)> = {
            let mut slab = table.conns.borrow_mut();
            slab.iter_mut()
                .map(|(k, c)| {
                    if c.close_reason.is_none() {
                        c.close_reason = Some(Box::new(CloseReason::Shutdown));
                    }
                    (k, c.drops_unsent().then(|| table.id_of(k, c)))
                })
                .collect()
        };
        let unflushed: Vec<ConnId> = keys.iter().filter_map(|(_, u)| *u).collect();
        self.count_unflushed(unflushed.len());
        for (key, _) in keys {
            self.finalize(key);
        }
        // A connection whose handler still runs is not closed cleanly
        // either (its `on_close` runs without its data): counted once.
        let abandoned = self.app.abandon_lanes(&self.core);
        if self.shutdown.is_some() {
            let more = abandoned.iter().filter(|id| !unflushed.contains(id));
            self.unflushed_in_shutdown += more.count();
        }
        self.unflushed_in_shutdown
    }

    /// Connections closed with data still queued: counted in stats, and
    /// reported by `shutdown` when it happens while shutting down.
    pub(super) fn count_unflushed(&mut self, n: usize) {
        Counters::add(&self.core.table.counters().unflushed_closes, n as u64);
        if self.shutdown.is_some() {
            self.unflushed_in_shutdown += n;
        }
    }
}
