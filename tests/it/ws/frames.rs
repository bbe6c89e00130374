//! Raw frames, the protocol's duties: a frame in the upgrade's packet or fed
//! a byte at a time, violations (1002), ping/pong and the closing
//! handshake, the idle ping, handler panics (1011), text that must be UTF-8.

use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::ws;
use netloom::CloseReason;

use super::{closes, echo_builder, next_close, start_ws};
use crate::common::TIMEOUT;
use crate::ws_raw::{upgrade_request, RawWs};

#[test]
fn request_and_first_frame_in_one_packet() {
    let server = start_ws(echo_builder());
    let mut raw = RawWs::tcp(server.local_addr());
    let mut bytes = upgrade_request("/").into_bytes();
    // A masked text frame "hi" right behind the request.
    bytes.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
    raw.write(&bytes);
    assert!(raw.response_head().starts_with("HTTP/1.1 101"));
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    assert_eq!(raw.recv(), Some((0x81, b"hi".to_vec())));
    drop(raw);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn frames_fed_one_byte_at_a_time() {
    let server = start_ws(echo_builder());
    let mut raw = RawWs::tcp(server.local_addr());
    for b in upgrade_request("/").bytes() {
        raw.write(&[b]);
    }
    assert!(raw.response_head().starts_with("HTTP/1.1 101"));
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    let payload = vec![b'q'; 300];
    let mut frame = vec![0x82, 0x80 | 126, 1, 44, 9, 8, 7, 6];
    frame.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ [9, 8, 7, 6][i % 4]),
    );
    for b in frame {
        raw.write(&[b]);
    }
    assert_eq!(raw.recv(), Some((0x82, payload)));
    drop(raw);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn protocol_violations_close_with_1002() {
    let (builder, closed) = closes(echo_builder());
    let server = start_ws(builder);
    let cases: Vec<(&str, u8, Vec<u8>, bool)> = vec![
        ("unmasked client frame", 0x81, b"hi".to_vec(), false),
        ("reserved bit set", 0xc1, b"hi".to_vec(), true),
        ("continuation without a start", 0x80, b"hi".to_vec(), true),
        ("unknown opcode", 0x83, b"hi".to_vec(), true),
        ("control frame over 125 bytes", 0x89, vec![0; 126], true),
        ("fragmented control frame", 0x09, b"p".to_vec(), true),
    ];
    for (what, first, payload, masked) in cases {
        let mut raw = RawWs::connect(server.local_addr(), "/");
        assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
        raw.send_frame(first, &payload, masked);
        let (code, _) = raw.expect_close();
        assert_eq!(code, 1002, "{what}");
        raw.expect_eof();
        match next_close(&closed) {
            CloseReason::WsProtocol { code: 1002, .. } => {}
            other => panic!("{what}: unexpected close reason {other:?}"),
        }
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn ping_gets_pong_and_peer_close_is_answered() {
    let (builder, closed) = closes(echo_builder());
    let server = start_ws(builder);
    let mut raw = RawWs::connect(server.local_addr(), "/");
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    raw.send_frame(0x89, b"ping!", true);
    assert_eq!(raw.recv(), Some((0x8a, b"ping!".to_vec())));
    // A ping between the fragments of a message.
    raw.send_frame(0x01, b"frag", true);
    raw.send_frame(0x89, b"", true);
    raw.send_frame(0x80, b"ment", true);
    assert_eq!(raw.recv(), Some((0x8a, Vec::new())));
    assert_eq!(raw.recv(), Some((0x81, b"fragment".to_vec())));
    let mut close = 4321u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"client bye");
    raw.send_frame(0x88, &close, true);
    assert_eq!(raw.expect_close(), (4321, "client bye".to_string()));
    raw.expect_eof();
    match next_close(&closed) {
        CloseReason::WsClosed { code: 4321, reason } => assert_eq!(reason, "client bye"),
        other => panic!("unexpected close reason {other:?}"),
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn server_close_waits_for_the_peer_close_frame() {
    let (builder, closed) = closes(
        echo_builder()
            .close_linger(Duration::from_secs(5))
            .route(ws::TEXT, |ctx| ctx.close_with(4000, "done")),
    );
    let server = start_ws(builder);
    let mut raw = RawWs::connect(server.local_addr(), "/");
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    raw.send_frame(0x81, b"bye", true);
    assert_eq!(raw.expect_close(), (4000, "done".to_string()));
    // The server keeps the TCP connection until our close frame comes.
    assert!(closed.recv_timeout(Duration::from_millis(200)).is_err());
    // Data after the server's close frame is ignored.
    raw.send_frame(0x81, b"ignored", true);
    raw.send_frame(0x88, &4000u16.to_be_bytes(), true);
    raw.expect_eof();
    assert!(matches!(next_close(&closed), CloseReason::Local));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

/// A peer that never answers the server's close frame is dropped when the
/// linger passes: not before, and not at the 5 s default.
#[test]
fn server_close_gives_up_waiting_after_the_linger() {
    let linger = Duration::from_millis(300);
    let (builder, closed) = closes(
        echo_builder()
            .close_linger(linger)
            .route(ws::TEXT, |ctx| ctx.close()),
    );
    let server = start_ws(builder);
    let mut raw = RawWs::connect(server.local_addr(), "/");
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    // The lower bound is timed from before the frame that makes the server
    // close: the linger starts in the loop turn that reads it, after this.
    // The loop's clock counts whole milliseconds and its timers never fire
    // early (the wheel's 100 ms ticks round later), so at most that
    // truncation (1 ms) may be missing. The upper bound is timed from the
    // close frame: the linger counts from the start of the loop turn that
    // sends it, so it cannot start later than this.
    let asked = Instant::now();
    raw.send_frame(0x81, b"x", true);
    assert_eq!(raw.expect_close().0, 1000);
    let close_frame = Instant::now();
    raw.expect_eof();
    let (waited, since_close) = (asked.elapsed(), close_frame.elapsed());
    assert!(
        waited + Duration::from_millis(1) >= linger,
        "dropped after {waited:?}, before the {linger:?} linger"
    );
    assert!(
        since_close < linger + Duration::from_secs(1),
        "dropped {since_close:?} after the close frame: the {linger:?} linger was not used"
    );
    assert!(matches!(next_close(&closed), CloseReason::Local));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn idle_peer_gets_a_ping_then_is_closed() {
    let (builder, closed) = closes(
        echo_builder()
            .heartbeat(Duration::from_millis(50), Duration::from_millis(400))
            .ping_before_kick(Duration::from_millis(150), 99)
            .close_linger(Duration::from_millis(200)),
    );
    let server = start_ws(builder);
    let mut raw = RawWs::connect(server.local_addr(), "/");
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    // A WebSocket ping, not a packer message with id 99.
    assert_eq!(raw.recv(), Some((0x89, Vec::new())));
    assert_eq!(raw.expect_close(), (1000, "idle timeout".to_string()));
    raw.expect_eof();
    assert!(matches!(next_close(&closed), CloseReason::IdleTimeout));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn handler_panic_closes_with_1011() {
    let (builder, closed) = closes(echo_builder().route(ws::TEXT, |_| -> netloom::Result<()> {
        panic!("handler bug")
    }));
    let server = start_ws(builder);
    let mut raw = RawWs::connect(server.local_addr(), "/");
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    raw.send_frame(0x81, b"boom", true);
    assert_eq!(raw.expect_close().0, 1011);
    raw.send_frame(0x88, &1011u16.to_be_bytes(), true);
    raw.expect_eof();
    assert!(matches!(next_close(&closed), CloseReason::HandlerPanic));
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn text_send_must_be_utf8() {
    let (tx, rx) = unbounded();
    let server = start_ws(echo_builder().route(ws::TEXT, move |ctx| {
        let _ = tx.send(ctx.send(ws::TEXT, b"\xff\xfe").is_err());
        ctx.send_binary(b"\xff\xfe")
    }));
    let mut raw = RawWs::connect(server.local_addr(), "/");
    assert_eq!(raw.recv(), Some((0x81, b"welcome".to_vec())));
    raw.send_frame(0x81, b"go", true);
    assert_eq!(raw.recv(), Some((0x82, b"\xff\xfe".to_vec())));
    assert!(
        rx.recv_timeout(TIMEOUT).unwrap(),
        "invalid UTF-8 text was sent"
    );
    drop(raw);
    server.shutdown(Duration::from_secs(5)).unwrap();
}
