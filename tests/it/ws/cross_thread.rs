//! Cross-thread sends, broadcast, mixed listeners, backpressure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::unbounded;
use netloom::ws::{self, WsMode, WsRequest};
use netloom::Server;

use super::{start_tcp_and_ws, start_ws, upgrade_handles};
use crate::common::TIMEOUT;
use crate::ws_raw::RawWs;

#[test]
fn handles_and_broadcast_reach_ws_and_tcp_clients() {
    let (builder, handle_rx) = upgrade_handles(Server::builder());
    let server = start_tcp_and_ws(builder.route(ws::TEXT, |ctx| ctx.reply(ws::TEXT, ctx.body())));
    let ws_addr = server.local_addrs()[1];
    let mut a = RawWs::connect(ws_addr, "/a");
    let mut b = RawWs::connect(ws_addr, "/b");
    let mut tcp = crate::common::Client::connect(server.local_addrs()[0]);
    // Make sure the TCP client is registered before broadcasting.
    tcp.send(ws::TEXT, b"sync");
    assert_eq!(tcp.recv(), (ws::TEXT, b"sync".to_vec()));
    let ha = handle_rx.recv_timeout(TIMEOUT).unwrap();
    let hb = handle_rx.recv_timeout(TIMEOUT).unwrap();
    // From this (non-loop) thread.
    ha.send_text("to a").unwrap();
    hb.send_binary([1u8, 2, 3]).unwrap();
    assert_eq!(a.recv(), Some((0x81, b"to a".to_vec())));
    assert_eq!(b.recv(), Some((0x82, vec![1, 2, 3])));
    let hub = server.hub();
    hub.broadcast_text("to all").unwrap();
    hub.broadcast_binary(b"bin all").unwrap();
    for c in [&mut a, &mut b] {
        assert_eq!(c.recv(), Some((0x81, b"to all".to_vec())));
        assert_eq!(c.recv(), Some((0x82, b"bin all".to_vec())));
    }
    assert_eq!(tcp.recv(), (ws::TEXT, b"to all".to_vec()));
    assert_eq!(tcp.recv(), (ws::BINARY, b"bin all".to_vec()));
    ha.close_with(4100, "from afar");
    assert_eq!(a.expect_close(), (4100, "from afar".to_string()));
    drop((a, b));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

/// A handler floods a client that does not read: the sends are queued
/// until the next would take the queue over the high-water mark, that one
/// is refused (`BufferFull`) and not queued, and what was accepted arrives.
#[test]
fn slow_ws_reader_gets_backpressure() {
    const HIGH_WATER: usize = 64 << 10;
    const CHUNK: usize = 16 << 10;
    let (tx, rx) = unbounded();
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = sent.clone();
    let server = start_ws(Server::builder().write_high_water(HIGH_WATER).route(
        ws::TEXT,
        move |ctx| {
            // Flood a client that does not read until the queue is full.
            let chunk = vec![b'x'; CHUNK];
            for _ in 0..10_000 {
                if let Err(e) = ctx.send_binary(&chunk) {
                    let _ = tx.send(e.to_string());
                    return;
                }
                counted.fetch_add(1, Ordering::Relaxed);
            }
        },
    ));
    let mut raw = RawWs::connect(server.local_addr(), "/");
    raw.send_frame(0x81, b"flood", true);
    let err = rx.recv_timeout(TIMEOUT).expect("a send failed");
    assert!(err.contains("full"), "{err}");
    assert!(server.stats().slow_peer_events >= 1);
    // The queue is written out only after the handler returns, so the
    // sends fill it: a send is accepted while the queue plus its chunk
    // stays within the mark. Each queued frame is its chunk plus a header
    // of at most 10 bytes, so HIGH_WATER / CHUNK sends fit at most and
    // one fewer at least (the headers are far smaller than a chunk). A
    // first send refused (n == 0) or a mark ignored is out of range.
    let n = sent.load(Ordering::Relaxed);
    let most = HIGH_WATER / CHUNK;
    assert!((most - 1..=most).contains(&n), "{n} sends accepted");
    // Everything accepted arrives, framed.
    for _ in 0..n {
        let (first, payload) = raw.recv().expect("frame");
        assert_eq!((first, payload.len()), (0x82, CHUNK));
    }
    // And nothing else was queued: the refused send is not behind them,
    // the next frame is the answer to this ping (read once the drained
    // queue lets the server read again).
    raw.send_frame(0x89, b"after", true);
    assert_eq!(raw.recv(), Some((0x8a, b"after".to_vec())));
    drop(raw);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn ws_request_is_connection_data() {
    let (tx, rx) = unbounded::<Option<String>>();
    let server = start_ws(Server::builder().route(ws::TEXT, move |ctx| {
        let path = ctx.data().get::<WsRequest>().map(|r| r.path().to_string());
        let _ = tx.send(path);
    }));
    let mut raw = RawWs::connect(server.local_addr(), "/where?x=1");
    raw.send_frame(0x81, b"?", true);
    assert_eq!(rx.recv_timeout(TIMEOUT).unwrap().as_deref(), Some("/where"));
    drop(raw);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn packer_mode_handles_and_broadcast_send_packer_frames_in_binary_messages() {
    let (builder, handle_rx) = upgrade_handles(Server::builder().ws_mode(WsMode::Packer));
    let server = start_tcp_and_ws(builder.route(7, |ctx| ctx.reply(7, ctx.body())));
    let mut ws = RawWs::connect(server.local_addrs()[1], "/");
    let mut tcp = crate::common::Client::connect(server.local_addrs()[0]);
    // A packer frame split over two binary messages, then echoed whole.
    let frame = crate::common::frame(7, b"over ws");
    ws.send_frame(0x82, &frame[..3], true);
    ws.send_frame(0x82, &frame[3..], true);
    assert_eq!(ws.recv(), Some((0x82, frame)));
    tcp.send(7, b"sync");
    assert_eq!(tcp.recv(), (7, b"sync".to_vec()));
    let handle = handle_rx.recv_timeout(TIMEOUT).unwrap();
    handle.send(9, b"from a thread").unwrap();
    assert_eq!(
        ws.recv(),
        Some((0x82, crate::common::frame(9, b"from a thread")))
    );
    let big = vec![5u8; 70_000];
    server.hub().broadcast(11, &big).unwrap();
    assert_eq!(ws.recv(), Some((0x82, crate::common::frame(11, &big))));
    assert_eq!(tcp.recv(), (11, big));
    drop(ws);
    server.shutdown(Duration::from_secs(5)).unwrap();
}
