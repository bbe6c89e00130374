//! One event-loop thread: poll → read, decode, dispatch → inbox → timers →
//! flush, until shutdown. Its jobs live in child modules: [`read`] (read,
//! decode, dispatch, the WebSocket upgrade), [`flush`] (write out, interest,
//! resume reading, finish closes), [`timers`] (heartbeat, close linger,
//! handshake deadline) and [`lifecycle`] (open, shutdown, remove).
//!
//! mio is edge-triggered: every readable connection is read until
//! `WouldBlock`, except that one connection gets at most `read_budget` bytes
//! per turn; the rest is read next turn (its key waits in `pending`, and the
//! poll does not sleep while anything is pending).

mod dial;
#[cfg(test)]
mod exits;
mod flush;
mod health;
mod lifecycle;
mod read;
mod resolve;
mod timers;
mod udp;
mod user_timers;

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use crossbeam_channel::Receiver;
use mio::{Events, Poll, Token};

use crate::buf::Payload;
use crate::codec::reader::FrameReader;
use crate::config::Jitter;
use crate::conn::flag;
use crate::conn::table::ConnTable;
use crate::dispatch::App;
use crate::error::{panic_message, CloseReason};
use crate::runtime::{start_request_on as start_on, Command, CurrentLoop, LoopCore, Runtime};
use timers::Timers;
pub(crate) use udp::{UdpSockets, MAX_UDP_SOCKETS};

/// Most inbox commands one turn handles (see `drain_inbox`).
const INBOX_BUDGET: usize = 4096;

/// The token of each loop's waker.
pub(crate) const WAKER: Token = Token(usize::MAX);

pub(crate) struct EventLoop {
    core: Rc<LoopCore>,
    app: Arc<App>,
    poll: Poll,
    inbox: Receiver<Command>,
    timers: Timers,
    reader: FrameReader,
    /// TLS plaintext on its way to the WebSocket layer (`wss://`).
    plain: BytesMut,
    /// Keys to read again next turn (their read budget ran out).
    pending: Vec<usize>,
    shutdown: Option<Instant>,
    /// The loop is closing everything and exiting (the shutdown deadline,
    /// or a broken poll): no connection is kept to reconnect.
    exiting: bool,
    /// Connections dropped with unsent data since shutdown began.
    unflushed_in_shutdown: usize,
    /// Spreads reconnect delays.
    jitter: Jitter,
    /// The loop's UDP sockets and their sessions' peers.
    udp: UdpSockets,
    /// The last drain left commands in the inbox (its budget is what was
    /// there when it began): drained again next turn, without a wake-up.
    inbox_left: bool,
}

impl EventLoop {
    /// Build loop `index` on the thread that runs it (its connections'
    /// user data never leaves that thread).
    pub(crate) fn new(
        index: usize,
        runtime: Arc<Runtime>,
        app: Arc<App>,
        poll: Poll,
        inbox: Receiver<Command>,
        udp: UdpSockets,
    ) -> Self {
        let config = &runtime.config;
        let reader = FrameReader::new(config.read_buffer);
        let timers = Timers::new(config);
        let shared = &runtime.loops[index];
        let table = ConnTable::new(
            runtime.tag,
            index,
            runtime.wire.clone(),
            config,
            shared.counters.clone(),
            shared.roster.clone(),
        );
        EventLoop {
            core: Rc::new(LoopCore {
                runtime,
                table,
                state: app.state.clone(),
                timers: Default::default(),
                lanes: Default::default(),
            }),
            app,
            poll,
            inbox,
            timers,
            reader,
            plain: BytesMut::new(),
            pending: Vec::new(),
            shutdown: None,
            exiting: false,
            unflushed_in_shutdown: 0,
            jitter: Jitter::default(),
            udp,
            inbox_left: false,
        }
    }

    /// Run until shutdown; returns how many connections were closed with
    /// unflushed data when the shutdown deadline passed.
    pub(crate) fn run(mut self) -> usize {
        let _current = CurrentLoop::enter(self.core.clone());
        if self.core.table.index() == 0 {
            let logic =
                (self.app.exec.single.as_ref()).filter(|_| self.core.runtime.config.logic_thread);
            self.app.timers.start_ticks(&self.core, logic);
        }
        self.turns()
    }

    fn turns(&mut self) -> usize {
        let mut events = Events::with_capacity(1024);
        // Whether the last wait returned events: only then may the next
        // one busy-poll (a turn that only fired timers does not spin).
        let mut active = false;
        loop {
            self.timers.update_clock();
            let timeout = self.poll_timeout();
            let spin = spin_budget(self.core.runtime.config.busy_poll, timeout, active);
            if let Err(e) = self.wait(&mut events, timeout, spin) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Not recoverable (EBADF/EINVAL on the poll fd): close all.
                log::error!(
                    "loop {}: poll failed: {e}; closing its connections",
                    self.core.table.index()
                );
                return self.close_all_now();
            }
            self.timers.update_clock();
            active = !events.is_empty();
            for event in events.iter() {
                if let Some(i) = udp::socket_of(event.token()) {
                    self.udp_event(i, event);
                    continue;
                }
                match event.token() {
                    WAKER => self.drain_inbox(),
                    Token(key) => {
                        if (event.is_writable() || event.is_error())
                            && self.writable_event(key, event.is_writable())
                        {
                            self.flush(key);
                            continue;
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
                if let Some(c) = self.core.table.conns.borrow_mut().get_mut(key) {
                    c.unset(flag::PENDING_READ);
                }
                self.read(key, false);
                self.flush(key);
            }
            self.udp_pending();
            if self.inbox_left {
                self.drain_inbox();
            }
            self.fire_timers();
            self.start_dials();
            self.arm_request_timers();
            self.arm_user_timers();
            self.app.pump_deferred(&self.core);
            self.flush_dirty();
            if let Some(deadline) = self.shutdown {
                // Connections closed while a worker held their data wait
                // for it (their `on_close` needs it).
                let waiting = self.core.lanes.borrow().awaiting_data();
                if self.core.table.conns.borrow().is_empty() && waiting == 0 {
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

    fn poll_timeout(&self) -> Option<Duration> {
        // Reads to finish, or what the end of the last turn left to do:
        // user code run there (`on_close`, a reply callback failed by a
        // close) may have dialed or sent a request, whose connect or
        // timer starts on the next turn, not whenever an event comes.
        if !self.pending.is_empty()
            || self.inbox_left
            || self.udp.has_pending()
            || self.core.table.has_deferred()
            || self.core.timers.borrow().has_to_arm()
            || self.core.has_cancels()
            || !self.core.lanes.borrow().to_pump.is_empty()
        {
            return Some(Duration::ZERO);
        }
        let timer = self.timers.until_next();
        let shutdown = self
            .shutdown
            .map(|d| d.saturating_duration_since(Instant::now()));
        match (timer, shutdown) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn drain_inbox(&mut self) {
        let core = self.core.clone();
        let shared = core.shared();
        shared.notified.store(false, Ordering::SeqCst);
        // At most what is there now, and at most INBOX_BUDGET: commands
        // that keep coming wait for the next turn (which does not sleep),
        // so threads that keep the inbox full never keep the loop from
        // its sockets.
        let budget = self.inbox.len().clamp(1, INBOX_BUDGET);
        self.inbox_left = false;
        for _ in 0..budget {
            let Ok(cmd) = self.inbox.try_recv() else {
                return;
            };
            match cmd {
                Command::Register(stream, peer, protocol) => self.open(stream, peer, protocol),
                Command::Send { to, id, seq, body } => {
                    shared.inflight.fetch_sub(body.len(), Ordering::Relaxed);
                    // The packer is user code: a panic closes that
                    // connection only, as in a handler.
                    let sent = catch_unwind(AssertUnwindSafe(|| {
                        let body = Payload::Shared(body);
                        core.table.send(to, id, seq, body)
                    }));
                    match sent {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => log::debug!("conn {to}: cross-thread send dropped: {e}"),
                        Err(panic) => {
                            let why = panic_message(&*panic);
                            log::error!("conn {to}: packer panicked encoding a message: {why}");
                            let reason = CloseReason::HandlerPanic;
                            core.table.close_with(to, reason, None);
                        }
                    }
                }
                Command::Broadcast(encoded, except) => {
                    shared.inflight.fetch_sub(encoded.len(), Ordering::Relaxed);
                    core.table.broadcast(&encoded, except);
                }
                Command::Run { bytes, job } => {
                    shared.inflight.fetch_sub(bytes, Ordering::Relaxed);
                    // Jobs catch the panics of the user code they run; this
                    // guards the loop against a bug in a job itself.
                    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| job(&core))) {
                        let why = panic_message(&*panic);
                        log::error!("loop {}: a job panicked: {why}", core.table.index());
                    }
                }
                Command::SendTo(ids, encoded) => {
                    shared.inflight.fetch_sub(encoded.len(), Ordering::Relaxed);
                    core.table.send_encoded(&ids, &encoded);
                }
                Command::Close(id, goodbye) => {
                    core.table
                        .close_with(id, CloseReason::Local, goodbye.as_deref())
                }
                Command::Shutdown(deadline) => self.begin_shutdown(deadline),
                Command::Outcome(outcome) => self.app.outcome(&core, *outcome),
                Command::Dial(spec, reply) => {
                    let _ = reply.send(core.reserve_dial(spec));
                }
                Command::Request {
                    to,
                    id,
                    body,
                    timeout,
                    sink,
                } => {
                    shared.inflight.fetch_sub(body.len(), Ordering::Relaxed);
                    let body = Payload::Shared(body);
                    let _ = start_on(&core, to, id, body, timeout, sink, true);
                }
            }
        }
        self.inbox_left = !self.inbox.is_empty();
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
