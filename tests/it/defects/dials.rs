//! What dials do to the server's accounting: the open-connection count
//! (`Hub::connection_count`, checked against `max_connections`) counts a
//! dialed connection before anything can uncount it.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use netloom::{Dial, Server};

use crate::common::{echo, start, wait_until, Client, TIMEOUT};

/// A loopback address nothing listens on, outside the ephemeral port
/// range: a port of that range may become a client socket's own port
/// while the test runs, and a dial to it then connects to itself (TCP
/// simultaneous open) instead of being refused.
fn refusing_addr() -> std::net::SocketAddr {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    (1024..low.min(32768))
        .rev()
        .step_by(97)
        .find_map(|port| {
            let l = TcpListener::bind(("127.0.0.1", port)).ok()?;
            l.local_addr().ok()
        })
        .expect("a free port below the ephemeral range")
}

/// Dials from a thread that is no loop, each refused at once, while
/// clients connect: the count never wraps, and no client is turned away
/// for a limit the server is far from.
#[test]
fn refused_dials_from_another_thread_never_wrap_the_connection_count() {
    const DIALS: usize = 3000;
    const LIMIT: usize = 256;
    let server = start(
        Server::builder()
            .event_loops(2)
            .max_connections(LIMIT)
            .route(1, echo),
    );
    let closed = refusing_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let highest = Arc::new(AtomicUsize::new(0));
    let (addr, hub) = (server.local_addr(), server.hub());
    let clients = {
        let (stop, highest, hub) = (stop.clone(), highest.clone(), hub.clone());
        thread::spawn(move || {
            let (mut served, mut refused) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                highest.fetch_max(hub.connection_count(), Ordering::Relaxed);
                let mut c = Client::connect(addr);
                c.send(1, b"ping");
                match c.try_recv() {
                    Ok(got) => {
                        assert_eq!(got, (1, b"ping".to_vec()));
                        served += 1;
                    }
                    Err(_) => refused += 1,
                }
            }
            (served, refused)
        })
    };
    for _ in 0..DIALS {
        hub.dial(Dial::new(closed)).unwrap();
        highest.fetch_max(hub.connection_count(), Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    let (served, refused) = clients.join().unwrap();
    let highest = highest.load(Ordering::Relaxed);
    assert!(highest <= LIMIT, "connection_count() reached {highest}");
    assert_eq!(
        (refused, hub.stats().rejected),
        (0, 0),
        "clients turned away ({served} served)"
    );
    assert!(served > 0);
    wait_until("every dial failed", || hub.connection_count() == 0);
    // The counters are separate relaxed atomics: the last failure may be
    // seen a moment after the count that went to zero. Never more.
    wait_until("every failure counted", || {
        hub.stats().connect_failures >= DIALS as u64
    });
    assert_eq!(hub.stats().connect_failures, DIALS as u64);
    server.shutdown(TIMEOUT).unwrap();
}
