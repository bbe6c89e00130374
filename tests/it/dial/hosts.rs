//! Host dials (issue 19): `Dial::host` resolves its name off the loop
//! before every attempt, tries each address in turn, follows a name that
//! moves between reconnects, and fails an attempt whose name does not
//! resolve with `CloseReason::ResolveFailed` and the usual backoff. The
//! backends are `std::net` listeners on loopback whose accepts are
//! counted; a resolver hook moves the name (or answers slowly).

use std::io;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

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
    // Each attempt resolves once: its error, or no address at all.
    for (attempt, delay_ms, why) in [
        (1, 50, "no such host"),
        (2, 100, "resolved to no address"),
        (3, 200, "no such host"),
    ] {
        let down = downs.recv_timeout(TIMEOUT).expect("on_disconnect");
        assert!(
            matches!(&down.reason, CloseReason::ResolveFailed(w) if w.contains(why)),
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

/// A timer of a closed dial never acts on its slot's next occupant. A
/// plain dial connects and is closed at once, leaving its connect
/// deadline on the wheel; a host dial made next takes its slot (one
/// loop) and is still resolving (a slow name service) when that
/// deadline comes. The deadline belonged to the first dial: the second
/// one's resolution goes on, and it connects when the answer comes.
#[test]
fn a_closed_dials_connect_deadline_leaves_the_next_host_dial_in_its_slot_alone() {
    init_logs();
    let (close_tx, closes) = unbounded();
    let client = Server::builder()
        .event_loops(1)
        .on_close(move |s, reason| {
            let _ = close_tx.send((s.id(), reason.clone()));
        })
        .start()
        .expect("start the dialer");
    let hub = client.hub();
    let (first_addr, first_accepts) = counting_backend();
    let first_deadline = Duration::from_millis(300);
    let dialed = Instant::now();
    let first = hub
        .dial(Dial::new(first_addr).connect_timeout(first_deadline))
        .unwrap();
    let _accepted = first_accepts.recv_timeout(TIMEOUT).expect("connected");
    first.close();
    let (id, reason) = closes.recv_timeout(TIMEOUT).expect("closed");
    assert_eq!(id, first.id());
    assert!(matches!(reason, CloseReason::Local), "{reason:?}");

    // The name service answers only well after the first dial's deadline
    // (its slowness is the scenario, not a wait for the server).
    let (addr, accepts) = counting_backend();
    let answer_at = dialed + first_deadline * 2;
    let (_silent, nothing) = unbounded::<()>();
    let second = hub
        .dial(
            Dial::host("slow.test", addr.port())
                .connect_timeout(Duration::from_secs(5))
                .resolver(move |_, _| {
                    let wait = answer_at.saturating_duration_since(Instant::now());
                    let _ = nothing.recv_timeout(wait);
                    Ok(vec![addr])
                }),
        )
        .unwrap();
    // Loop and slot (bits 32 to 95 of the number form): the same.
    let place = |id: netloom::ConnId| (id.to_u128() >> 32) as u64;
    assert_eq!(
        place(second.id()),
        place(first.id()),
        "the second dial took the first one's slot"
    );
    let connected = accepts.recv_timeout(TIMEOUT);
    assert!(
        connected.is_ok(),
        "the host dial in the closed dial's slot never connected; closes: {:?}",
        closes.try_iter().collect::<Vec<_>>()
    );
    assert!(closes.try_recv().is_err(), "the host dial was closed");
    client.shutdown(TIMEOUT).unwrap();
}
