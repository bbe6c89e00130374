//! A WebSocket dial at its edges (found by the review of issue 20; each
//! failed before its fix): frames behind the upgrade's answer, messages
//! queued during a refused upgrade, a pool of message-mode dials, and
//! reconnects after layer output (a pong, a close echo) was queued.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use netloom::ws;
use netloom::{Dial, PoolConfig, SeqPacker, Server};

use super::raw::*;
use crate::common::TIMEOUT;

// 1. A handler runs on a dial that never opened (101 + frames + close in
//    one read)
// ---------------------------------------------------------------------------

/// The server's answer, a text message and a close frame arrive in one
/// read. The message must not reach a handler before `on_open` (the guide:
/// "Then the dial opens (`on_open`...), and the answer is the
/// connection's data"): either the dial opens first, or nothing is
/// delivered.
#[test]
fn a_message_behind_the_answer_is_not_handled_before_on_open() {
    crate::common::init_logs();
    let raw = Raw::new();
    let (b, seen) = events(Server::builder().event_loops(1));
    let server = b.start().unwrap();
    let url = raw.url("/");
    let peer = thread::spawn(move || {
        let mut s = raw.next().expect("a connection");
        let key = read_request(&mut s).unwrap();
        let mut all = answer_101(&key);
        all.extend(frame(0x1, b"behind the answer"));
        all.extend(close_frame(1000, "bye"));
        s.write_all(&all).unwrap();
        // Wait for the client's close echo (or its end).
        let _ = read_frame(&mut s);
    });
    let _conn = server.hub().dial(Dial::ws(&url).unwrap()).unwrap();
    let mut got = Vec::new();
    loop {
        let ev = seen.recv_timeout(TIMEOUT).expect("an event");
        let last = matches!(ev, Ev::Close(_));
        got.push(ev);
        if last {
            break;
        }
    }
    peer.join().unwrap();
    server.shutdown(TIMEOUT).unwrap();
    if let Some(i) = got.iter().position(|e| matches!(e, Ev::Msg(..))) {
        assert!(
            got[..i].contains(&Ev::Open { response: true }),
            "a message was handled on a dial that never opened: {got:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. What was sent while the upgrade was under way is lost when the
//    upgrade fails and the dial reconnects
// ---------------------------------------------------------------------------

/// The guide: "What is sent before the upgrade completes (or while the link
/// is down) waits and goes after it", and a dial's queue keeps what never
/// started across a reconnect. A first attempt refused with 503 (a server
/// restarting) must not silently drop the message queued during it.
#[test]
fn a_message_queued_during_a_refused_upgrade_goes_out_after_the_reconnect() {
    crate::common::init_logs();
    let raw = Raw::new();
    let (b, _seen) = events(Server::builder().event_loops(1));
    let server = b.start().unwrap();
    let url = raw.url("/");
    let (go_tx, go) = report::<()>();
    let (got_tx, got) = report::<String>();
    let peer = thread::spawn(move || {
        // First attempt: wait until the application has sent, then refuse.
        let mut s = raw.next().expect("first attempt");
        read_request(&mut s).unwrap();
        go.recv_timeout(TIMEOUT).unwrap();
        s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        drop(s);
        // Second attempt: accept, and report the first frame.
        let mut s = raw.next().expect("second attempt");
        handshake(&mut s).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let verdict = match read_frame(&mut s) {
            Ok((1, true, p)) => String::from_utf8_lossy(&p).into_owned(),
            Ok(other) => format!("another frame: {other:?}"),
            Err(e) => format!("nothing: {e}"),
        };
        let _ = got_tx.send(verdict);
    });
    let conn = server
        .hub()
        .dial(Dial::ws(&url).unwrap().reconnect(quick_reconnect()))
        .unwrap();
    conn.send(ws::TEXT, "hello").unwrap();
    go_tx.send(()).unwrap();
    let verdict = got
        .recv_timeout(TIMEOUT)
        .expect("the second attempt's report");
    peer.join().unwrap();
    let stats = server.stats();
    server.shutdown(TIMEOUT).unwrap();
    assert_eq!(
        verdict, "hello",
        "the message sent during the refused upgrade (unflushed_closes {}, send_errors {})",
        stats.unflushed_closes, stats.send_errors
    );
}

// ---------------------------------------------------------------------------
// 3. A pool of WebSocket dials (message mode) on a server whose packer
//    carries sequence numbers never makes a connection
// ---------------------------------------------------------------------------

/// The guide: a WebSocket dial has "everything a dial has (reconnect,
/// profiles, requests, heartbeat, the pool)". A pool of message-mode
/// `Dial::ws` targets on a `SeqPacker` server, with the default
/// `PoolConfig`, must hand out a connection.
#[test]
fn a_pool_of_message_mode_ws_dials_hands_out_a_connection() {
    crate::common::init_logs();
    // The peer: netloom's own WebSocket listener, echoing.
    let peer = Server::builder()
        .event_loops(1)
        .route(ws::TEXT, |ctx| ctx.reply(ws::TEXT, ctx.body()))
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let addr: SocketAddr = peer.local_addrs()[0];
    let (b, seen) = events(
        Server::builder()
            .event_loops(2)
            .packer(SeqPacker::default()),
    );
    let server = b.start().unwrap();
    let pool = server
        .hub()
        .pool(
            [Dial::ws(&format!("ws://{addr}/")).unwrap()],
            PoolConfig::default(),
        )
        .expect("a pool of WebSocket dials");
    let got = pool.get(Duration::from_secs(3));
    let err = got.as_ref().err().map(|e| format!("{e:?}"));
    if let Ok(conn) = got {
        conn.send(ws::TEXT, "via the pool").unwrap();
        let echo = seen
            .iter()
            .find(|e| matches!(e, Ev::Msg(..)))
            .expect("the echo");
        assert_eq!(echo, Ev::Msg(ws::TEXT, b"via the pool".to_vec()));
    }
    let stats = pool.stats();
    drop(pool);
    server.shutdown(TIMEOUT).unwrap();
    peer.shutdown(TIMEOUT).unwrap();
    assert!(err.is_none(), "pool.get failed: {err:?}; {stats:?}");
}

// ---------------------------------------------------------------------------
// 4. Layer output (a pong) starts an untracked queue: a reconnect then
//    panics the loop (debug) or replays a cut frame's rest (release)
// ---------------------------------------------------------------------------

/// The server pings and, in the same write, asks for a flood; it reads a
/// little of the flood and resets the connection. The dial (with a
/// reconnect policy) must come back: `on_reconnect` runs, and the next
/// connection starts with a whole, masked frame.
#[test]
fn a_link_lost_with_a_pong_ahead_of_the_queue_reconnects() {
    crate::common::init_logs();
    let raw = Raw::new();
    let url = raw.url("/");
    let (b, seen) = events(
        Server::builder()
            .event_loops(1)
            .write_high_water(64 << 20)
            .send_buffer_size(64 << 10),
    );
    // The flood: 64 binary messages of 256 KiB, sent by the handler of
    // the server's "flood" (after the pong tungstenite queued for the
    // ping before it).
    let server = b
        .route(ws::TEXT, |ctx| {
            if ctx.body() == b"flood" {
                for i in 0..64u8 {
                    let _ = ctx.send(ws::BINARY, vec![i; 256 << 10]);
                }
            }
        })
        .start()
        .unwrap();
    let (first_tx, first) = report::<String>();
    let peer = thread::spawn(move || {
        let mut s = raw.next().expect("first connection");
        handshake(&mut s).unwrap();
        let mut both = frame(0x9, b"p");
        both.extend(frame(0x1, b"flood"));
        s.write_all(&both).unwrap();
        // Read 256 KiB of what comes (the pong, then the flood), stop,
        // reset.
        let mut left = 256usize << 10;
        let mut buf = vec![0u8; 64 << 10];
        while left > 0 {
            match s.read(&mut buf[..left.min(64 << 10)]) {
                Ok(0) | Err(_) => break,
                Ok(n) => left -= n,
            }
        }
        reset(s);
        // The reconnect: its first frame must be a whole masked frame.
        let Some(mut s) = raw.next() else {
            let _ = first_tx.send("no reconnect".into());
            return;
        };
        handshake(&mut s).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let verdict = match read_frame(&mut s) {
            Ok((op, true, p))
                if op == 2 && p.len() == 256 << 10 && p.iter().all(|b| *b == p[0]) =>
            {
                "a whole frame".to_owned()
            }
            Ok((op, masked, p)) => {
                format!("garbage: opcode {op}, masked {masked}, {} bytes", p.len())
            }
            Err(e) => format!("no frame: {e}"),
        };
        let _ = first_tx.send(verdict);
    });
    let _conn = server
        .hub()
        .dial(Dial::ws(&url).unwrap().reconnect(quick_reconnect()))
        .unwrap();
    // Open, the pong and flood, the loss, the reconnect.
    let deadline = Instant::now() + TIMEOUT;
    let mut got = Vec::new();
    let mut reconnected = false;
    while Instant::now() < deadline {
        match seen.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Ev::Reconnect) => {
                reconnected = true;
                break;
            }
            Ok(ev) => got.push(ev),
            Err(_) => break,
        }
    }
    let verdict = first.recv_timeout(TIMEOUT);
    let _ = peer.join();
    let shutdown = server.shutdown(TIMEOUT);
    assert!(
        reconnected,
        "the dial never came back after the loss (events: {got:?}; the peer: {verdict:?}; \
         shutdown: {shutdown:?})"
    );
    assert_eq!(verdict.as_deref(), Ok("a whole frame"));
}

// ---------------------------------------------------------------------------
