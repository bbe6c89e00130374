//! A stale timer of a closed dialed connection must not act on the slot's
//! next occupant.

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::{CloseReason, Dial, Server};

use crate::common::{init_logs, TIMEOUT};

/// A plain dial that connects and is closed at once leaves its connect
/// deadline (1 s) on the wheel. A host dial made next takes the same slot
/// (one loop) and resolves its name slowly (2 s), with an 8 s connect
/// timeout of its own. The first dial's deadline, firing at ~1 s, finds
/// the slot's new occupant resolving (its try number is 1 too) and resets
/// its resolution state; the answer that comes at 2 s is then dropped as
/// stale, and the second dial never connects, never fails, never retries.
#[test]
fn a_closed_dials_connect_deadline_does_not_break_the_next_occupants_resolution() {
    init_logs();
    let (close_tx, closes) = unbounded();
    let server = Server::builder()
        .event_loops(1)
        .on_close(move |s, reason| {
            let _ = close_tx.send((s.id(), reason.clone()));
        })
        .start()
        .expect("start");
    let hub = server.hub();
    let first = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = hub
        .dial(Dial::new(first.local_addr().unwrap()).connect_timeout(Duration::from_secs(1)))
        .unwrap();
    let _accepted = first.accept().expect("A connected");
    a.close();
    let (id, reason) = closes.recv_timeout(TIMEOUT).expect("A closed");
    assert_eq!(id, a.id());
    assert!(matches!(reason, CloseReason::Local), "{reason:?}");

    // B: a host dial whose name takes 2 s to resolve; connect timeout 8 s.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let (accept_tx, accepts) = unbounded();
    thread::spawn(move || {
        if let Ok((s, _)) = backend.accept() {
            let _ = accept_tx.send(s);
        }
    });
    let (_never_tx, never) = unbounded::<()>();
    let asked = Instant::now();
    let b = hub
        .dial(
            Dial::host("slow.test", backend_addr.port())
                .connect_timeout(Duration::from_secs(8))
                .resolver(move |_, _| {
                    let _ = never.recv_timeout(Duration::from_secs(2));
                    Ok(vec![backend_addr])
                }),
        )
        .unwrap();
    assert_eq!((a.id().loop_index(), b.id().loop_index()), (0, 0));
    let connected = accepts.recv_timeout(TIMEOUT);
    assert!(
        connected.is_ok(),
        "B ({:?}, in A's slot {:?}) never connected in {:?}; closes seen: {:?}",
        b.id(),
        a.id(),
        asked.elapsed(),
        closes.try_iter().collect::<Vec<_>>()
    );
    server.shutdown(TIMEOUT).unwrap();
}
