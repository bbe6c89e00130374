//! Host dials (issue 19): `Dial::host` resolves its name off the loop
//! before every attempt, tries each address in turn, follows a name that
//! moves between reconnects, and fails an attempt whose name does not
//! resolve with `CloseReason::ResolveFailed` and the usual backoff. The
//! backends are `std::net` listeners on loopback whose accepts are
//! counted; a resolver hook moves the name.

use std::io;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use netloom::{CloseReason, Dial, Disconnect, Reconnect, SeqPacker, Server, ServerHandle};

use super::{counting_backend, free_port};
use crate::common::{init_logs, TIMEOUT};

/// A dialing server on two loops reporting every `on_disconnect`.
fn dialer() -> (ServerHandle, Receiver<Disconnect>) {
    init_logs();
    let (down_tx, downs) = unbounded();
    let server = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send(d.clone());
        })
        .start()
        .expect("start the dialer");
    (server, downs)
}

fn quick() -> Reconnect {
    Reconnect {
        initial: Duration::from_millis(50),
        factor: 2.0,
        max: Duration::from_millis(200),
        jitter: 0.0,
        max_attempts: None,
    }
}

#[test]
fn a_name_that_moves_between_reconnects_is_followed_and_each_address_tried() {
    let (a, a_accepts) = counting_backend();
    let (b, b_accepts) = counting_backend();
    let target = Arc::new(Mutex::new(vec![a]));
    let names = target.clone();
    let (client, downs) = dialer();
    let dial = Dial::host("backend.test", 7000)
        .reconnect(quick())
        .resolver(move |host, port| {
            assert_eq!((host, port), ("backend.test", 7000));
            Ok(names.lock().unwrap().clone())
        });
    let _conn = client.hub().dial(dial).unwrap();
    let first = a_accepts.recv_timeout(TIMEOUT).expect("connected to a");
    // The name moves to b, behind an address that refuses: the refused
    // one is passed over within the attempt.
    *target.lock().unwrap() = vec![free_port(), b];
    drop(first);
    let down = downs.recv_timeout(TIMEOUT).expect("on_disconnect");
    assert!(
        matches!(down.reason, CloseReason::PeerClosed | CloseReason::Io(_)),
        "{down:?}"
    );
    let _second = b_accepts.recv_timeout(TIMEOUT).expect("followed to b");
    assert!(
        a_accepts.try_recv().is_err(),
        "dialed the old address again"
    );
    assert!(
        downs.try_recv().is_err(),
        "the refused address failed the attempt"
    );
    client.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_name_that_does_not_resolve_fails_with_its_reason_and_backs_off() {
    let (client, downs) = dialer();
    let calls = Arc::new(Mutex::new(0u32));
    let counted = calls.clone();
    let dial = Dial::host("nowhere.test", 7000)
        .reconnect(quick())
        .resolver(move |_host, _port| {
            let mut n = counted.lock().unwrap();
            *n += 1;
            if *n % 2 == 1 {
                Err(io::Error::new(io::ErrorKind::NotFound, "no such host"))
            } else {
                Ok(Vec::new())
            }
        });
    let conn = client.hub().dial(dial).unwrap();
    for (attempt, delay_ms) in [(1, 50), (2, 100), (3, 200)] {
        let down = downs.recv_timeout(TIMEOUT).expect("on_disconnect");
        assert!(
            matches!(&down.reason, CloseReason::ResolveFailed(_)),
            "{down:?}"
        );
        assert_eq!(
            (down.attempt, down.retry_in),
            (attempt, Duration::from_millis(delay_ms))
        );
    }
    assert!(*calls.lock().unwrap() >= 3);
    assert!(client.stats().connect_failures >= 3);
    conn.close();
    client.shutdown(TIMEOUT).unwrap();
}

#[test]
fn localhost_resolves_and_connects() {
    // Only 127.0.0.1 listens: if "localhost" gives ::1 first, that is
    // refused and the next address connects, in the same attempt (no
    // reconnect policy here).
    let (addr, accepts) = counting_backend();
    let (client, downs) = dialer();
    let dial = Dial::host("localhost", addr.port());
    let conn = client.hub().dial(dial).unwrap();
    let accepted = accepts.recv_timeout(TIMEOUT).expect("connected");
    assert_eq!(
        accepted.peer_addr().unwrap().ip(),
        addr.ip(),
        "connected over IPv4 loopback"
    );
    conn.send(1, b"x").unwrap();
    assert!(downs.try_recv().is_err());
    client.shutdown(TIMEOUT).unwrap();
}

/// A resolver that does not answer is bounded by the connect timeout:
/// the attempt fails with `ResolveFailed` and backs off, and the loop
/// never waited for it (another dial on the same server connects
/// meanwhile).
#[test]
fn a_resolver_that_hangs_is_bounded_by_the_connect_timeout() {
    let (addr, accepts) = counting_backend();
    let (client, downs) = dialer();
    let dial = Dial::host("slow.test", 7000)
        .connect_timeout(Duration::from_millis(200))
        .reconnect(Reconnect {
            initial: Duration::from_secs(30),
            ..quick()
        })
        .resolver(|_host, _port| {
            thread::sleep(Duration::from_secs(2)); // a resolver stuck
            Ok(Vec::new())
        });
    let slow = client.hub().dial(dial).unwrap();
    let _other = client.hub().dial(Dial::new(addr)).unwrap();
    accepts
        .recv_timeout(TIMEOUT)
        .expect("the other dial connected");
    let down = downs.recv_timeout(Duration::from_secs(1)).expect("gave up");
    assert!(
        matches!(&down.reason, CloseReason::ResolveFailed(why) if why.contains("connect timeout")),
        "{down:?}"
    );
    slow.close();
    client.shutdown(TIMEOUT).unwrap();
}
