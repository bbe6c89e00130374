//! Heartbeat: an idle peer kicked within its bound, an active one kept,
//! pings before the kick, and pings again after each answer.

use std::thread;
use std::time::{Duration, Instant};

use netloom::{CloseReason, Server};

use super::{is_timeout, ms, with_hooks, CLOCK_GRAIN, SLACK};
use crate::common::{echo, Client, TIMEOUT};

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
    // stand out from scheduling noise: it would come after about 5 s of
    // silence, far past the bound below.
    let server = crate::common::start(
        Server::builder()
            .event_loops(1)
            .heartbeat(check, ms(5000))
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

/// 5. A peer the heartbeat kicks while more is queued for it than its
///    socket takes (it reads nothing: a vanished peer looks the same) is
///    closed within the heartbeat's bound: the kick does not wait out
///    `close_linger` trying to flush to a peer taken for dead. (It did:
///    `on_close` came `close_linger` late, and a dialed link's reconnect
///    with it; `tests/net_faults` shows both on a real path.)
#[test]
fn heartbeat_kick_does_not_wait_out_close_linger_for_a_peer_that_reads_nothing() {
    let (check, idle, linger) = (ms(50), ms(300), Duration::from_secs(5));
    let (builder, mut hooks) = with_hooks(
        Server::builder()
            .event_loops(1)
            .heartbeat(check, idle)
            .close_linger(linger)
            .write_high_water(64 << 20)
            .send_buffer_size(64 << 10)
            // More than the socket buffers of both ends hold.
            .route(1, |ctx: &mut netloom::Context<'_>| {
                for _ in 0..64 {
                    ctx.send(2, vec![7u8; 256 << 10])?;
                }
                Ok::<(), netloom::Error>(())
            }),
    );
    let server = crate::common::start(builder);
    let mut client = Client::connect(server.local_addr());
    let id = hooks.opened(&client);
    let last_write = Instant::now();
    client.send(1, b"send me everything");

    let closed = hooks.close_of(id);
    assert!(
        matches!(closed.reason, CloseReason::IdleTimeout),
        "closed for {} instead of idle timeout",
        closed.reason
    );
    let elapsed = closed.at.saturating_duration_since(last_write);
    assert!(
        elapsed <= idle + check + SLACK,
        "closed {elapsed:?} after the last byte (bound {:?} + slack; close_linger {linger:?})",
        idle + check
    );
    let stats = server.stats();
    assert_eq!(stats.unflushed_closes, 1, "{stats}");
    drop(client);
    server.shutdown(TIMEOUT).unwrap();
}
