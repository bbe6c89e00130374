//! Lifecycle and resource behaviour over real loopback sockets: heartbeat
//! kicks and pings, backpressure on peers that do not read, the connection
//! limit, graceful shutdown, handles that outlive their connection, and
//! `on_close` running exactly once however a connection ends.
//!
//! Every wait is on an event (hook channels, blocking reads with timeouts)
//! or a bounded `wait_until`; the few sleeps are load (a client's pacing)
//! or race generation, never synchronisation.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use netloom::{
    Builder, CloseReason, Config, ConnHandle, ConnId, Context, Error, Server, SlowPeerPolicy,
};

use crate::common::{echo, frame, wait_until, Client, TIMEOUT};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The loops keep time in whole milliseconds, so a deadline measured from
/// outside may come up to one millisecond early.
const CLOCK_GRAIN: Duration = Duration::from_millis(1);

/// Allowance for thread scheduling on a loaded machine (two cores, other
/// builds running) on top of a documented upper bound. The upper bounds
/// then catch a timer late by a second or more (a wheel that rounds up to
/// seconds, a shutdown that waits for the 5 s close linger), not finer
/// errors; the lower bounds stay exact.
const SLACK: Duration = Duration::from_secs(1);

/// Tests that allocate tens of MiB, or measure the process's RSS, hold this
/// so the measurement is not disturbed by the others.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One `on_close` call as the hook saw it.
#[derive(Debug, Clone)]
struct Closed {
    id: ConnId,
    reason: CloseReason,
    at: Instant,
}

/// Channels fed by `on_open` and `on_close`.
struct Hooks {
    opens: Receiver<(ConnId, SocketAddr)>,
    closes: Receiver<Closed>,
    /// Connections seen opening, by peer address.
    known: HashMap<SocketAddr, ConnId>,
    /// Close events received while waiting for another connection's.
    closed: Vec<Closed>,
}

fn with_hooks(builder: Builder) -> (Builder, Hooks) {
    let (open_tx, opens) = unbounded();
    let (close_tx, closes) = unbounded();
    let builder = builder
        .on_open(move |s| {
            let _ = open_tx.send((s.id(), s.peer_addr()));
        })
        .on_close(move |s, reason| {
            let _ = close_tx.send(Closed {
                id: s.id(),
                reason: reason.clone(),
                at: Instant::now(),
            });
        });
    let hooks = Hooks {
        opens,
        closes,
        known: HashMap::new(),
        closed: Vec::new(),
    };
    (builder, hooks)
}

impl Hooks {
    /// The id of the connection whose peer is `addr`, once `on_open` ran.
    fn id_of(&mut self, addr: SocketAddr) -> ConnId {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(id) = self.known.get(&addr) {
                return *id;
            }
            let (id, peer) = self
                .opens
                .recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("no on_open for {addr} within {TIMEOUT:?}"));
            self.known.insert(peer, id);
        }
    }

    fn opened(&mut self, client: &Client) -> ConnId {
        self.id_of(client.stream.local_addr().unwrap())
    }

    /// Wait for `on_close` of `id` (keeping other connections' events).
    fn close_of(&mut self, id: ConnId) -> Closed {
        if let Some(i) = self.closed.iter().position(|c| c.id == id) {
            return self.closed.remove(i);
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let c = self
                .closes
                .recv_deadline(deadline)
                .unwrap_or_else(|_| panic!("no on_close for {id} within {TIMEOUT:?}"));
            if c.id == id {
                return c;
            }
            self.closed.push(c);
        }
    }

    /// Every close event received so far (without waiting).
    fn closes_so_far(&mut self) -> Vec<Closed> {
        self.closed.extend(self.closes.try_iter());
        self.closed.clone()
    }
}

/// 1. A silent peer is closed with `IdleTimeout` between `idle_timeout` and
///    `idle_timeout + check_interval` after its last byte.
#[test]
fn heartbeat_kicks_idle_peer_within_bound() {
    let (check, idle) = (ms(50), ms(200));
    let (builder, mut hooks) = with_hooks(
        Server::builder()
            .event_loops(1)
            .heartbeat(check, idle)
            .route(1, echo),
    );
    let server = crate::common::start(builder);
    let mut client = Client::connect(server.local_addr());
    let id = hooks.opened(&client);

    // Talk for a while first, so that the last byte is well after the
    // check scheduled at open (the pacing is load, not synchronisation).
    for i in 0..4u32 {
        client.send(1, &i.to_le_bytes());
        assert_eq!(client.recv(), (1, i.to_le_bytes().to_vec()));
        thread::sleep(ms(40));
    }
    // Taken before the write: the server cannot see the byte earlier.
    let last_write = Instant::now();
    client.send(1, b"last words");
    assert_eq!(client.recv(), (1, b"last words".to_vec()));

    let closed = hooks.close_of(id);
    assert!(
        matches!(closed.reason, CloseReason::IdleTimeout),
        "closed for {} instead of idle timeout",
        closed.reason
    );
    let elapsed = closed.at.saturating_duration_since(last_write);
    assert!(
        elapsed + CLOCK_GRAIN >= idle,
        "kicked {elapsed:?} after the last byte, before the idle timeout {idle:?}"
    );
    assert!(
        elapsed <= idle + check + SLACK,
        "kicked only {elapsed:?} after the last byte (bound {:?} + slack)",
        idle + check
    );
    client.expect_closed();
    let stats = server.stats();
    assert_eq!(stats.closed_by(&CloseReason::IdleTimeout), 1, "{stats}");
    assert_eq!(stats.connections, 0, "{stats}");
    server.shutdown(TIMEOUT).unwrap();
}

/// 2. A peer that keeps talking is never kicked, while a silent one
///    connected at the same time is.
#[test]
fn heartbeat_keeps_active_peer() {
    let (builder, mut hooks) = with_hooks(
        Server::builder()
            .event_loops(1)
            .heartbeat(ms(50), ms(200))
            .route(1, echo),
    );
    let server = crate::common::start(builder);
    let mut active = Client::connect(server.local_addr());
    let idle = Client::connect(server.local_addr());
    let active_id = hooks.opened(&active);
    let idle_id = hooks.opened(&idle);

    let start = Instant::now();
    let mut i = 0u32;
    while start.elapsed() < ms(600) {
        active.send(1, &i.to_le_bytes());
        assert_eq!(active.recv(), (1, i.to_le_bytes().to_vec()));
        i += 1;
        // Pacing of the active peer: this is the load under test.
        thread::sleep(ms(50));
    }

    let kicked = hooks.close_of(idle_id);
    assert!(
        matches!(kicked.reason, CloseReason::IdleTimeout),
        "idle peer closed for {}",
        kicked.reason
    );
    let closes = hooks.closes_so_far();
    assert!(
        closes.iter().all(|c| c.id != active_id),
        "active peer was closed: {closes:?}"
    );
    active.send(1, b"still here");
    assert_eq!(active.recv(), (1, b"still here".to_vec()));
    let stats = server.stats();
    assert_eq!(stats.closed_by(&CloseReason::IdleTimeout), 1, "{stats}");
    assert_eq!(stats.closed_total(), 1, "{stats}");
    server.shutdown(TIMEOUT).unwrap();
}

/// 3. Ping-before-kick: a silent peer gets an empty message with the ping
///    id after `ping_after`; answering keeps it open, silence gets it
///    kicked at the idle timeout.
#[test]
fn heartbeat_pings_before_kicking() {
    const PING: u32 = 99;
    let (ping_after, idle) = (ms(150), ms(400));
    let (builder, mut hooks) = with_hooks(
        Server::builder()
            .event_loops(1)
            .heartbeat(ms(50), idle)
            .ping_before_kick(ping_after, PING)
            .route(1, echo),
    );
    let server = crate::common::start(builder);

    // Taken before connecting: the server's clock for a peer starts later.
    let answering_t0 = Instant::now();
    let mut answering = Client::connect(server.local_addr());
    let silent_t0 = Instant::now();
    let mut silent = Client::connect(server.local_addr());
    let answering_id = hooks.opened(&answering);
    let silent_id = hooks.opened(&silent);

    // The answering peer pongs every ping for well past the idle timeout.
    let answerer = thread::spawn(move || {
        let until = answering_t0 + idle + ms(500);
        let mut pings = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            answering.stream.set_read_timeout(Some(left)).unwrap();
            match answering.try_recv() {
                Ok((PING, body)) => {
                    assert!(body.is_empty(), "ping with a body: {body:?}");
                    pings.push(answering_t0.elapsed());
                    answering.send(PING, b"");
                }
                Ok(other) => panic!("unexpected frame {other:?}"),
                Err(e) if is_timeout(&e) => break,
                Err(e) => panic!("answering peer lost its connection: {e}"),
            }
        }
        // Still open and served.
        answering.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        answering.send(1, b"still here");
        loop {
            match answering.recv() {
                (PING, _) => answering.send(PING, b""),
                reply => {
                    assert_eq!(reply, (1, b"still here".to_vec()));
                    break;
                }
            }
        }
        (answering, pings)
    });

    let (id, body) = silent.recv();
    let pinged_after = silent_t0.elapsed();
    assert_eq!((id, body), (PING, Vec::new()), "expected an empty ping");
    assert!(
        pinged_after + CLOCK_GRAIN >= ping_after,
        "pinged after {pinged_after:?}, before {ping_after:?} of silence"
    );
    let kicked = hooks.close_of(silent_id);
    assert!(
        matches!(kicked.reason, CloseReason::IdleTimeout),
        "silent peer closed for {}",
        kicked.reason
    );
    let kicked_after = kicked.at.saturating_duration_since(silent_t0);

    assert!(
        kicked_after + CLOCK_GRAIN >= idle,
        "kicked after {kicked_after:?}, before the idle timeout {idle:?}"
    );
    assert!(
        kicked_after <= idle + ms(50) + SLACK,
        "kicked only after {kicked_after:?}"
    );
    silent.expect_closed();

    let (_answering, pings) = answerer.join().unwrap();
    assert!(!pings.is_empty(), "the answering peer was never pinged");
    assert!(
        pings[0] + CLOCK_GRAIN >= ping_after,
        "first ping after {:?}",
        pings[0]
    );
    let closes = hooks.closes_so_far();
    assert!(
        closes.iter().all(|c| c.id != answering_id),
        "the peer answering pings was closed: {closes:?}"
    );
    assert_eq!(
        server.stats().closed_by(&CloseReason::IdleTimeout),
        1,
        "{}",
        server.stats()
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// 3b. Ping-before-kick keeps its period for a peer that answers: after
///     each answer the next ping comes after `ping_after` of new silence.
#[test]
fn heartbeat_pings_again_after_each_answer() {
    const PING: u32 = 99;
    let (check, ping_after) = (ms(50), ms(150));
    // A long idle timeout makes a ping that waits for the old kick deadline
    // stand out from scheduling noise.
    let server = crate::common::start(
        Server::builder()
            .event_loops(1)
            .heartbeat(check, ms(1000))
            .ping_before_kick(ping_after, PING),
    );
    let mut silence_from = Instant::now();
    let mut client = Client::connect(server.local_addr());
    for round in 0..3 {
        assert_eq!(client.recv(), (PING, Vec::new()), "ping {round}");
        let silence = silence_from.elapsed();
        assert!(
            silence + CLOCK_GRAIN >= ping_after,
            "ping {round} after {silence:?} of silence"
        );
        assert!(
            silence <= ping_after + check + SLACK,
            "ping {round} only after {silence:?} of silence (ping_after {ping_after:?})"
        );
        silence_from = Instant::now();
        client.send(PING, b"");
    }
    assert_eq!(server.stats().closed_total(), 0);
    server.shutdown(TIMEOUT).unwrap();
}

const FLOOD_BODY: usize = 1024;
/// A handler that never sees `BufferFull` stops here (and the test fails).
const FLOOD_CAP: usize = 100_000;
const HIGH_WATER: usize = 64 << 10;

/// Body of the `n`th flood message: `n` then a pattern derived from it.
fn flood_body(n: usize) -> Vec<u8> {
    let mut body: Vec<u8> = (0..FLOOD_BODY).map(|j| (n + j) as u8).collect();
    body[..4].copy_from_slice(&(n as u32).to_le_bytes());
    body
}

/// Send 1 KiB messages (id 2) until a send fails; report how many were
/// queued and the error (`None`: `FLOOD_CAP` reached without an error).
fn flood(ctx: &mut Context<'_>, report: &Sender<(usize, Option<Error>)>) {
    let mut n = 0;
    let error = loop {
        if n == FLOOD_CAP {
            break None;
        }
        match ctx.send(2, flood_body(n)) {
            Ok(()) => n += 1,
            Err(e) => break Some(e),
        }
    };
    let _ = report.send((n, error));
}

fn flood_server(policy: SlowPeerPolicy) -> (Builder, Receiver<(usize, Option<Error>)>) {
    let (tx, rx) = unbounded();
    let builder = Server::builder()
        .event_loops(1)
        .write_high_water(HIGH_WATER)
        .slow_peer(policy)
        .route(1, move |ctx| flood(ctx, &tx))
        .route(3, echo);
    (builder, rx)
}

/// 4. A peer that never reads: sends fail with `BufferFull` at the
///    high-water mark, the loop keeps serving others, and once the peer
///    reads it gets everything queued and is served again.
#[test]
fn never_reading_peer_gets_backpressure() {
    let (builder, floods) = flood_server(SlowPeerPolicy::Backpressure);
    let server = crate::common::start(builder);
    let mut slow = Client::connect(server.local_addr());
    let mut other = Client::connect(server.local_addr());

    slow.send(1, b"flood me");
    let (queued, error) = floods.recv_timeout(TIMEOUT).expect("flood handler ran");
    assert!(
        matches!(error, Some(Error::BufferFull)),
        "after {queued} sends: expected BufferFull, got {error:?}"
    );
    // The mark is 64 KiB: about 63 messages of 1 KiB + 8 bytes of header.
    assert!(
        (HIGH_WATER / 2 / FLOOD_BODY..=2 * HIGH_WATER / FLOOD_BODY).contains(&queued),
        "{queued} messages of 1 KiB queued under a {HIGH_WATER}-byte high-water mark"
    );
    let stats = server.stats();
    assert!(stats.slow_peer_events >= 1, "{stats}");
    assert!(stats.send_errors >= 1, "{stats}");

    // Same loop, other peer: served normally meanwhile.
    for i in 0..10u32 {
        other.send(3, &i.to_le_bytes());
        assert_eq!(other.recv(), (3, i.to_le_bytes().to_vec()));
    }

    // The slow peer reads at last: everything queued arrives, in order.
    for n in 0..queued {
        let (id, body) = slow.recv();
        assert_eq!(id, 2, "message {n}");
        assert!(body == flood_body(n), "message {n} corrupted");
    }
    // And the server reads it again.
    slow.send(3, b"back");
    assert_eq!(slow.recv(), (3, b"back".to_vec()));
    server.shutdown(TIMEOUT).unwrap();
}

/// 4b. With `SlowPeerPolicy::Close` the slow peer is closed with
///     `CloseReason::SlowPeer` (the failing send returns `Closed`).
#[test]
fn never_reading_peer_is_closed_with_close_policy() {
    let (builder, floods) = flood_server(SlowPeerPolicy::Close);
    let (builder, mut hooks) = with_hooks(builder);
    let server = crate::common::start(builder);
    let mut slow = Client::connect(server.local_addr());
    let mut other = Client::connect(server.local_addr());
    let slow_id = hooks.opened(&slow);

    slow.send(1, b"flood me");
    let (queued, error) = floods.recv_timeout(TIMEOUT).expect("flood handler ran");
    assert!(
        matches!(error, Some(Error::Closed)),
        "after {queued} sends: expected Closed, got {error:?}"
    );
    assert!(queued <= 2 * HIGH_WATER / FLOOD_BODY, "{queued} queued");
    let closed = hooks.close_of(slow_id);
    assert!(
        matches!(closed.reason, CloseReason::SlowPeer),
        "closed for {}",
        closed.reason
    );
    // What was queued before the close may still arrive, in order; then EOF.
    let mut received = 0;
    loop {
        match slow.try_recv() {
            Ok((2, body)) => {
                assert!(body == flood_body(received), "message {received} corrupted");
                received += 1;
            }
            Ok(other) => panic!("unexpected frame {other:?}"),
            Err(e) if is_timeout(&e) => panic!("no EOF after a SlowPeer close"),
            Err(_) => break,
        }
    }
    assert!(received <= queued, "{received} of {queued}");
    other.send(3, b"fine");
    assert_eq!(other.recv(), (3, b"fine".to_vec()));
    let stats = server.stats();
    assert_eq!(stats.closed_by(&CloseReason::SlowPeer), 1, "{stats}");
    assert!(stats.slow_peer_events >= 1, "{stats}");
    server.shutdown(TIMEOUT).unwrap();
}

/// Resident set size of this process, in bytes.
#[cfg(target_os = "linux")]
fn rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(not(target_os = "linux"))]
fn rss() -> Option<u64> {
    None
}

/// 5. A peer that pipelines requests with large replies and never reads:
///    the server stops reading it once the queue is at the mark, so its
///    requests back up in the kernel and the client's writes block, while
///    the server's memory stays bounded. Reading resumes once the peer
///    drains its replies.
#[test]
fn never_reading_peer_keeps_memory_bounded() {
    const REQUEST: usize = 1024;
    const REPLY: usize = 64 << 10;
    const RSS_BOUND: u64 = 64 << 20;
    // What a server without backpressure could be made to allocate before
    // the test stops: 16 MiB of requests ask for 1 GiB of replies.
    const WRITE_CAP: usize = 16 << 20;
    let _heavy = heavy();
    let rss_before = rss();
    let grown = || Some(rss()?.saturating_sub(rss_before?));

    let reply: Arc<[u8]> = (0..REPLY).map(|i| i as u8).collect();
    let reply_in_handler = reply.clone();
    let server = crate::common::start(
        Server::builder()
            .event_loops(1)
            .write_high_water(256 << 10)
            .route(1, move |ctx| {
                // BufferFull once the queue is at the mark: the request is
                // dropped, which is what a server does with a peer like this.
                let _ = ctx.reply(2, &*reply_in_handler);
            }),
    );
    let stream = TcpStream::connect_timeout(&server.local_addr(), TIMEOUT).unwrap();
    stream.set_write_timeout(Some(ms(200))).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let request = frame(1, &[7; REQUEST]);
    let batch = request.repeat(64);

    // Push requests until the server stops reading them: a write finds no
    // room for 200 ms (a measurement window) while the server's
    // `bytes_in` does not move. Bounded by volume, time and memory.
    let started = Instant::now();
    let mut written = 0usize;
    let paused = loop {
        if written >= WRITE_CAP || started.elapsed() > TIMEOUT {
            break false;
        }
        if let Some(grown) = grown() {
            assert!(
                grown < RSS_BOUND,
                "RSS grew by {} MiB after {written} bytes of requests ({})",
                grown >> 20,
                server.stats()
            );
        }
        let read_before = server.stats().bytes_in;
        match (&stream).write(&batch[written % batch.len()..]) {
            Ok(n) => written += n,
            Err(e) if is_timeout(&e) => {
                if server.stats().bytes_in == read_before {
                    break true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("client write failed: {e}"),
        }
    };
    let stats = server.stats();
    assert!(
        paused,
        "wrote {written} bytes of requests and the server kept reading them ({stats})"
    );
    // Still paused after another window: not a server that happened to
    // stall for a moment.
    thread::sleep(ms(200));
    assert_eq!(
        server.stats().bytes_in,
        stats.bytes_in,
        "the server read more while the peer's replies were unread"
    );
    let demanded = (written / request.len() * REPLY) as u64;
    assert!(
        demanded >= 2 * RSS_BOUND,
        "only {written} bytes of requests sent ({demanded} bytes of replies asked for)"
    );
    assert!(stats.slow_peer_events >= 1, "{stats}");
    assert!(
        stats.bytes_in < written as u64,
        "server read {} of {written} bytes",
        stats.bytes_in
    );
    if let Some(grown) = grown() {
        assert!(
            grown < RSS_BOUND,
            "RSS grew by {} MiB while the peer asked for {} MiB of replies",
            grown >> 20,
            demanded >> 20
        );
    }

    // The peer reads replies: once the kernel takes more of the queue and
    // it drains below half the mark, the server reads requests again. (How
    // much the peer must read first depends on the kernel's buffers.)
    let paused_in = server.stats().bytes_in;
    let mut reader = Client {
        stream: stream.try_clone().unwrap(),
    };
    let reading = Instant::now();
    let mut replies = 0;
    while server.stats().bytes_in == paused_in {
        assert!(
            replies < 100_000 && reading.elapsed() < TIMEOUT,
            "the server did not read the peer again after {replies} replies were read"
        );
        let (id, body) = reader.recv();
        assert_eq!((id, body.len()), (2, REPLY), "reply {replies}");
        assert!(body[..] == reply[..], "reply {replies} corrupted");
        replies += 1;
    }
    drop(reader);
    drop(stream);
    server.shutdown(TIMEOUT).unwrap();
}

/// 6. `max_connections`: over the limit a connection is accepted and closed
///    at once; after one closes, new connections are accepted again.
#[test]
fn max_connections_rejects_then_recovers() {
    let (builder, mut hooks) = with_hooks(
        Server::builder()
            .event_loops(2)
            .max_connections(3)
            .route(1, echo),
    );
    let server = crate::common::start(builder);
    let mut clients: Vec<Client> = (0..3)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    let ids: Vec<ConnId> = clients.iter().map(|c| hooks.opened(c)).collect();
    assert_eq!(server.connection_count(), 3);

    let mut fourth = Client::connect(server.local_addr());
    fourth.expect_closed();
    wait_until("the rejection to be counted", || {
        server.stats().rejected >= 1
    });
    assert_eq!(server.stats().rejected, 1, "{}", server.stats());
    for c in &mut clients {
        c.send(1, b"ok");
        assert_eq!(c.recv(), (1, b"ok".to_vec()));
    }

    drop(clients.remove(0));
    let closed = hooks.close_of(ids[0]);
    assert!(
        matches!(closed.reason, CloseReason::PeerClosed),
        "{}",
        closed.reason
    );
    let mut fifth = Client::connect(server.local_addr());
    let fifth_id = hooks.opened(&fifth);
    assert!(!ids.contains(&fifth_id));
    fifth.send(1, b"in");
    assert_eq!(fifth.recv(), (1, b"in".to_vec()));
    assert_eq!(server.connection_count(), 3);
    let stats = server.stats();
    assert_eq!((stats.rejected, stats.accepted), (1, 4), "{stats}");
    // The rejected connection never reached the hooks.
    let closes = hooks.closes_so_far();
    assert!(
        closes.iter().all(|c| c.id == ids[0]),
        "unexpected close: {closes:?}"
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// 7. Shutdown closes every connection with `Shutdown`, running `on_close`
///    exactly once for each, and every client sees EOF.
#[test]
fn shutdown_closes_every_connection_once() {
    const N: usize = 100;
    let (builder, mut hooks) = with_hooks(Server::builder().event_loops(2).route(1, echo));
    let server = crate::common::start(builder);
    let hub = server.hub();
    let mut clients: Vec<Client> = (0..N)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    let opened: HashSet<ConnId> = clients.iter().map(|c| hooks.opened(c)).collect();
    assert_eq!(opened.len(), N);
    for l in 0..2 {
        let on_loop = opened.iter().filter(|id| id.loop_index() == l).count();
        assert!(on_loop > 0, "loop {l} got no connection");
    }
    assert_eq!(server.connection_count(), N);

    server.shutdown(Duration::from_secs(5)).unwrap();

    let closes: Vec<Closed> = hooks.closes.try_iter().collect();
    assert_eq!(closes.len(), N, "on_close calls: {closes:?}");
    let bad: Vec<&Closed> = closes
        .iter()
        .filter(|c| !matches!(c.reason, CloseReason::Shutdown))
        .collect();
    assert!(bad.is_empty(), "closed for other reasons: {bad:?}");
    let closed: HashSet<ConnId> = closes.iter().map(|c| c.id).collect();
    assert_eq!(closed, opened, "on_close ids differ from on_open ids");
    for c in &mut clients {
        c.expect_closed();
    }
    let stats = hub.stats();
    assert_eq!(stats.closed_by(&CloseReason::Shutdown), N as u64, "{stats}");
    assert_eq!(stats.closed_total(), N as u64, "{stats}");
    assert_eq!(stats.connections, 0, "{stats}");
    assert_eq!(hub.connection_count(), 0);
}

/// 7b. Replies queued just before shutdown are flushed before the close,
///     even when they cannot all be written at once.
#[test]
fn shutdown_flushes_replies_queued_before_it() {
    const N: usize = 16;
    const BODY: usize = 1 << 20;
    let _heavy = heavy();
    let body_of = |i: usize| -> Vec<u8> { (0..BODY).map(|j| (i * 7 + j) as u8).collect() };
    let (queued_tx, queued_rx) = unbounded();
    let (builder, mut hooks) = with_hooks(
        Server::builder()
            .event_loops(1)
            .write_high_water(64 << 20)
            .route(1, move |ctx| {
                for i in 0..N {
                    ctx.reply(2, body_of(i))?;
                }
                let _ = queued_tx.send(());
                Ok::<(), Error>(())
            }),
    );
    let server = crate::common::start(builder);
    let hub = server.hub();
    let mut client = Client::connect(server.local_addr());
    let id = hooks.opened(&client);

    client.send(1, b"give me 16 MiB");
    queued_rx
        .recv_timeout(TIMEOUT)
        .expect("handler queued replies");
    // The client has not read anything: most of it is still queued.
    let total = (N * (BODY + 8)) as u64;
    let out_before = hub.stats().bytes_out;
    assert!(
        out_before < total,
        "{out_before} of {total} bytes already out"
    );

    let shutdown = thread::spawn(move || server.shutdown(TIMEOUT));
    for i in 0..N {
        let (msg_id, body) = client.recv();
        assert_eq!((msg_id, body.len()), (2, BODY), "reply {i}");
        assert!(body == body_of(i), "reply {i} corrupted");
    }
    let mut rest = [0u8; 1];
    match client.stream.read(&mut rest) {
        Ok(0) => {}
        other => panic!("expected EOF after the replies, got {other:?}"),
    }
    shutdown.join().unwrap().expect("graceful shutdown");
    let closed = hooks.close_of(id);
    assert!(
        matches!(closed.reason, CloseReason::Shutdown),
        "{}",
        closed.reason
    );
    assert_eq!(hub.stats().bytes_out, total);
}

/// A server whose route 1 queues `n` replies of 1 MiB (id 2) and reports
/// on `queued` once they are all in the write queue.
fn bulk_reply_server(n: usize, config: Config) -> (Builder, Receiver<()>) {
    let (queued_tx, queued_rx) = unbounded();
    let builder = Server::builder()
        .config(config)
        .event_loops(1)
        .write_high_water(64 << 20)
        .route(1, move |ctx| {
            for i in 0..n {
                ctx.reply(2, vec![i as u8; 1 << 20])?;
            }
            let _ = queued_tx.send(());
            Ok::<(), Error>(())
        });
    (builder, queued_rx)
}

/// Read (and drop) whatever the server sends until it closes.
fn drain_until_closed(client: &mut Client) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match client.stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => panic!("server did not close the connection"),
            Err(_) => return,
        }
    }
}

/// 7c. A peer that never reads cannot hold shutdown past its deadline, and
///     shutdown says that data was left unsent.
#[test]
fn shutdown_deadline_bounds_a_peer_that_never_reads() {
    let _heavy = heavy();
    let deadline = ms(300);
    let (builder, queued) = bulk_reply_server(16, Config::default());
    let (builder, mut hooks) = with_hooks(builder);
    let server = crate::common::start(builder);
    let mut client = Client::connect(server.local_addr());
    let id = hooks.opened(&client);
    client.send(1, b"");
    queued
        .recv_timeout(TIMEOUT)
        .expect("handler queued replies");

    let started = Instant::now();
    let result = server.shutdown(deadline);
    let took = started.elapsed();
    assert!(
        matches!(result, Err(Error::ShutdownTimeout(1))),
        "shutdown with 16 MiB unread: {result:?}"
    );
    assert!(
        took + CLOCK_GRAIN >= deadline && took <= deadline + SLACK,
        "shutdown took {took:?} with a deadline of {deadline:?}"
    );
    let closed = hooks.close_of(id);
    assert!(
        matches!(closed.reason, CloseReason::Shutdown),
        "{}",
        closed.reason
    );
    drain_until_closed(&mut client);
}

/// 7d. The close linger is not a way around that: a connection dropped
///     with data unsent during shutdown is reported, even when the linger
///     ends before the shutdown deadline.
#[test]
fn shutdown_reports_data_dropped_by_close_linger() {
    let _heavy = heavy();
    let linger = ms(100);
    let mut config = Config::default();
    config.close_linger = linger;
    let (builder, queued) = bulk_reply_server(16, config);
    let (builder, mut hooks) = with_hooks(builder);
    let server = crate::common::start(builder);
    let hub = server.hub();
    let mut client = Client::connect(server.local_addr());
    let id = hooks.opened(&client);
    client.send(1, b"");
    queued
        .recv_timeout(TIMEOUT)
        .expect("handler queued replies");

    let started = Instant::now();
    let result = server.shutdown(Duration::from_secs(5));
    let closed = hooks.close_of(id);
    assert!(
        matches!(closed.reason, CloseReason::Shutdown),
        "{}",
        closed.reason
    );
    // The linger, not the deadline, ended the flush: no earlier than the
    // linger after shutdown began, and long before the deadline.
    let closed_after = closed.at.saturating_duration_since(started);
    assert!(
        closed_after + CLOCK_GRAIN >= linger && closed_after <= linger + SLACK,
        "closed {closed_after:?} after shutdown began, with a close linger of {linger:?}"
    );
    let out = hub.stats().bytes_out;
    assert!(
        out < 16 << 20,
        "{out} bytes out: the test needs unsent data"
    );
    assert!(
        matches!(result, Err(Error::ShutdownTimeout(1))),
        "shutdown dropped {} unsent bytes and returned {result:?}",
        (16 * ((1 << 20) + 8)) - out
    );
    drain_until_closed(&mut client);
}

/// 8. A handle of a closed connection fails (or counts the failure), never
///    reaches the connection that reuses its slot, and after shutdown every
///    handle returns `ShutDown`.
#[test]
fn handles_outlive_their_connection() {
    let stale_slot: Arc<Mutex<Option<ConnHandle>>> = Arc::default();
    let stale_in_handler = stale_slot.clone();
    let (builder, mut hooks) = with_hooks(
        Server::builder()
            .event_loops(1)
            .route(1, echo)
            // On the loop thread: send through the stale handle, reply with
            // what happened (0: Closed, 1: Ok, 2: other error).
            .route(7, move |ctx| {
                let stale = stale_in_handler.lock().unwrap().clone().unwrap();
                let code = match stale.send(5, b"from the loop") {
                    Err(Error::Closed) => 0u8,
                    Ok(()) => 1,
                    Err(_) => 2,
                };
                ctx.reply(7, [code])
            }),
    );
    let server = crate::common::start(builder);
    let hub = server.hub();

    let mut a = Client::connect(server.local_addr());
    let a_handle = hub.conn(hooks.opened(&a));
    a_handle.send(5, b"hello").unwrap();
    assert_eq!(a.recv(), (5, b"hello".to_vec()));
    drop(a);
    let closed = hooks.close_of(a_handle.id());
    assert!(
        matches!(closed.reason, CloseReason::PeerClosed),
        "{}",
        closed.reason
    );

    // From another thread: an error now, or a counted drop later.
    let before = hub.stats().send_errors;
    match a_handle.send(5, b"too late") {
        Err(Error::Closed) => {}
        Ok(()) => wait_until("the dropped send to be counted", || {
            hub.stats().send_errors > before
        }),
        Err(e) => panic!("send to a closed connection: {e}"),
    }
    a_handle.close();

    // The slot is reused (one loop): the stale handle must not reach B.
    let mut b = Client::connect(server.local_addr());
    let b_handle = hub.conn(hooks.opened(&b));
    assert_ne!(b_handle.id(), a_handle.id());
    let _ = a_handle.send(5, b"stale");
    b_handle.send(6, b"marker").unwrap();
    assert_eq!(
        b.recv(),
        (6, b"marker".to_vec()),
        "B received a stale handle's message"
    );
    *stale_slot.lock().unwrap() = Some(a_handle.clone());
    b.send(7, b"");
    assert_eq!(b.recv(), (7, vec![0]), "stale send on the loop thread");

    server.shutdown(TIMEOUT).unwrap();
    b.expect_closed();
    for h in [&a_handle, &b_handle] {
        assert!(matches!(h.send(5, b"x"), Err(Error::ShutDown)));
        assert!(matches!(h.send_seq(5, 1, b"x"), Err(Error::ShutDown)));
        // Closing once the server is down is a no-op (it is closed).
        h.close();
    }
    assert!(matches!(hub.broadcast(5, b"x"), Err(Error::ShutDown)));
    assert_eq!(hub.connection_count(), 0);
    assert!(hub.connections().is_empty());
}

/// 9. `on_close` runs exactly once when close reasons race: handler close
///    vs. peer close vs. cross-thread close vs. idle kick.
#[test]
fn on_close_runs_once_when_reasons_race() {
    const ROUNDS: usize = 20;
    let (builder, mut hooks) = with_hooks(
        Server::builder()
            .event_loops(2)
            .heartbeat(ms(5), ms(25))
            .route(1, |ctx: &mut Context<'_>| ctx.close()),
    );
    let server = crate::common::start(builder);
    let addr = server.local_addr();
    let hub = server.hub();
    let close_request = frame(1, b"");
    let connect = || {
        let s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    };
    let mut peers = Vec::new();

    // Handler close racing the peer's close.
    for i in 0..ROUNDS {
        let mut s = connect();
        peers.push(s.local_addr().unwrap());
        let _ = s.write_all(&close_request);
        if i % 2 == 0 {
            drop(s);
        } else {
            // Half-close, then wait for the server's close.
            let _ = s.shutdown(Shutdown::Write);
            let mut buf = [0u8; 16];
            match s.read(&mut buf) {
                Ok(0) => {}
                Err(e) if !is_timeout(&e) => {}
                other => panic!("expected the server to close, got {other:?}"),
            }
        }
    }
    // Handler close, cross-thread close and peer close at once.
    for i in 0..ROUNDS {
        let mut s = connect();
        let local = s.local_addr().unwrap();
        peers.push(local);
        let handle = hub.conn(hooks.id_of(local));
        match i % 3 {
            0 => {
                let _ = s.write_all(&close_request);
                handle.close();
                drop(s);
            }
            1 => {
                handle.close();
                let _ = s.write_all(&close_request);
                drop(s);
            }
            _ => {
                let _ = s.write_all(&close_request);
                drop(s);
                handle.close();
            }
        }
    }
    // Idle kick racing the handler close and the peer close: each peer
    // speaks up around the idle timeout. The sleeps spread the race; they
    // synchronise nothing.
    let idlers: Vec<_> = (0..ROUNDS)
        .map(|i| {
            let s = connect();
            peers.push(s.local_addr().unwrap());
            let close_request = close_request.clone();
            thread::spawn(move || {
                let mut s = s;
                thread::sleep(ms(15 + i as u64));
                let _ = s.write_all(&close_request);
            })
        })
        .collect();
    for t in idlers {
        t.join().unwrap();
    }

    let total = peers.len();
    let ids: Vec<ConnId> = peers.iter().map(|p| hooks.id_of(*p)).collect();
    let mut closes = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while closes.len() < total {
        match hooks.closes.recv_deadline(deadline) {
            Ok(c) => closes.push(c),
            Err(_) => panic!("{} of {total} on_close calls: {closes:?}", closes.len()),
        }
    }
    server.shutdown(TIMEOUT).unwrap();
    // Nothing more after shutdown joined every loop: no second call.
    closes.extend(hooks.closes.try_iter());
    assert_eq!(closes.len(), total, "on_close calls: {closes:?}");
    let mut per_id: HashMap<ConnId, usize> = HashMap::new();
    for c in &closes {
        *per_id.entry(c.id).or_default() += 1;
        assert!(
            matches!(
                c.reason,
                CloseReason::Local | CloseReason::PeerClosed | CloseReason::IdleTimeout
            ),
            "conn {} closed for {}",
            c.id,
            c.reason
        );
    }
    for id in &ids {
        assert_eq!(per_id.get(id), Some(&1), "on_close calls for {id}");
    }
    assert_eq!(per_id.len(), total);
    let stats = hub.stats();
    assert_eq!(stats.closed_total(), total as u64, "{stats}");
    assert_eq!(stats.connections, 0, "{stats}");
}
