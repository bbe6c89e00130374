//! Graceful shutdown: every connection closed once, replies queued before
//! it flushed, its deadline bounding a peer that never reads, and data
//! dropped by the close linger reported.

use std::collections::HashSet;
use std::io::Read;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{Builder, CloseReason, Config, ConnId, Error, Server, ServerHandle};

use super::{heavy, is_timeout, ms, with_hooks, Closed, Hooks, CLOCK_GRAIN, SLACK};
use crate::common::{echo, Client, TIMEOUT};

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
    let builder = Server::builder()
        .event_loops(1)
        .write_high_water(64 << 20)
        .route(1, move |ctx| {
            for i in 0..N {
                ctx.reply(2, body_of(i))?;
            }
            let _ = queued_tx.send(());
            Ok::<(), Error>(())
        });
    let (server, mut hooks, mut client, id) = queue_replies(builder, &queued_rx, b"give me 16 MiB");
    let hub = server.hub();
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

/// Start `builder` with hooks, connect a client and send `request` on id
/// 1; return once the handler reports on `queued` that its replies are in
/// the write queue (the client has read none of them).
fn queue_replies(
    builder: Builder,
    queued: &Receiver<()>,
    request: &[u8],
) -> (ServerHandle, Hooks, Client, ConnId) {
    let (builder, mut hooks) = with_hooks(builder);
    let server = crate::common::start(builder);
    let mut client = Client::connect(server.local_addr());
    let id = hooks.opened(&client);
    client.send(1, request);
    queued
        .recv_timeout(TIMEOUT)
        .expect("handler queued replies");
    (server, hooks, client, id)
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
    let (server, mut hooks, mut client, id) = queue_replies(builder, &queued, b"");

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
    let (server, mut hooks, mut client, id) = queue_replies(builder, &queued, b"");
    let hub = server.hub();

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
