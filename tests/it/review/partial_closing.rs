//! Review of 137b8b4 (`check_partial_memory`): a connection already
//! closing (it waits for the peer's WebSocket close frame) that goes over
//! the loop's partial-frame budget is finalized at once. Does
//! `unflushed_closes` count it exactly once?
//!
//! While closing, the WebSocket layer drops data frames whatever their
//! size (`FrameTracker`, `limits.closing`): a closing ws:// connection
//! holds nothing for them. What a closing wss:// connection still holds
//! is TLS's partial record (`incoming`, up to one record): with a budget
//! under a record, that is the way in.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded};
use netloom::ws::{self, WsMode};
use netloom::{CloseReason, Dial, Reconnect, Server};
use socket2::{Domain, Socket, Type};

use crate::common::{track_closes, wait_until, TIMEOUT};
use crate::tls_support::{client_config, server_config, test_cert, TlsPeer};
use crate::ws_raw::upgrade_request;

/// Budget of the loop: under one TLS record.
const BUDGET: usize = 4 << 10;

/// Encrypt 16 KiB of application data into one record and write only its
/// first 10 KiB: the receiver holds a partial record.
fn send_partial_record<D>(conn: &mut rustls::ConnectionCommon<D>, tcp: &mut TcpStream) {
    conn.writer().write_all(&[0x82; 16 << 10]).unwrap();
    let mut wire = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut wire).unwrap();
    }
    assert!(wire.len() > 16 << 10, "{} bytes", wire.len());
    tcp.write_all(&wire[..10 << 10]).unwrap();
}

/// A TLS client of `server` whose socket takes at most 4 KiB: the server
/// fills the socket quickly and keeps the rest of its reply in records.
fn slow_reader(server: &netloom::ServerHandle, cert: &crate::tls_support::TestCert) -> TlsPeer {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect_timeout(&server.local_addr().into(), TIMEOUT)
        .unwrap();
    TlsPeer::over(socket.into(), client_config(cert))
}

/// A wss:// server whose handler replies `reply` bytes and closes
/// (`Local`: it then waits for the client's close frame), and a client
/// with a 4 KiB receive buffer (set before connecting) that sends one
/// message and never reads. Returns the reason `on_close` got, how long
/// after the partial record it came, and the stats.
fn closing_wss_over_budget(reply: usize) -> (CloseReason, Duration, netloom::Stats) {
    crate::common::init_logs();
    let cert = test_cert();
    let (closed_tx, closed) = bounded(1);
    let (builder, mut closes) = track_closes(
        Server::builder()
            .event_loops(1)
            .max_partial_bytes(BUDGET)
            .write_high_water(64 << 20)
            .send_buffer_size(4096)
            .close_linger(Duration::from_secs(8))
            .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)))
            .route(ws::BINARY, move |ctx| {
                ctx.reply(ws::BINARY, vec![3u8; reply])?;
                ctx.close();
                let _ = closed_tx.send(());
                Ok::<_, netloom::Error>(())
            }),
    );
    let server = builder.bind_ws("127.0.0.1:0").unwrap().start().unwrap();
    let mut peer = slow_reader(&server, &cert);
    peer.send_raw(upgrade_request("/").as_bytes());
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = peer.s.read(&mut chunk).expect("the upgrade's answer");
        assert!(n > 0, "closed before the answer");
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101"));
    // "go", masked with key 0.
    peer.send_raw(&[0x82, 0x82, 0, 0, 0, 0, b'g', b'o']);
    closed.recv_timeout(TIMEOUT).expect("the handler closed");
    let began = Instant::now();
    send_partial_record(&mut peer.s.conn, &mut peer.s.sock.tcp);
    let (_, reason) = closes.next();
    let took = began.elapsed();
    let stats = server.stats();
    println!("reply {reply}: closed: {reason} after {took:?}; {stats}");
    drop(peer);
    server.shutdown(TIMEOUT).unwrap();
    (reason, took, stats)
}

/// 16 MiB queued: the write queue holds most of it when the closing
/// connection goes over the budget. One close that dropped data.
#[test]
fn a_closing_wss_connection_over_the_budget_with_data_queued_counts_once() {
    let (reason, took, stats) = closing_wss_over_budget(16 << 20);
    assert!(matches!(reason, CloseReason::Local), "{reason}");
    assert!(took < Duration::from_secs(6), "the linger ran out instead");
    assert_eq!(stats.unflushed_closes, 1, "{stats}");
}

/// 40 KiB: it fits one TLS batch (64 KiB), so the reply and the close
/// frame are sealed into records at once and the write queue is empty;
/// the kernel takes about 16 KiB of them (a 4 KiB send buffer, a 4 KiB
/// receive buffer), the rest waits in the TLS layer
/// (`layer.wants_write()`). The connection is dropped over the budget
/// with ~24 KiB and its close frame unsent: `flush` and
/// `keep_for_reconnect` would count that, `check_partial_memory` looks at
/// the queue only.
#[test]
fn a_closing_wss_connection_over_the_budget_with_records_unwritten_counts_once() {
    let (reason, took, stats) = closing_wss_over_budget(40 << 10);
    assert!(matches!(reason, CloseReason::Local), "{reason}");
    assert!(took < Duration::from_secs(6), "the linger ran out instead");
    assert!(stats.bytes_out < 40 << 10, "all written: {stats}");
    assert_eq!(stats.unflushed_closes, 1, "{stats}");
}

/// A wss:// link (packer mode) with a reconnect policy: 16 MiB queued the
/// backend never reads; the backend sends a malformed packer frame
/// (`Protocol`: the link closes and waits for the backend's close frame),
/// then 10 KiB of a 16 KiB TLS record: over the 4 KiB budget, the closing
/// link is dropped and kept for its reconnect. One close that dropped
/// data (a frame cut in the middle): `unflushed_closes` is 1, not 2
/// (137b8b4's claim; at 70a8ddd it was counted twice).
#[test]
fn a_closing_wss_link_over_the_budget_kept_for_reconnect_counts_once() {
    crate::common::init_logs();
    let cert = test_cert();
    let config = Arc::new(server_config(&cert, rustls::ALL_VERSIONS));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("wss://{}/", listener.local_addr().unwrap());
    let (go_tx, go) = bounded::<()>(1);
    let (stop_tx, stop) = bounded::<()>(1);
    let (wrote_tx, wrote) = bounded::<u64>(1);
    let (partial_tx, partial) = bounded::<()>(1);
    let backend = thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("TLS handshake");
        }
        // The upgrade request comes through TLS.
        {
            let mut head = Vec::new();
            let mut chunk = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                assert_eq!(s.read(&mut chunk).unwrap(), 1, "the upgrade request");
                head.push(chunk[0]);
                assert!(head.len() < 64 << 10);
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let key = text
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("sec-websocket-key")
                        .then(|| v.trim().to_owned())
                })
                .expect("a key");
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            s.write_all(answer.as_bytes()).unwrap();
            s.flush().unwrap();
        }
        go.recv_timeout(TIMEOUT).expect("go");
        // A packer frame declaring 4 GiB: malformed.
        s.conn
            .writer()
            .write_all(&[0x82, 8, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0])
            .unwrap();
        let mut wire = Vec::new();
        while s.conn.wants_write() {
            s.conn.write_tls(&mut wire).unwrap();
        }
        s.sock.write_all(&wire).unwrap();
        wrote_tx.send(wire.len() as u64).unwrap();
        // Once the link read it (it is closing, waiting for our close
        // frame): a partial record.
        partial.recv_timeout(TIMEOUT).expect("partial");
        send_partial_record(&mut s.conn, &mut s.sock);
        let _ = stop.recv_timeout(TIMEOUT);
        drop(s);
    });
    let (down_tx, downs) = unbounded();
    let server = Server::builder()
        .event_loops(1)
        .max_partial_bytes(BUDGET)
        .write_high_water(64 << 20)
        .close_linger(Duration::from_secs(8))
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send(d.reason.clone());
        })
        .start()
        .unwrap();
    let hub = server.hub();
    let policy = Reconnect {
        initial: Duration::from_secs(60),
        factor: 1.0,
        max: Duration::from_secs(60),
        jitter: 0.0,
        max_attempts: None,
    };
    let link = hub
        .dial(
            Dial::wss(&url, client_config(&cert))
                .unwrap()
                .ws_mode(WsMode::Packer)
                .reconnect(policy),
        )
        .unwrap();
    wait_until("the link open", || hub.stats().connects == 1);
    for _ in 0..64 {
        link.send(2, vec![7u8; 256 << 10]).unwrap();
    }
    let base = hub.stats().bytes_in;
    go_tx.send(()).unwrap();
    let n = wrote.recv_timeout(TIMEOUT).expect("the malformed frame");
    wait_until("the malformed frame read", || {
        hub.stats().bytes_in >= base + n
    });
    let began = Instant::now();
    partial_tx.send(()).unwrap();
    let reason = downs.recv_timeout(TIMEOUT).expect("on_disconnect");
    let took = began.elapsed();
    let stats = hub.stats();
    println!("down: {reason} after {took:?}; {stats}");
    link.close();
    server.shutdown(TIMEOUT).unwrap();
    let _ = stop_tx.send(());
    backend.join().unwrap();
    assert!(matches!(reason, CloseReason::Protocol(_)), "{reason}");
    assert!(took < Duration::from_secs(6), "the linger ran out instead");
    assert_eq!(stats.unflushed_closes, 1, "{stats}");
}

/// Outside 137b8b4, the same look at the queue only: `close_all_now` (the
/// shutdown deadline) counts a connection unflushed when its queue holds
/// something. A tls:// connection (no WebSocket close frame to queue)
/// whose 40 KiB reply was sealed into records the client never read has
/// an empty queue: `shutdown` must still say one connection was closed
/// unflushed.
#[test]
fn a_tls_connection_with_records_unwritten_at_the_shutdown_deadline_is_unflushed() {
    crate::common::init_logs();
    let cert = test_cert();
    let server = Server::builder()
        .event_loops(1)
        .send_buffer_size(4096)
        .close_linger(Duration::from_secs(8))
        .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)))
        .route(1, |ctx| ctx.reply(1, vec![3u8; 40 << 10]))
        .bind("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut peer = slow_reader(&server, &cert);
    peer.send(1, b"");
    wait_until("the reply queued", || server.stats().messages_out == 1);
    let stats = server.stats();
    let result = server.shutdown(Duration::from_millis(500));
    println!("shutdown: {result:?}; before it: {stats}");
    drop(peer);
    assert!(stats.bytes_out < 40 << 10, "all written: {stats}");
    assert!(
        matches!(result, Err(netloom::Error::ShutdownTimeout(1))),
        "{result:?}"
    );
}
