//! What a dialed connection keeps, and what it starts again, from one
//! connect attempt to the next: its heartbeat runs on every attempt (a
//! timer left from an earlier attempt never acts on a later one), and
//! sends addressed to it by id reach it on a server that only dials.

use std::net::TcpListener;
use std::time::Duration;

use crossbeam_channel::unbounded;
use netloom::{CloseReason, Dial, Reconnect, SeqPacker, Server};

use crate::common::{init_logs, TIMEOUT};

/// A backend that accepts (in the kernel's backlog) and never says a
/// word: the dialer's heartbeat must kick every connection to it.
#[test]
fn the_heartbeat_kicks_a_silent_backend_again_after_every_reconnect() {
    init_logs();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let (down_tx, downs) = unbounded();
    let (up_tx, ups) = unbounded();
    let client = Server::builder()
        .packer(SeqPacker::default())
        .heartbeat(Duration::from_millis(20), Duration::from_millis(150))
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send(d.reason.clone());
        })
        .on_reconnect(move |_s, attempts| {
            let _ = up_tx.send(attempts);
        })
        .start()
        .unwrap();
    let policy = Reconnect {
        initial: Duration::from_millis(20),
        factor: 1.0,
        max: Duration::from_millis(20),
        jitter: 0.0,
        max_attempts: None,
    };
    let conn = client
        .hub()
        .dial(Dial::new(silent.local_addr().unwrap()).reconnect(policy))
        .unwrap();
    // Three losses in a row, each an idle kick: the heartbeat of the
    // first attempt did not end with it.
    for round in 1..=3 {
        let reason = downs
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("no idle kick in round {round}"));
        assert!(
            matches!(reason, CloseReason::IdleTimeout),
            "round {round}: lost for {reason}"
        );
        assert_eq!(
            ups.recv_timeout(TIMEOUT),
            Ok(1),
            "round {round}: reconnected"
        );
    }
    conn.close();
    drop(silent);
    client.shutdown(TIMEOUT).unwrap();
}

/// `Hub::send_to` on a server with no listener: the message is encoded
/// for the dialed connection's packer although no listener speaks it.
#[test]
fn send_to_reaches_a_dialed_connection_on_a_server_that_only_dials() {
    let (backend, got) = super::sink_backend();
    let client = super::dialer();
    let conn = client.hub().connect(backend.local_addr()).unwrap();
    client.hub().send_to([conn.id()], 5, b"to one").unwrap();
    assert_eq!(got.recv_timeout(TIMEOUT).unwrap(), b"to one");
    assert_eq!(client.stats().send_errors, 0);
    client.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}
