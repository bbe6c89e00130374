//! A dialed TLS link lost in the middle of a record must stop counting
//! that record against the loop's partial-frame budget: its TLS session
//! (and the record buffer) is gone while it waits to reconnect. Nor does
//! a connection closed in the middle of a frame count it any longer.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::unbounded;
use netloom::{CloseReason, Dial, Reconnect, Server};
use rustls::pki_types::ServerName;

use crate::common::{echo, frame, init_logs, wait_until, TIMEOUT};
use crate::tls_support::{client_config, server_config, test_cert};

#[test]
fn a_lost_tls_link_waiting_to_reconnect_holds_nothing_against_the_budget() {
    init_logs();
    // A backend that answers the ClientHello with 8 KB of a 16 KB record,
    // then hangs up.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut socket, _)) = backend.accept() else {
            return;
        };
        socket.set_read_timeout(Some(TIMEOUT)).unwrap();
        let _ = socket.read(&mut [0u8; 4096]);
        let mut record = vec![0x16, 0x03, 0x03, 0x40, 0x00];
        record.extend_from_slice(&[0u8; 8000]);
        let _ = socket.write_all(&record);
    });
    let (lost_tx, lost) = unbounded();
    let (closed_tx, closed) = unbounded();
    let server = Server::builder()
        .event_loops(1)
        .max_partial_bytes(12_000)
        .route(1, echo)
        .on_disconnect(move |_, d| {
            let _ = lost_tx.send(d.reason.clone());
        })
        .on_close(move |s, reason| {
            let _ = closed_tx.send((s.peer_addr(), reason.clone()));
        })
        .bind("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let policy = Reconnect {
        initial: Duration::from_secs(60),
        ..Reconnect::default()
    };
    let localhost = ServerName::try_from("localhost").unwrap();
    server
        .hub()
        .dial(
            Dial::new(backend_addr)
                .tls(client_config(&test_cert()), localhost)
                .reconnect(policy),
        )
        .unwrap();
    let reason = lost.recv_timeout(TIMEOUT).expect("the link is lost");
    assert!(matches!(reason, CloseReason::PeerClosed), "{reason}");
    // The link now holds nothing. A client's frame of 7 KB, well under the
    // 12 KB budget, arrives in two parts; it must be echoed.
    let before = server.stats().bytes_in;
    let mut client = TcpStream::connect(server.local_addr()).unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let body = vec![b'x'; 7000];
    let wire = frame(1, &body);
    client.write_all(&wire[..6000]).unwrap();
    // The first part is read on its own.
    wait_until("the first part is read", || {
        server.stats().bytes_in >= before + 6000
    });
    client.write_all(&wire[6000..]).unwrap();
    let mut back = vec![0u8; wire.len()];
    let got = client.read_exact(&mut back);
    let closes: Vec<_> = closed.try_iter().collect();
    assert!(
        got.is_ok() && back == wire,
        "the client was not echoed ({got:?}); closes: {closes:?}; {}",
        server.stats()
    );
    // Nothing was over the budget: no one closed, no link dropped again.
    let again: Vec<_> = lost.try_iter().collect();
    assert!(
        again.is_empty(),
        "the idle link was dropped again: {again:?}"
    );
    assert_eq!(server.stats().closed_by(&CloseReason::MemoryLimit), 0);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

/// A client gone in the middle of a 1 MB frame gives back what its
/// partial frame held: `Stats::partial_held` (what the loop's budget
/// counts) returns to 0.
#[test]
fn a_connection_closed_mid_frame_holds_nothing_against_the_budget() {
    let wire = frame(1, &vec![b'x'; 1 << 20]);
    closed_mid_unit_gives_back(Server::builder(), &wire[..200_000], 100_000);
}

/// The same over TLS, the client gone in the middle of a record: the TLS
/// layer still holds the record's bytes when the connection is removed
/// (found by mutation testing: the removal could add them to the loop's
/// count instead of taking them off, with every test passing).
#[test]
fn a_tls_connection_closed_mid_record_holds_nothing_against_the_budget() {
    let cert = test_cert();
    let builder = Server::builder().tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)));
    // A handshake record's header for 16 KB, and 8 KB of it.
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    record.extend_from_slice(&[0u8; 8000]);
    closed_mid_unit_gives_back(builder, &record, 8000);
}

/// A client of a one-loop server from `builder` writes `part` of a frame
/// (or record), which the server holds (at least `held` bytes), then goes:
/// the loop's count returns to 0.
fn closed_mid_unit_gives_back(builder: netloom::Builder, part: &[u8], held: u64) {
    init_logs();
    let server = builder
        .event_loops(1)
        .route(1, echo)
        .bind("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut client = TcpStream::connect(server.local_addr()).unwrap();
    client.write_all(part).unwrap();
    wait_until("the partial unit is held", || {
        server.stats().partial_held >= held
    });
    drop(client);
    wait_until("the closed connection's partial unit is given back", || {
        let stats = server.stats();
        stats.connections == 0 && stats.partial_held == 0
    });
    server.shutdown(Duration::from_secs(5)).unwrap();
}
