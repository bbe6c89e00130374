//! The pool's time bounds: `get(timeout)` with a health check, and a
//! caller waiting out the connect backoff when the server shuts down.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::{Dial, Error, HealthCheck, PoolConfig, Reconnect, SeqPacker, Server};

use crate::common::{init_logs, wait_until, TIMEOUT};

fn host() -> netloom::ServerHandle {
    init_logs();
    Server::builder()
        .event_loops(1)
        .packer(SeqPacker::default())
        .start()
        .expect("start the pool's host")
}

/// A backend that accepts (its first `accepts` connections; later ones
/// are refused) and never answers (nor reads).
fn silent_backend(accepts: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for s in listener.incoming().take(accepts) {
            let Ok(s) = s else { return };
            held.push(s);
        }
        drop(listener);
        thread::park_timeout(TIMEOUT);
    });
    addr
}

/// `get(300 ms)` against a backend that never answers the health check
/// (timeout 1 s): the caller should have its `Timeout` within about its
/// own 300 ms. It does not even stop at the check's 1 s: a failed check
/// closes the connection, the loop makes a new one, which opens at once
/// on loopback, is checked again for 1 s, and so on for as long as the
/// backend accepts (5 accepts here; the deadline is only looked at when
/// no connection is ready).
#[test]
fn get_returns_within_its_timeout_when_the_health_check_hangs() {
    let server = host();
    let pool = server
        .hub()
        .pool(
            [Dial::new(silent_backend(5))],
            PoolConfig {
                max_size: 1,
                health_check: Some(HealthCheck {
                    id: 9,
                    body: bytes::Bytes::from_static(b"ping"),
                    interval: Duration::ZERO,
                    timeout: Duration::from_secs(1),
                }),
                ..PoolConfig::default()
            },
        )
        .unwrap();
    // Let the one connection open (try_get makes it in the background).
    let _ = pool.try_get();
    wait_until("the connection opens", || pool.stats().idle == 1);
    let asked = Instant::now();
    let got = pool.get(Duration::from_millis(300));
    let took = asked.elapsed();
    assert!(
        got.is_err(),
        "a connection failing its check was handed out"
    );
    assert!(
        took < Duration::from_millis(1500),
        "get(300 ms) returned {:?} after {took:?}; {:?}",
        got.err(),
        pool.stats()
    );
    server.shutdown(TIMEOUT).unwrap();
}

/// A caller waiting for a connection while the backend is down (the pool
/// waits out the connect backoff, 8 s here) gets `ShutDown` at once when
/// the server shuts down, not when the backoff ends.
#[test]
fn a_caller_waiting_out_the_backoff_sees_the_shutdown_at_once() {
    let server = host();
    let refused = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let backoff = Reconnect {
        initial: Duration::from_secs(8),
        factor: 1.0,
        max: Duration::from_secs(8),
        jitter: 0.0,
        max_attempts: None,
    };
    let pool = server
        .hub()
        .pool(
            [Dial::new(refused)],
            PoolConfig {
                max_size: 1,
                backoff,
                ..PoolConfig::default()
            },
        )
        .unwrap();
    let (done_tx, done) = unbounded();
    let waiter = {
        let pool = pool.clone();
        thread::spawn(move || {
            let r = pool.get(Duration::from_secs(20)).map(|_| ());
            let _ = done_tx.send((r, Instant::now()));
        })
    };
    wait_until("the first connect fails", || {
        pool.stats().connect_failures == 1
    });
    wait_until("the caller waits", || pool.stats().waits == 1);
    let shut = Instant::now();
    server.shutdown(TIMEOUT).unwrap();
    let (r, at) = done.recv_timeout(TIMEOUT).expect("get returned");
    let late = at.saturating_duration_since(shut);
    assert!(matches!(r, Err(Error::ShutDown)), "{r:?}");
    assert!(
        late < Duration::from_secs(1),
        "the waiting caller saw the shutdown {late:?} after it"
    );
    waiter.join().unwrap();
}
