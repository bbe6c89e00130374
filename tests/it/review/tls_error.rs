//! A TLS error in a read does not drop what the records before it
//! carried: over TLS the messages they complete are handled before the
//! connection closes, and over wss:// too (the WebSocket layer above TLS
//! must see the plaintext TLS decrypted before it failed).

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::unbounded;
use netloom::{ws, CloseReason, Server};

use crate::common::{frame, track_closes, TIMEOUT};
use crate::tls_support::{client_config, server_config, test_cert, TlsPeer};
use crate::ws_raw::upgrade_request;

/// A record of application data that cannot be decrypted.
const BAD_RECORD: [u8; 25] = [
    0x17, 0x03, 0x03, 0x00, 0x14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
    19, 20,
];

/// Write `plain` through TLS, then a bad record, in one write.
fn send_then_corrupt(peer: &mut TlsPeer, plain: &[u8]) {
    peer.s.conn.writer().write_all(plain).unwrap();
    let mut wire = Vec::new();
    while peer.s.conn.wants_write() {
        peer.s.conn.write_tls(&mut wire).unwrap();
    }
    wire.extend_from_slice(&BAD_RECORD);
    peer.s.sock.tcp.write_all(&wire).unwrap();
}

#[test]
fn messages_before_a_bad_record_are_handled_over_tls_and_wss() {
    crate::common::init_logs();
    let cert = test_cert();
    let (got_tx, got) = unbounded();
    let got_ws = got_tx.clone();
    let (builder, mut closes) = track_closes(
        Server::builder()
            .event_loops(2)
            .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)))
            .route(1, move |ctx: &mut netloom::Context<'_>| {
                let _ = got_tx.send(ctx.body().to_vec());
            })
            .route(ws::BINARY, move |ctx: &mut netloom::Context<'_>| {
                let _ = got_ws.send(ctx.body().to_vec());
            }),
    );
    let server = builder
        .bind("127.0.0.1:0")
        .unwrap()
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let (tls_addr, wss_addr) = (server.local_addrs()[0], server.local_addrs()[1]);

    // TLS: the frame before the bad record is handled.
    let mut peer = TlsPeer::connect(tls_addr, client_config(&cert));
    send_then_corrupt(&mut peer, &frame(1, b"over tls"));
    let (_, reason) = closes.next();
    assert!(matches!(reason, CloseReason::Tls(_)), "{reason}");
    assert_eq!(got.recv_timeout(TIMEOUT).unwrap(), b"over tls");

    // wss: the same.
    let mut peer = TlsPeer::connect(wss_addr, client_config(&cert));
    peer.send_raw(upgrade_request("/").as_bytes());
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        peer.s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    // A masked binary frame "over wss" (mask key 0).
    let mut ws_frame = vec![0x82, 0x80 | 8, 0, 0, 0, 0];
    ws_frame.extend_from_slice(b"over wss");
    send_then_corrupt(&mut peer, &ws_frame);
    let (_, reason) = closes.next();
    assert!(matches!(reason, CloseReason::Tls(_)), "{reason}");
    assert_eq!(
        got.try_recv().ok(),
        Some(b"over wss".to_vec()),
        "the message before the bad record was dropped"
    );
    server.shutdown(Duration::from_secs(5)).unwrap();
}
