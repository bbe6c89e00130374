//! Hostile and broken peers (issue 11): each test attacks a real server
//! over loopback the way an outside peer could, and checks that the
//! offending connection gets a typed close or is held to the configured
//! bounds while the others carry on.

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use netloom::ws;
use netloom::{Builder, CloseReason, Server, ServerHandle, SlowPeerPolicy};

use crate::common::{
    echo, frame, start_tracked, track_closes, wait_until, Client, Closes, TIMEOUT,
};
use crate::ws_raw::{flood_pings, ping_frame, RawWs};

/// A server with a WebSocket listener (`local_addrs()[0]`) echoing text
/// and a TCP one (`local_addrs()[1]`) echoing id 1.
fn ws_server(builder: Builder) -> ServerHandle {
    crate::common::init_logs();
    builder
        .route(ws::TEXT, |ctx| ctx.reply(ws::TEXT, ctx.body()))
        .route(1, echo)
        .bind_ws("127.0.0.1:0")
        .expect("bind_ws")
        .bind("127.0.0.1:0")
        .expect("bind")
        .start()
        .expect("start")
}

/// [`ws_server`] with its closes tracked.
fn ws_server_tracked(builder: Builder) -> (ServerHandle, Closes) {
    let (builder, closes) = track_closes(builder);
    (ws_server(builder), closes)
}

/// A WebSocket client upgraded on `server`'s WebSocket listener, and its
/// local address (the server's peer address for it).
fn ws_peer(server: &ServerHandle) -> (RawWs, SocketAddr) {
    let ws = RawWs::connect(server.local_addrs()[0], "/");
    let local = ws.stream.local_addr().unwrap();
    (ws, local)
}

/// A client that floods pings and never reads makes the server queue a
/// pong per ping. The pongs count against the write queue's high-water
/// mark like any reply: the server stops reading that peer (its bytes in
/// stop growing far below what the peer sent) and other peers are served.
/// Without the bound the server reads all 64 MiB and queues as much.
#[test]
fn a_ping_flood_that_never_reads_is_paused_at_the_high_water_mark() {
    const MARK: usize = 64 << 10;
    let server = ws_server(Server::builder().event_loops(1).write_high_water(MARK));
    let ws_addr = server.local_addrs()[0];
    let mut flooder = RawWs::connect(ws_addr, "/");
    let sent = flood_pings(&mut flooder, 64 << 20, Duration::from_millis(500));
    // Let the loop finish what it was doing with what it read.
    wait_until("the server to stop reading", || {
        let a = server.stats().bytes_in;
        std::thread::sleep(Duration::from_millis(50)); // a measurement window
        a == server.stats().bytes_in
    });
    let stats = server.stats();
    // Pongs the server made, minus what the kernel took: what its queue
    // holds. At most the mark plus one read's pongs (64 KiB read).
    let pongs = stats.bytes_in as usize * 127 / 131;
    let held = pongs.saturating_sub(stats.bytes_out as usize);
    assert!(
        held <= MARK + (64 << 10),
        "the server holds ~{held} bytes of pongs (read {} of {sent}, wrote {})",
        stats.bytes_in,
        stats.bytes_out
    );
    assert!(
        (stats.bytes_in as usize) < sent,
        "the server read everything: {stats}"
    );
    assert!(stats.slow_peer_events >= 1, "{stats}");
    // The loop still serves others.
    let mut other = Client::connect(server.local_addrs()[1]);
    other.send(1, b"still here");
    assert_eq!(other.recv(), (1, b"still here".to_vec()));
    drop(flooder);
    server.shutdown(TIMEOUT).unwrap();
}

/// The same flood at a mark below what one read's pings answer: the peer
/// is paused, never closed (found by mutation testing: closing a peer that
/// may be paused, once its unread pongs were over the mark, passed). Once
/// it reads, it gets a pong for every ping, then the echo of its text.
#[test]
fn a_ping_flood_over_a_small_mark_is_paused_and_then_answered_in_full() {
    let server = ws_server(Server::builder().event_loops(1).write_high_water(8 << 10));
    let (mut flooder, _) = ws_peer(&server);
    let sent = flood_pings(&mut flooder, 8 << 20, Duration::from_millis(500));
    assert!(server.stats().slow_peer_events >= 1, "{}", server.stats());
    // The rest of a ping cut by the stalled write, written while this
    // thread reads (the server reads as it is read).
    let rest = ping_frame()[sent % 131..].to_vec();
    let rest = if rest.len() == 131 { Vec::new() } else { rest };
    let mut writer = flooder.stream.try_clone().unwrap();
    writer.set_write_timeout(Some(TIMEOUT)).unwrap();
    let written = std::thread::spawn(move || writer.write_all(&rest));
    for i in 0..sent.div_ceil(131) {
        let got = flooder.recv().map(|(first, _)| first);
        assert_eq!(
            got,
            Some(0x8a),
            "pong {i}, {sent} bytes of pings; {}",
            server.stats()
        );
    }
    written.join().unwrap().unwrap();
    flooder.send_frame(0x81, b"after the pings", true);
    assert_eq!(flooder.recv(), Some((0x81, b"after the pings".to_vec())));
    drop(flooder);
    server.shutdown(TIMEOUT).unwrap();
}

/// The same flood under `SlowPeerPolicy::Close`: the flooder is closed
/// with `SlowPeer`.
#[test]
fn a_ping_flood_under_the_close_policy_is_closed_as_a_slow_peer() {
    let (server, mut closes) = ws_server_tracked(
        Server::builder()
            .event_loops(1)
            .write_high_water(64 << 10)
            .slow_peer(SlowPeerPolicy::Close),
    );
    let (mut flooder, local) = ws_peer(&server);
    let _ = flood_pings(&mut flooder, 64 << 20, Duration::from_millis(500));
    let reason = closes.reason_for(local);
    assert!(matches!(reason, CloseReason::SlowPeer), "{reason:?}");
    server.shutdown(TIMEOUT).unwrap();
}

/// RFC 6455 4.2.2: a request for a version the server does not speak is
/// refused (400) with the version it does, `Sec-WebSocket-Version: 13`,
/// and closed as a bad upgrade.
#[test]
fn an_unknown_websocket_version_is_answered_with_the_one_spoken() {
    let (server, mut closes) = ws_server_tracked(Server::builder().event_loops(1));
    for version in ["8", "14"] {
        let mut ws = RawWs::tcp(server.local_addrs()[0]);
        let local = ws.stream.local_addr().unwrap();
        let request = crate::ws_raw::upgrade_request("/").replace(
            "Sec-WebSocket-Version: 13",
            &format!("Sec-WebSocket-Version: {version}"),
        );
        ws.write(request.as_bytes());
        let answer = ws.read_to_end();
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("\r\nsec-websocket-version: 13\r\n"),
            "{answer}"
        );
        let reason = closes.reason_for(local);
        assert!(matches!(reason, CloseReason::BadUpgrade(_)), "{reason:?}");
    }
    server.shutdown(TIMEOUT).unwrap();
}

/// A close frame with a code a peer may not send (999, 1005, 5000) is
/// answered with 1002, and `on_close` reports the protocol error, not a
/// peer close with the server's own 1002.
#[test]
fn an_invalid_close_code_is_a_protocol_error() {
    let (server, mut closes) = ws_server_tracked(Server::builder().event_loops(1));
    for code in [999u16, 1005, 5000] {
        let (mut ws, local) = ws_peer(&server);
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        ws.send_frame(0x88, &payload, true);
        assert_eq!(ws.expect_close().0, 1002, "code {code}");
        match closes.reason_for(local) {
            CloseReason::WsProtocol {
                code: 1002,
                message,
            } => {
                assert!(message.contains(&code.to_string()), "{message}")
            }
            other => panic!("code {code}: {other:?}"),
        }
    }
    // A valid code is still a peer close, with the peer's code.
    let (mut ws, local) = ws_peer(&server);
    ws.send_frame(0x88, &[0x0f, 0xa0, b'o', b'k'], true);
    assert_eq!(ws.expect_close().0, 4000);
    let reason = closes.reason_for(local);
    assert!(
        matches!(&reason, CloseReason::WsClosed { code: 4000, reason } if reason == "ok"),
        "{reason:?}"
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// A frame declaring a 64-bit length with the top bit set breaks RFC
/// 6455 5.2: 1002 (protocol error), not 1009 (too big).
#[test]
fn a_length_with_the_top_bit_set_is_a_protocol_error() {
    let (server, mut closes) = ws_server_tracked(Server::builder().event_loops(1));
    let (mut ws, local) = ws_peer(&server);
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(1u64 << 63).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4, 9, 9]);
    ws.write(&frame);
    assert_eq!(ws.expect_close().0, 1002);
    let reason = closes.reason_for(local);
    assert!(
        matches!(reason, CloseReason::WsProtocol { code: 1002, .. }),
        "{reason:?}"
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// A body trickled at 10 B/s is closed with `FrameTimeout` after its first
/// `frame_timeout` window (1 s here; 500 B/s is the minimum rate); a body
/// arriving at 2,000 B/s, which takes longer than one window, completes.
/// Without the deadline the trickler would hold its buffer as long as it
/// likes.
#[test]
fn a_slow_body_is_closed_while_a_slow_but_honest_one_completes() {
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(1)
            .frame_timeout(Duration::from_secs(1), 500)
            .route(1, echo),
    );
    let addr = server.local_addr();

    // Honest: 4,000 bytes in 20 chunks 100 ms apart (about 2 s).
    let honest = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        let wire = crate::common::frame(1, &[7u8; 4000]);
        for chunk in wire.chunks(wire.len() / 20 + 1) {
            c.send_raw(chunk);
            std::thread::sleep(Duration::from_millis(100)); // pacing the load
        }
        c.recv()
    });
    // Trickler: a header for 1,000 bytes, then a byte every 100 ms.
    let mut slow = Client::connect(addr);
    let local = slow.stream.local_addr().unwrap();
    let started = std::time::Instant::now();
    slow.send_raw(&crate::common::frame(1, &[1u8; 1000])[..18]);
    let mut sent = 0;
    while sent < 100 && slow.stream.write_all(b"x").is_ok() {
        sent += 1;
        std::thread::sleep(Duration::from_millis(100)); // pacing the load
        if closes.rx.is_empty() {
            continue;
        }
        break;
    }
    let reason = closes.reason_for(local);
    let took = started.elapsed();
    assert!(matches!(reason, CloseReason::FrameTimeout), "{reason:?}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(honest.join().unwrap(), (1, vec![7u8; 4000]));
    assert_eq!(server.stats().closed_by(&CloseReason::FrameTimeout), 1);
    server.shutdown(TIMEOUT).unwrap();
}

/// A WebSocket message begun and trickled (a fragment, then a byte at a
/// time) is held to the same deadline.
#[test]
fn a_slow_websocket_message_is_closed_with_frame_timeout() {
    let (server, mut closes) = ws_server_tracked(
        Server::builder()
            .event_loops(1)
            .frame_timeout(Duration::from_secs(1), 500),
    );
    let (mut ws, local) = ws_peer(&server);
    // A first fragment of a text message (not final), then nothing final.
    ws.send_frame(0x01, b"begun", true);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100)); // pacing the load
        if !closes.rx.is_empty() {
            break;
        }
        let _ = ws.stream.write_all(&[0x89, 0x80, 0, 0, 0, 0]); // an empty ping
    }
    let reason = closes.reason_for(local);
    assert!(matches!(reason, CloseReason::FrameTimeout), "{reason:?}");
    server.shutdown(TIMEOUT).unwrap();
}

/// Partial frames count against the loop's `max_partial_bytes`: ten peers
/// on one loop hold frames of ten sizes (20 to 56 KB of body; a frame this
/// short counts whole once its header is in) under a 256 KiB budget. Over
/// the budget the loop closes the largest holder with `MemoryLimit`, so
/// exactly the largest are closed: all but the seven smallest (224,056
/// bytes; the eighth would make 272,064). They arrive largest first, so
/// closing the connection just read (or any but the largest) would close
/// other ones. The survivors still complete their frames.
#[test]
fn partial_frames_over_the_loop_budget_close_the_largest_holders() {
    const BUDGET: usize = 256 << 10;
    const HELD_BACK: usize = 100;
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(1)
            .max_partial_bytes(BUDGET)
            .route(1, echo),
    );
    // Largest first; frames of 20,008 to 56,008 bytes.
    let bodies: Vec<Vec<u8>> = (0..10u8)
        .rev()
        .map(|i| vec![i; 20_000 + 4_000 * usize::from(i)])
        .collect();
    let wires: Vec<Vec<u8>> = bodies.iter().map(|b| frame(1, b)).collect();
    // The policy's outcome, from the sizes: the smallest frames that fit.
    let mut total = 0;
    let kept = wires
        .iter()
        .rev()
        .take_while(|w| {
            total += w.len();
            total <= BUDGET
        })
        .count();
    assert_eq!(kept, 7, "the sizes no longer make the case this test means");
    // First, half a header each: too little to know the frame's length,
    // so each holds only a few bytes (and takes no buffer a closed holder
    // gave back to the pool).
    let mut clients: Vec<Client> = (0..wires.len())
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    for (c, wire) in clients.iter_mut().zip(&wires) {
        c.send_raw(&wire[..4]);
    }
    let mut read = 4 * clients.len() as u64;
    wait_until("the loop to read every half header", || {
        server.stats().bytes_in >= read
    });
    // Then each frame but its last bytes, one peer at a time, so the loop
    // sees them in this order.
    for (c, wire) in clients.iter_mut().zip(&wires) {
        let part = &wire[4..wire.len() - HELD_BACK];
        c.send_raw(part);
        read += part.len() as u64;
        wait_until("the loop to read a holder's frame", || {
            server.stats().bytes_in >= read
        });
    }
    let largest: HashSet<SocketAddr> = clients[..wires.len() - kept]
        .iter()
        .map(|c| c.stream.local_addr().unwrap())
        .collect();
    let mut closed = HashSet::new();
    for _ in 0..largest.len() {
        let (addr, reason) = closes.next();
        assert!(matches!(reason, CloseReason::MemoryLimit), "{reason:?}");
        closed.insert(addr);
    }
    assert_eq!(closed, largest, "closed holders are not the largest ones");
    for ((c, wire), body) in clients.iter_mut().zip(&wires).zip(&bodies) {
        if closed.contains(&c.stream.local_addr().unwrap()) {
            c.expect_closed();
            continue;
        }
        c.send_raw(&wire[wire.len() - HELD_BACK..]);
        let (id, got) = c.recv();
        assert_eq!(id, 1);
        assert!(got == *body, "echo differs ({} bytes sent)", body.len());
    }
    assert_eq!(
        server.stats().closed_by(&CloseReason::MemoryLimit),
        largest.len() as u64
    );
    assert!(closes.rx.is_empty(), "a survivor was closed");
    server.shutdown(TIMEOUT).unwrap();
}

/// A body sent whole but for its last byte, then stalled (the attack that
/// held 500 MiB with 500 peers), is closed after the window that saw no
/// progress: at most two windows after its first byte.
#[test]
fn a_body_stalled_before_its_last_byte_is_closed_within_two_windows() {
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(1)
            .frame_timeout(Duration::from_secs(1), 500)
            .route(1, echo),
    );
    let mut c = Client::connect(server.local_addr());
    let local = c.stream.local_addr().unwrap();
    let started = std::time::Instant::now();
    let wire = crate::common::frame(1, &[5u8; 100_000]);
    c.send_raw(&wire[..wire.len() - 1]);
    let reason = closes.reason_for(local);
    let took = started.elapsed();
    assert!(matches!(reason, CloseReason::FrameTimeout), "{reason:?}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// Unfinished WebSocket messages count against the same budget, at twice
/// their bytes (tungstenite's buffers): ten peers each send the first
/// fragment of a text message, 60,008 bytes on the wire (counted 120,016),
/// under a 512 KiB budget. Four fit (480,064 bytes) and five never do.
/// A read that takes the loop over the budget closes the largest holder,
/// which holds at least what that read added, so one close brings the
/// loop back under; had fewer than four survived, the loop held at most
/// four full holders before the last close and would not have closed.
/// So exactly six are closed with `MemoryLimit`, and the four left each
/// get their message echoed once they finish it.
#[test]
fn unfinished_websocket_messages_count_against_the_partial_budget() {
    const PEERS: usize = 10;
    const FIT: usize = 4;
    let (server, mut closes) = ws_server_tracked(
        Server::builder()
            .event_loops(1)
            .max_partial_bytes(512 << 10),
    );
    let mut peers = Vec::new();
    for _ in 0..PEERS {
        let (mut ws, local) = ws_peer(&server);
        ws.send_frame(0x01, &[b'a'; 60_000], true);
        peers.push((ws, local));
    }
    let mut closed = HashSet::new();
    for _ in 0..PEERS - FIT {
        let (addr, reason) = closes.next();
        assert!(matches!(reason, CloseReason::MemoryLimit), "{reason:?}");
        assert!(closed.insert(addr), "{addr} closed twice");
    }
    let mut survivors = 0;
    for (ws, local) in &mut peers {
        if closed.contains(local) {
            continue;
        }
        survivors += 1;
        // The final fragment: the whole message comes back.
        ws.send_frame(0x80, b"end", true);
        let (first, payload) = ws.recv().expect("the echo of a finished message");
        assert_eq!(first, 0x81);
        assert_eq!(payload.len(), 60_003);
        assert!(payload[..60_000].iter().all(|&b| b == b'a'));
        assert_eq!(&payload[60_000..], b"end");
    }
    assert_eq!(survivors, FIT);
    assert_eq!(
        server.stats().closed_by(&CloseReason::MemoryLimit),
        (PEERS - FIT) as u64
    );
    assert!(closes.rx.is_empty(), "a survivor was closed");
    drop(peers);
    server.shutdown(TIMEOUT).unwrap();
}
