//! A dialed TLS link whose handshake stalls with sends queued (issue 25,
//! item 15): it never opened, so there is nothing to linger for; the
//! handshake timeout ends it at its deadline, not `close_linger` later.
//! And messages queued while TLS connects fail (issue 25, item 3) go out
//! after the handshake that succeeds.

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::{CloseReason, Dial, Error, Reconnect, SeqPacker, Server};
use rustls::pki_types::ServerName;

use crate::common::{init_logs, track_closes, TIMEOUT};
use crate::tls_support::{client_config, server_config, test_cert};

/// A listener that accepts and reads, and never says a word; it holds
/// each socket until the dialer gives up. Returns its address.
fn silent_listener() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            std::thread::spawn(move || {
                socket.set_read_timeout(Some(TIMEOUT)).unwrap();
                while let Ok(1..) = socket.read(&mut [0u8; 4096]) {}
            });
        }
    });
    addr
}

const HANDSHAKE: Duration = Duration::from_millis(300);
const LINGER: Duration = Duration::from_secs(5);
/// The deadline plus a wheel tick (100 ms) and scheduling slack; far
/// below the linger.
const LATE: Duration = Duration::from_millis(1300);

#[test]
fn a_stalled_handshake_with_sends_queued_closes_at_its_deadline() {
    let addr = silent_listener();
    init_logs();
    let (builder, mut closes) = track_closes(
        Server::builder()
            .packer(SeqPacker::default())
            .handshake_timeout(HANDSHAKE)
            .close_linger(LINGER),
    );
    let client = builder.start().unwrap();
    let cert = test_cert();
    let localhost = ServerName::try_from("localhost").unwrap();
    let started = Instant::now();
    let conn = client
        .hub()
        .dial(Dial::new(addr).tls(client_config(&cert), localhost))
        .unwrap();
    conn.send(5, b"queued before the handshake").unwrap();
    let pending = conn.request(1, b"never sent", TIMEOUT).unwrap();
    let reason = closes.reason_for(addr);
    let took = started.elapsed();
    assert!(
        matches!(reason, CloseReason::HandshakeTimeout),
        "{reason:?}"
    );
    assert!(
        took >= HANDSHAKE && took < LATE,
        "closed after {took:?} (handshake timeout {HANDSHAKE:?}, linger {LINGER:?})"
    );
    let failed = pending.wait();
    assert!(matches!(failed, Err(Error::Disconnected)), "{failed:?}");
    client.shutdown(TIMEOUT).unwrap();
}

/// With a reconnect policy the stalled attempt is a loss: `on_disconnect`
/// reports it at the deadline too.
#[test]
fn a_stalled_handshake_with_sends_queued_is_lost_at_its_deadline() {
    let addr = silent_listener();
    init_logs();
    let (down_tx, downs) = unbounded();
    let client = Server::builder()
        .packer(SeqPacker::default())
        .handshake_timeout(HANDSHAKE)
        .close_linger(LINGER)
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send((Instant::now(), d.reason.clone()));
        })
        .start()
        .unwrap();
    let cert = test_cert();
    let localhost = ServerName::try_from("localhost").unwrap();
    let policy = Reconnect {
        initial: Duration::from_secs(60),
        ..Reconnect::default()
    };
    let started = Instant::now();
    let conn = client
        .hub()
        .dial(
            Dial::new(addr)
                .tls(client_config(&cert), localhost)
                .reconnect(policy),
        )
        .unwrap();
    conn.send(5, b"queued before the handshake").unwrap();
    let (at, reason) = downs.recv_timeout(TIMEOUT).expect("on_disconnect");
    assert!(
        matches!(reason, CloseReason::HandshakeTimeout),
        "{reason:?}"
    );
    let took = at - started;
    assert!(took >= HANDSHAKE && took < LATE, "lost after {took:?}");
    conn.close();
    client.shutdown(TIMEOUT).unwrap();
}

/// Over TLS too, what was queued while connects failed (plaintext, never
/// sealed) goes out after the handshake of the connection that succeeds,
/// once and in order.
#[test]
fn a_message_queued_while_tls_connects_fail_arrives_after_the_handshake() {
    let addr = super::free_port();
    init_logs();
    let (down_tx, downs) = unbounded();
    let client = Server::builder()
        .packer(SeqPacker::default())
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send(d.attempt);
        })
        .start()
        .unwrap();
    let cert = test_cert();
    let localhost = ServerName::try_from("localhost").unwrap();
    let policy = Reconnect {
        initial: Duration::from_millis(40),
        max: Duration::from_millis(80),
        ..Reconnect::default()
    };
    let conn = client
        .hub()
        .dial(
            Dial::new(addr)
                .tls(client_config(&cert), localhost)
                .reconnect(policy),
        )
        .unwrap();
    downs
        .recv_timeout(TIMEOUT)
        .expect("the first connect fails");
    conn.send_confirmed(5, b"hello")
        .wait()
        .expect("queued while down");
    while downs.try_recv().is_ok() {}
    downs.recv_timeout(TIMEOUT).expect("another connect fails");
    let (got_tx, got) = unbounded();
    let backend = Server::builder()
        .tls(std::sync::Arc::new(server_config(
            &cert,
            rustls::ALL_VERSIONS,
        )))
        .packer(SeqPacker::default())
        .route(5, move |ctx: &mut netloom::Context<'_>| {
            let _ = got_tx.send(ctx.body().to_vec());
        })
        .bind(addr)
        .expect("bind the TLS backend")
        .start()
        .unwrap();
    conn.send(5, b"world").unwrap();
    assert_eq!(got.recv_timeout(TIMEOUT).expect("hello arrives"), b"hello");
    assert_eq!(got.recv_timeout(TIMEOUT).unwrap(), b"world");
    client.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
    assert!(got.try_recv().is_err(), "a message arrived twice");
}
