//! Backpressure on peers that never read: `BufferFull` for the sender,
//! or a close under `SlowPeerPolicy::Close`, and memory that stays bounded.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use crossbeam_channel::{unbounded, Receiver, Sender};
use netloom::{Builder, CloseReason, Context, Error, Server, SlowPeerPolicy};

use super::{heavy, is_timeout, ms, with_hooks};
use crate::common::{echo, frame, Client, TIMEOUT};

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
