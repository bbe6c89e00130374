//! Ends: no close_notify, handshake timeout, plaintext, failed handshakes.

use std::io::{self, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netloom::client::Client;
use netloom::{Builder, CloseReason, Error, Server, ServerHandle};
use rustls::pki_types::ServerName;
use rustls::version::{TLS12, TLS13};
use rustls::ClientConnection;

use super::tls_builder;
use crate::common::{echo, frame, start_tracked, Closes, TIMEOUT};
use crate::tls_support::{
    assert_only_alerts, client_config, client_config_versions, read_until_fin, server_config,
    test_cert, TestCert, TlsPeer, ECHO,
};

/// Start `builder` with its closes tracked, and connect a TLS client that
/// has had `first` echoed (it stays connected, to be checked again later).
fn start_with_client(
    builder: Builder,
    cert: &TestCert,
    first: &[u8],
) -> (ServerHandle, Closes, TlsPeer) {
    let (server, closes) = start_tracked(builder);
    let mut client = TlsPeer::connect(server.local_addr(), client_config(cert));
    client.assert_echoes(first);
    (server, closes, client)
}

#[test]
fn a_request_followed_by_close_notify_is_answered_as_its_tls_version_says() {
    let cert = test_cert();
    let (server, mut closes) = start_tracked(tls_builder(&cert));
    for versions in [&[&TLS12][..], &[&TLS13][..]] {
        let mut peer =
            TlsPeer::connect(server.local_addr(), client_config_versions(&cert, versions));
        let addr = peer.local_addr();
        // The request and close_notify leave in one write.
        peer.s
            .conn
            .writer()
            .write_all(&frame(ECHO, b"last request"))
            .unwrap();
        peer.s.conn.send_close_notify();
        peer.flush_in_one_write();
        if versions[0] == &TLS13 {
            // TLS 1.3 closes one direction: the reply still comes.
            assert_eq!(peer.recv(), (ECHO, b"last request".to_vec()));
        }
        // Then the server's close_notify (TLS 1.2: at once, nothing before
        // it), and the end of the stream.
        let mut rest = Vec::new();
        let end = io::Read::read_to_end(&mut peer.s, &mut rest);
        assert!(end.is_ok(), "TLS {:?}: {end:?}", versions[0].version);
        assert!(
            rest.is_empty(),
            "TLS {:?}: data after close_notify: {rest:?}",
            versions[0].version
        );
        assert!(matches!(closes.reason_for(addr), CloseReason::PeerClosed));
    }
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn clients_closing_without_close_notify_are_peer_closed() {
    let cert = test_cert();
    let (server, mut closes, mut bystander) =
        start_with_client(tls_builder(&cert), &cert, b"before");
    let addr = server.local_addr();

    // TCP shutdown after an exchange, no close_notify.
    let mut abrupt = TlsPeer::connect(addr, client_config(&cert));
    abrupt.assert_echoes(b"exchange");
    let a = abrupt.local_addr();
    abrupt.s.sock.tcp.shutdown(Shutdown::Both).unwrap();
    assert!(matches!(closes.reason_for(a), CloseReason::PeerClosed));

    // The stream ends in the middle of a record.
    let mut truncated = TlsPeer::connect(addr, client_config(&cert));
    truncated.assert_echoes(b"exchange");
    let t = truncated.local_addr();
    truncated
        .s
        .conn
        .writer()
        .write_all(&frame(ECHO, &[1; 4000]))
        .unwrap();
    let mut record = Vec::new();
    truncated.s.conn.write_tls(&mut record).unwrap();
    let tcp = &mut truncated.s.sock.tcp;
    tcp.write_all(&record[..record.len() / 2]).unwrap();
    tcp.shutdown(Shutdown::Both).unwrap();
    assert!(matches!(closes.reason_for(t), CloseReason::PeerClosed));

    // close_notify, then the TCP end: the same reason.
    let mut polite = TlsPeer::connect(addr, client_config(&cert));
    polite.assert_echoes(b"bye");
    let p = polite.local_addr();
    polite.s.conn.send_close_notify();
    polite.s.flush().unwrap();
    polite.s.sock.tcp.shutdown(Shutdown::Write).unwrap();
    assert!(matches!(closes.reason_for(p), CloseReason::PeerClosed));
    // The server ends the stream without sending anything more.
    match polite.read_to_end() {
        Ok(rest) => assert!(rest.is_empty(), "{} bytes after close", rest.len()),
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}"),
    }

    bystander.assert_echoes(b"still served");
    drop(bystander);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn silent_and_stalled_handshakes_time_out() {
    const LIMIT: Duration = Duration::from_millis(200);
    let cert = test_cert();
    // A client that finished its handshake is not affected by the timer.
    let (server, mut closes, mut done) = start_with_client(
        tls_builder(&cert).handshake_timeout(LIMIT),
        &cert,
        b"in time",
    );
    let addr = server.local_addr();

    // TCP only: never a byte.
    let started = Instant::now();
    let mut silent = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    let s = silent.local_addr().unwrap();
    assert_only_alerts(&read_until_fin(&mut silent));
    let waited = started.elapsed();
    assert!(
        waited >= LIMIT - Duration::from_millis(10),
        "closed after {waited:?}, before the handshake timeout"
    );
    assert!(
        waited < LIMIT + Duration::from_secs(2),
        "closed only after {waited:?}"
    );
    assert!(matches!(
        closes.reason_for(s),
        CloseReason::HandshakeTimeout
    ));

    // Half a ClientHello, then nothing.
    let mut hello = Vec::new();
    let mut conn = ClientConnection::new(
        client_config(&cert),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    conn.write_tls(&mut hello).unwrap();
    let mut stalled = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    let st = stalled.local_addr().unwrap();
    stalled.write_all(&hello[..hello.len() / 2]).unwrap();
    assert_only_alerts(&read_until_fin(&mut stalled));
    assert!(matches!(
        closes.reason_for(st),
        CloseReason::HandshakeTimeout
    ));

    // Well past the timeout, the finished connection still works.
    done.assert_echoes(b"still fine");
    let stats = server.stats();
    assert_eq!(stats.closed_by(&CloseReason::HandshakeTimeout), 2);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn plaintext_clients_on_a_tls_port_are_closed_cleanly() {
    let cert = test_cert();
    let (server, mut closes, mut tls) = start_with_client(tls_builder(&cert), &cert, b"before");
    let addr = server.local_addr();
    let requests: [&[u8]; 3] = [
        // A frame of our own protocol, in clear.
        b"\x05\x00\x00\x00\x01\x00\x00\x00hello",
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        // Looks like a handshake record, but is not one.
        b"\x16\x03\x01\x00\x05hello",
    ];
    for bytes in requests {
        let mut plain = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        let p = plain.local_addr().unwrap();
        plain.write_all(bytes).unwrap();
        // An alert at most, then FIN (not a reset).
        assert_only_alerts(&read_until_fin(&mut plain));
        match closes.reason_for(p) {
            CloseReason::TlsHandshake(msg) => assert!(!msg.is_empty()),
            other => panic!("{bytes:?}: expected TlsHandshake, got {other:?}"),
        }
    }
    tls.assert_echoes(b"after");
    assert_eq!(
        server
            .stats()
            .closed_by(&CloseReason::TlsHandshake(String::new())),
        3
    );
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn a_handshake_message_trickled_in_tiny_records_is_cut_off() {
    let cert = test_cert();
    let (server, mut closes, mut tls) = start_with_client(tls_builder(&cert), &cert, b"before");
    let addr = server.local_addr();
    // A ClientHello that says it is 65,535 bytes long, one byte per
    // record (6 bytes on the wire each). Send 150 KB of it: past the
    // server's 82 KiB cap on unfinished records, far from the end of the
    // message. Without the cap the server would keep it all and wait for
    // the rest until the handshake timeout.
    let record = |byte: u8| [0x16, 0x03, 0x01, 0x00, 0x01, byte];
    let wire: Vec<u8> = [0x01, 0x00, 0xff, 0xff]
        .into_iter()
        .chain((0..25_000).map(|i| i as u8))
        .flat_map(record)
        .collect();
    let mut peer = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    let p = peer.local_addr().unwrap();
    // The server may close (and reset) before the last bytes are written.
    let _ = peer.write_all(&wire);
    match closes.reason_for(p) {
        CloseReason::TlsHandshake(msg) => assert!(!msg.is_empty()),
        other => panic!("expected TlsHandshake, got {other:?}"),
    }
    tls.assert_echoes(b"after");
    server.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn failed_client_handshakes_are_errors_on_both_sides() {
    let cert = test_cert();
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(1)
            .tls(Arc::new(server_config(&cert, &[&TLS13])))
            .route(ECHO, echo),
    );
    let addr = server.local_addr();
    let stranger = test_cert();
    let cases = [
        (
            "wrong server name",
            "not-localhost.example",
            client_config(&cert),
        ),
        (
            "untrusted certificate",
            "localhost",
            client_config(&stranger),
        ),
        (
            "no common version",
            "localhost",
            client_config_versions(&cert, &[&TLS12]),
        ),
    ];
    for (what, name, config) in cases {
        match Client::connect_tls(addr, name, config) {
            Err(Error::Io(_)) => {}
            Err(e) => panic!("{what}: expected Error::Io, got {e}"),
            Ok(_) => panic!("{what}: the handshake succeeded"),
        }
        match closes.next().1 {
            CloseReason::TlsHandshake(msg) => assert!(!msg.is_empty(), "{what}"),
            other => panic!("{what}: expected TlsHandshake, got {other:?}"),
        }
    }
    // An invalid name never reaches the network.
    match Client::connect_tls(addr, "not a name!", client_config(&cert)) {
        Err(Error::Config(_)) => {}
        other => panic!("invalid name: expected Error::Config, got {other:?}"),
    }
    assert!(matches!(closes.next().1, CloseReason::PeerClosed));
    let mut good = Client::connect_tls(addr, "localhost", client_config(&cert)).unwrap();
    good.set_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(&good.round_trip(ECHO, b"ok").unwrap().body[..], b"ok");
    server.shutdown(Duration::from_secs(5)).unwrap();
}
