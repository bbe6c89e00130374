//! The read side of a turn: read a connection (within its budget), pass
//! the bytes through its layers and the frame reader, dispatch the
//! messages, and answer a WebSocket upgrade.

use std::io::{self, Read};

use super::EventLoop;
use crate::buf::LazyQueue;
use crate::codec::reader::Landing;
use crate::conn::{flag, Conn};
use crate::dispatch::with_session;
use crate::error::CloseReason;
use crate::stats::Counters;
use crate::sys;
use crate::transport::{ws, Sink};

/// What one read's bytes asked of the loop besides their messages.
#[derive(Default)]
struct Decoded {
    /// Why the connection must close, once its messages are handled.
    failed: Option<CloseReason>,
    /// A WebSocket upgrade request for the application to decide on.
    upgrade: Option<Box<ws::WsRequest>>,
    /// A dialed connection finished its TLS handshake: it is open.
    opened: bool,
    /// A WebSocket dial's upgrade was answered: the frames that came
    /// behind the answer are read once it is open.
    reread: bool,
}

impl EventLoop {
    /// Read from a connection until `WouldBlock` (or, with
    /// `short_read_drains`, a read shorter than asked) or until its budget
    /// is spent, dispatching every complete message in order.
    pub(super) fn read(&mut self, key: usize, short_read_drains: bool) {
        let core = self.core.clone();
        let table = &core.table;
        let mut budget = core.runtime.config.read_budget;
        loop {
            let mut slab = table.conns.borrow_mut();
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
            if conn.has(flag::CONNECTING) {
                return;
            }
            let Some(stream) = conn.stream.as_ref() else {
                return;
            };
            let landing = self
                .reader
                .landing(&mut conn.partial, conn.layer.is_plain());
            let (asked, direct) = (landing.asked(), landing.is_direct());
            let read = match landing {
                Landing::Spare { buf, max } => sys::read_into_spare(stream, buf, max),
                Landing::Scratch(buf) => {
                    let mut socket = stream;
                    socket.read(buf)
                }
            };
            let n = match read {
                Ok(n) if n > 0 => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // End of file or a socket error while waiting for the
                // peer's close frame: the handshake is over.
                _ if closing => {
                    conn.layer.peer_gone();
                    table.mark_dirty(key, conn);
                    return;
                }
                Ok(_) => {
                    drop(slab);
                    table.close(key, generation, CloseReason::PeerClosed);
                    return;
                }
                Err(e) => {
                    drop(slab);
                    table.close(key, generation, CloseReason::from_io(e));
                    return;
                }
            };
            Counters::bump(&table.counters().bytes_in, n as u64);
            conn.traffic.read(n);
            conn.last_active = self.timers.now32();
            conn.unset(flag::PINGED);
            let before = conn.queued();
            let mut decoded = self.decode(key, conn, n, direct);
            let in_unit = table.account_partial(conn);
            let answered = conn.queued().saturating_sub(before);
            table.check_layer_output(key, conn, answered);
            self.track_frame(key, conn, in_unit, n);
            drop(slab);
            self.check_partial_memory();
            if decoded.opened {
                // Before its first messages, as for an accepted connection.
                self.opened(key, generation);
            }
            if decoded.reread && decoded.failed.is_none() {
                decoded.failed = self.reread(key, generation);
            }
            if let Some(upgrade) = decoded.upgrade.take() {
                decoded.failed = decoded
                    .failed
                    .or_else(|| self.upgrade(key, generation, *upgrade));
            }
            let batch = self.reader.take_batch();
            if batch.len() > 0 {
                Counters::bump(&table.counters().messages_in, batch.len() as u64);
                table.count_decoded(key, generation, batch.len());
                self.app.dispatch(&core, key, generation, &batch);
            }
            self.reader.finish(batch, &table.pool);
            if let Some(reason) = decoded.failed {
                table.close(key, generation, reason);
                return;
            }
            if short_read_drains && n < asked {
                return;
            }
            budget = budget.saturating_sub(n);
            if budget == 0 {
                if let Some(conn) = table.conns.borrow_mut().get_mut(key) {
                    if !conn.has(flag::PENDING_READ) {
                        conn.set(flag::PENDING_READ);
                        self.pending.push(key);
                    }
                }
                return;
            }
        }
    }

    /// Over the loop's budget for partial frames: close the connections
    /// holding the most until it is kept again. One closing already (it
    /// waits for the peer's close frame) is dropped at once.
    fn check_partial_memory(&mut self) {
        let core = self.core.clone();
        let table = &core.table;
        let cap = core.runtime.config.max_partial_bytes;
        while table.partial_held() > cap {
            let Some((key, generation, closing)) = table.largest_partial() else {
                return;
            };
            log::warn!(
                "loop {}: {} bytes in partial frames (limit {cap}); closing the largest holder",
                table.index(),
                table.partial_held()
            );
            if closing {
                let unsent = table
                    .conns
                    .borrow()
                    .get(key)
                    .is_some_and(Conn::drops_unsent);
                if unsent {
                    self.finalize_unsent(key);
                } else {
                    self.finalize(key);
                }
            } else {
                table.close(key, generation, CloseReason::MemoryLimit);
            }
        }
    }

    /// Turn the `n` bytes just read (`direct`: straight into the stream
    /// buffer) into messages in the reader's batch: through the layers
    /// (TLS decrypts and may answer; WebSocket unframes into messages or
    /// packer bytes and may answer pings and close frames), then the
    /// packer.
    fn decode(&mut self, key: usize, conn: &mut Conn, n: usize, direct: bool) -> Decoded {
        let table = &self.core.table;
        let outbound = conn.has(flag::OUTBOUND);
        let packer = table.wire().packer(conn.profile);
        let Conn {
            partial,
            layer,
            queue,
            peer,
            data,
            ..
        } = conn;
        let mut decoded = Decoded::default();
        let mut wants_write = false;
        let plain = &mut self.plain;
        let result = self.reader.decode(
            packer,
            partial,
            &table.pool,
            n,
            direct,
            *peer,
            |input, stream, messages| {
                let mut sink = Sink {
                    stream,
                    messages,
                    out: LazyQueue {
                        queue,
                        pool: &table.pool,
                        track: outbound,
                    },
                    plain,
                };
                let incoming = layer.receive(input, &mut sink)?;
                wants_write = incoming.wants_write;
                decoded.upgrade = incoming.upgrade;
                // A dial opens when its handshakes are done: TLS's, then a
                // WebSocket dial's upgrade.
                let handshake_done = incoming.tls_info.is_some() || incoming.ws_response.is_some();
                if let Some(info) = incoming.tls_info {
                    data.insert(info);
                }
                if let Some(response) = incoming.ws_response {
                    data.insert(*response);
                    decoded.reread = true;
                }
                if handshake_done && !layer.is_handshaking() {
                    decoded.opened = outbound;
                }
                if incoming.peer_closed {
                    return Err(CloseReason::PeerClosed);
                }
                Ok(())
            },
        );
        if let Err(reason) = result {
            decoded.failed = Some(reason);
        }
        if wants_write || decoded.failed.is_some() || conn.has(flag::CLOSING) {
            // Handshake records, a TLS alert, a pong or close frame to send;
            // or a close handshake that may have just finished.
            table.mark_dirty(key, conn);
        }
        decoded
    }

    /// Decode what a layer kept back (the frames behind a WebSocket
    /// dial's upgrade answer), into the batch being read. Returns why the
    /// connection must close, if it must.
    fn reread(&mut self, key: usize, generation: u32) -> Option<CloseReason> {
        let core = self.core.clone();
        let table = &core.table;
        let mut slab = table.conns.borrow_mut();
        let conn = slab.get_mut(key).filter(|c| c.generation == generation)?;
        let failed = self.decode(key, conn, 0, false).failed;
        let in_unit = table.account_partial(conn);
        self.track_frame(key, conn, in_unit, 0);
        failed
    }

    /// A WebSocket upgrade request is complete: ask the application, answer
    /// the request, then decode what came with it. Returns why the
    /// connection must close, if it must.
    fn upgrade(
        &mut self,
        key: usize,
        generation: u32,
        request: ws::WsRequest,
    ) -> Option<CloseReason> {
        let core = self.core.clone();
        let table = &core.table;
        let app = &self.app;
        let (verdict, failed) =
            with_session(&core, key, generation, |s| app.hooks.upgrade(s, request))?;
        let mut slab = table.conns.borrow_mut();
        let conn = slab.get_mut(key).filter(|c| c.generation == generation)?;
        let out = LazyQueue {
            queue: &mut conn.queue,
            pool: &table.pool,
            track: false,
        };
        let answered = conn.layer.finish_upgrade(table.wire(), verdict, out);
        table.mark_dirty(key, conn);
        if failed.is_some() {
            return failed;
        }
        if let Err(reason) = answered {
            return Some(reason);
        }
        drop(slab);
        // Frames the client sent right behind its request.
        self.reread(key, generation)
    }
}
