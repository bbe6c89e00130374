//! What hostile WebSocket peers make the server really hold (issue 25,
//! items 11 and 12), measured in this process's own memory (Linux
//! `/proc/self/status`): the accounting could undercount, the kernel's
//! figures cannot. The tests run one at a time (`common::serial()`) in
//! their own binary, so nothing else allocates meanwhile.
#![cfg(all(target_os = "linux", feature = "ws"))]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use netloom::{ws, CloseReason, Server, ServerHandle};

use common::{serial, wait_until, Closes, TIMEOUT};

/// A field of `/proc/self/status` in KiB (`VmData`: memory committed to
/// the heap, touched or not; `VmRSS`: resident).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

/// A client upgraded on `addr` (the response read and checked).
fn upgraded(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(REQUEST).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("response head");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A masked client frame header (mask key 0: the payload goes as it is).
fn header(first: u8, len: u64) -> Vec<u8> {
    let mut h = vec![first, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0; 4]);
    h
}

fn server(builder: netloom::Builder) -> (ServerHandle, Closes) {
    let builder = builder
        .ws_max_message(4 << 20)
        .route(ws::BINARY, |ctx| ctx.reply(ws::BINARY, ctx.body()))
        .route(ws::TEXT, |ctx| ctx.close());
    common::init_logs();
    let (builder, closes) = common::track_closes(builder);
    let server = builder
        .bind_ws("127.0.0.1:0")
        .expect("bind_ws")
        .start()
        .expect("start");
    (server, closes)
}

/// 400 clients each send only the 14-byte header of a frame declaring
/// 1,000,000 bytes. tungstenite reserved the whole declared frame on its
/// header (400 MB committed); now a partial frame holds what arrived.
#[test]
fn headers_declaring_a_megabyte_commit_only_what_arrived() {
    let _serial = serial();
    let (server, _closes) = server(Server::builder().event_loops(2));
    let before = status_kib("VmData");
    let peers: Vec<TcpStream> = (0..400)
        .map(|_| {
            let mut s = upgraded(server.local_addr());
            s.write_all(&header(0x82, 1_000_000)).unwrap();
            s
        })
        .collect();
    wait_until("every header to be read", || {
        server.stats().bytes_in >= 400 * (REQUEST.len() as u64 + 14)
    });
    let grown = status_kib("VmData").saturating_sub(before);
    assert!(
        grown < 40 << 10,
        "400 one-megabyte headers committed {grown} KiB (was ~400 MiB)"
    );
    assert_eq!(server.stats().closed_total(), 0, "{}", server.stats());
    drop(peers);
}

/// The server closes 40 clients (a close frame, then it waits for theirs)
/// and they go on sending a fragmented message of 2 MiB each. Data after
/// our close frame is never delivered: it must not be assembled either
/// (40 × 2 MiB resident before), and the budget counts what is held.
#[test]
fn data_sent_after_our_close_frame_is_not_assembled() {
    let _serial = serial();
    let (server, mut closes) = server(
        Server::builder()
            .event_loops(2)
            .max_partial_bytes(1 << 20)
            .close_linger(Duration::from_secs(30)),
    );
    let mut peers: Vec<TcpStream> = (0..40).map(|_| upgraded(server.local_addr())).collect();
    // A text message asks the server to close: its close frame comes back.
    for p in &mut peers {
        p.write_all(&[0x81, 0x80, 0, 0, 0, 0]).unwrap();
        let mut close = [0u8; 2];
        p.read_exact(&mut close).unwrap();
        assert_eq!(close[0], 0x88, "a close frame");
    }
    let before = status_kib("VmRSS");
    let chunk = vec![0x42u8; 64 << 10];
    for p in &mut peers {
        // A fragmented binary message, 32 fragments of 64 KiB, no close.
        p.write_all(&header(0x02, chunk.len() as u64)).unwrap();
        p.write_all(&chunk).unwrap();
        for _ in 0..31 {
            p.write_all(&header(0x00, chunk.len() as u64)).unwrap();
            p.write_all(&chunk).unwrap();
        }
    }
    wait_until("the server to read it all", || {
        server.stats().bytes_in >= 40 * 32 * (64 << 10)
    });
    let grown = status_kib("VmRSS").saturating_sub(before);
    assert!(
        grown < 24 << 10,
        "{grown} KiB resident for data after the close (was ~80 MiB)"
    );
    // Their close frames end it.
    for p in &mut peers {
        p.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]).unwrap();
    }
    for _ in 0..40 {
        let (_, reason) = closes.next();
        assert!(matches!(reason, CloseReason::Local), "{reason}");
    }
}
