//! Review of issue 25, item 14: a connection this side sends requests on
//! is never paused, but a peer must still not make its queue grow
//! without bound (a WebSocket ping flood that never reads: one pong per
//! ping, queued by the layer, not refused like a message).

use std::time::Duration;

use crossbeam_channel::unbounded;
use netloom::ws::WsMode;
use netloom::{CloseReason, ConnHandle, SeqPacker, Server};

use crate::common::{init_logs, wait_until, TIMEOUT};
use crate::ws_raw::{flood_pings, ping_frame, RawWs};

/// A WebSocket client (packer mode, sequence packer) the server sends one
/// request to, which then floods pings and never reads. The server may
/// not pause it (it waits for a reply on it), but what it queues for it
/// stays bounded: near the mark, or the peer is closed.
#[test]
fn a_ping_flood_on_a_connection_with_a_request_in_flight_stays_bounded() {
    const MARK: usize = 64 << 10;
    init_logs();
    let (tx, opened) = unbounded();
    let (closed_tx, closed) = unbounded();
    let server = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .ws_mode(WsMode::Packer)
        .write_high_water(MARK)
        .on_close(move |_, reason| {
            let _ = closed_tx.send(reason.clone());
        })
        .ws_on_upgrade(move |s, _| {
            let _ = tx.send(s.handle());
            Ok(())
        })
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut ws = RawWs::connect(server.local_addr(), "/");
    let conn: ConnHandle = opened.recv_timeout(TIMEOUT).unwrap();
    // The request reaches the client: the server now waits on it.
    conn.request_with(7, b"who are you?", Duration::from_secs(60), |_| {})
        .unwrap();
    let (first, payload) = ws.recv().expect("the request");
    assert_eq!(first, 0x82);
    assert_eq!(&payload[12..], b"who are you?");
    let limit = 64 << 20;
    let sent = flood_pings(&mut ws, limit, Duration::from_millis(500));
    wait_until("the server to stop reading", || {
        let a = server.stats().bytes_in;
        std::thread::sleep(Duration::from_millis(50)); // a measurement window
        a == server.stats().bytes_in
    });
    let stats = server.stats();
    let pongs = stats.bytes_in as usize * 127 / 131;
    let held = pongs.saturating_sub(stats.bytes_out as usize);
    assert!(
        held <= 4 * MARK + (64 << 10),
        "the server holds ~{held} bytes of pongs for a peer that never reads \
         (read {} of {sent}, wrote {})",
        stats.bytes_in,
        stats.bytes_out
    );
    // Closed as the slow peer it is (its request fails).
    let reason = closed.recv_timeout(TIMEOUT).expect("the flooder is closed");
    assert!(matches!(reason, CloseReason::SlowPeer), "{reason:?}");
    drop(ws);
    server.shutdown(TIMEOUT).unwrap();
}

/// The honest side of the same bound: a client with a large request
/// unread (the queue far over the mark) that pings now and then, then
/// reads everything and answers, is not closed, and the reply comes.
#[test]
fn a_few_pings_over_the_mark_with_a_request_in_flight_are_answered() {
    // (Found by mutation testing: a request of four times the mark went
    // into the kernel's buffers whole, and the queue was never over it.)
    pings_over_the_mark_are_answered(64 << 10, 16 << 20, 16);
}

/// The bound's edge (found by mutation testing: closing at the mark
/// rather than over it passed): pongs unread over the mark that come to
/// exactly the mark (64 of 127 bytes) do not close the peer.
#[test]
fn pongs_unread_up_to_the_mark_with_a_request_in_flight_are_answered() {
    pings_over_the_mark_are_answered(64 * 127, 16 << 20, 64);
}

/// A server that waits on a request of `body` bytes to a WebSocket client
/// (mark `mark`) gets `pings` pings from it before it reads anything; the
/// client then reads the request and every pong, and answers. A `body`
/// far larger than the kernel takes from a peer that does not read keeps
/// the queue over the mark while it pings.
fn pings_over_the_mark_are_answered(mark: usize, body: usize, pings: usize) {
    init_logs();
    let (tx, opened) = unbounded();
    let server = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::new(body))
        .ws_mode(WsMode::Packer)
        .write_high_water(mark)
        .ws_on_upgrade(move |s, _| {
            let _ = tx.send(s.handle());
            Ok(())
        })
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut ws = RawWs::connect(server.local_addr(), "/");
    let conn: ConnHandle = opened.recv_timeout(TIMEOUT).unwrap();
    let body = vec![b'r'; body];
    let (reply_tx, reply) = unbounded();
    conn.request_with(7, &body, Duration::from_secs(30), move |r| {
        let _ = reply_tx.send(r);
    })
    .unwrap();
    // The request is on its way (the rest of it queued) before the pings.
    while ws.buf.is_empty() {
        assert!(ws.fill() > 0, "closed before the request");
    }
    let before = server.stats().bytes_in;
    for _ in 0..pings {
        ws.write(&ping_frame());
    }
    wait_until("the server to read the pings", || {
        server.stats().bytes_in >= before + pings as u64 * 131
    });
    // What went out leaves more than the mark of the request queued: its
    // pongs were answered with the queue over the mark.
    let stats = server.stats();
    assert!(
        stats.bytes_out as usize + mark < body.len(),
        "the request was not held over the mark: {stats}"
    );
    let (first, request) = ws.recv().expect("the request");
    assert_eq!(first, 0x82);
    assert_eq!(request.len(), 12 + body.len());
    for _ in 0..pings {
        assert_eq!(ws.recv().expect("a pong").0, 0x8a);
    }
    // The answer: the request's header (its sequence number) and "ok".
    let mut answer = request[..12].to_vec();
    answer[..4].copy_from_slice(&2u32.to_le_bytes());
    answer.extend_from_slice(b"ok");
    ws.send_frame(0x82, &answer, true);
    let got = reply.recv_timeout(TIMEOUT).expect("the outcome");
    assert_eq!(&got.expect("the reply").body[..], b"ok");
    drop(ws);
    server.shutdown(TIMEOUT).unwrap();
}
