//! What a dialed connection keeps, and what it starts again, from one
//! connect attempt to the next: its heartbeat runs on every attempt (a
//! timer left from an earlier attempt never acts on a later one), and
//! sends addressed to it by id reach it on a server that only dials.

use std::net::TcpListener;
use std::time::{Duration, Instant};

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
    let idle = Duration::from_millis(150);
    let client = Server::builder()
        .packer(SeqPacker::default())
        .heartbeat(Duration::from_millis(20), idle)
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send((d.reason.clone(), Instant::now()));
        })
        .on_reconnect(move |_s, attempts| {
            let _ = up_tx.send((attempts, Instant::now()));
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
    // first attempt did not end with it. Each kick comes a whole idle
    // timeout after its connection opened: no timer of an earlier attempt
    // cut it short.
    let mut opened_at = None;
    for round in 1..=3 {
        let (reason, at) = downs
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("no idle kick in round {round}"));
        assert!(
            matches!(reason, CloseReason::IdleTimeout),
            "round {round}: lost for {reason}"
        );
        if let Some(opened) = opened_at {
            let lived = at.duration_since(opened);
            // Both instants are read on the loop thread, and the wheel
            // never fires early: only rounding to a millisecond counts.
            assert!(
                lived + Duration::from_millis(2) >= idle,
                "round {round}: kicked {lived:?} after it reconnected"
            );
        }
        let (attempts, at) = ups.recv_timeout(TIMEOUT).expect("reconnected");
        assert_eq!(attempts, 1, "round {round}");
        opened_at = Some(at);
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
