//! The pool at its edges: a backend that is down (the backoff bounds the
//! connects, nobody spins), a server shut down under a pool (calls end
//! with `ShutDown` at once, never hang, a caller waiting out the backoff
//! too), a guard outliving its pool and server, a health check that
//! hangs (`get` still ends at its timeout).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{Dial, Error, HealthCheck, PoolConfig, Reconnect};

use super::{backend, host, stop, ECHO, HEALTH};
use crate::common::{wait_until, TIMEOUT};

/// A backend that accepts and never answers: its sockets stay open while
/// the returned receiver holds them.
fn silent_backend() -> (SocketAddr, Receiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, held) = unbounded();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            if tx.send(stream).is_err() {
                return;
            }
        }
    });
    (addr, held)
}

#[test]
fn a_down_backend_is_retried_by_the_backoff_not_in_a_spin() {
    // A port nothing listens on: every connect is refused at once.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = host();
    let config = PoolConfig {
        max_size: 4,
        min_idle: 2,
        ..PoolConfig::default()
    };
    let pool = server.hub().pool([Dial::new(addr)], config).unwrap();
    let started = Instant::now();
    assert!(matches!(
        pool.request(ECHO, b"x", Duration::from_millis(700)),
        Err(Error::Timeout)
    ));
    let failures = pool.stats().connect_failures;
    let elapsed = started.elapsed();
    // 100 ms doubling (± 20 %): 0, 80+, 160+, 320+ ms … in 0.7 s at most 5
    // attempts (a spin would make thousands).
    assert!(
        (1..=6).contains(&failures),
        "{failures} connect failures in {elapsed:?}"
    );
    assert_eq!(pool.stats().size, 0);
    drop(pool);
    stop(server);
}

#[test]
fn a_pool_whose_server_shut_down_answers_shut_down() {
    let b = backend(b'a');
    let server = host();
    let one = PoolConfig {
        max_size: 1,
        ..PoolConfig::default()
    };
    let pool = server.hub().pool([Dial::new(b.local_addr())], one).unwrap();
    assert_eq!(&pool.request(ECHO, b"1", TIMEOUT).unwrap().body[..], b"1a");
    let held = pool.get(TIMEOUT).unwrap();
    // A caller waits for the one connection, held.
    let base = pool.stats().waits;
    let waiter = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.get(TIMEOUT))
    };
    wait_until("the caller waits", || pool.stats().waits > base);
    let started = Instant::now();
    stop(server);
    let waited = waiter.join().unwrap();
    assert!(matches!(waited, Err(Error::ShutDown)), "{waited:?}");
    assert!(started.elapsed() < TIMEOUT, "woken, not timed out");
    assert!(matches!(pool.get(TIMEOUT), Err(Error::ShutDown)));
    assert!(matches!(
        pool.request(ECHO, b"2", TIMEOUT),
        Err(Error::ShutDown)
    ));
    // The guard outlives the server and then the pool.
    drop(pool);
    drop(held);
    stop(b);
}

#[test]
fn the_last_clone_dropped_closes_the_connections() {
    let b = backend(b'a');
    let server = host();
    let pool = server
        .hub()
        .pool([Dial::new(b.local_addr())], PoolConfig::default())
        .unwrap();
    let clone = pool.clone();
    drop(pool.get(TIMEOUT).unwrap());
    wait_until("the backend sees the connection", || {
        b.connection_count() >= 1
    });
    drop(pool);
    assert_eq!(clone.stats().size, 1, "a clone keeps the pool open");
    drop(clone);
    wait_until("the backend sees it closed", || b.connection_count() == 0);
    stop(server);
    stop(b);
}

#[test]
fn a_backend_answering_garbage_loses_its_connection_not_the_pool() {
    use std::io::{Read, Write};
    // Answers every connection's first bytes with a header declaring a
    // 4 GiB body: the packer refuses it and the member is closed.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                if matches!(stream.read(&mut buf), Ok(n) if n > 0) {
                    let _ = stream.write_all(&[0xff; 12]);
                }
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    let server = host();
    let pool = server
        .hub()
        .pool([Dial::new(addr)], PoolConfig::default())
        .unwrap();
    for _ in 0..3 {
        let got = pool.request(ECHO, b"x", TIMEOUT);
        assert!(
            matches!(got, Err(Error::Disconnected | Error::Closed)),
            "{got:?}"
        );
    }
    // Every connection made was lost to the garbage (a request may have
    // found one before its loss was seen: fewer connections than requests).
    wait_until("the bad connections are discarded", || {
        let s = pool.stats();
        s.created >= 1 && s.discarded == s.created && s.size == 0
    });
    drop(pool);
    stop(server);
}

/// `get(300 ms)` while the health check (timeout 1 s) gets no answer:
/// the check is cut to what is left of the caller's 300 ms, and `get`
/// gives up then with `Timeout`, not after the check's whole timeout
/// (nor, a failed check closing the connection and the next one opening
/// at once on loopback, after one check per connection the backend
/// takes).
#[test]
fn get_ends_at_its_timeout_while_health_checks_go_unanswered() {
    let (addr, _held) = silent_backend();
    let server = host();
    let check = HealthCheck {
        id: HEALTH,
        body: bytes::Bytes::from_static(b"ping"),
        interval: Duration::ZERO,
        timeout: Duration::from_secs(1),
    };
    let config = PoolConfig {
        max_size: 1,
        health_check: Some(check),
        ..PoolConfig::default()
    };
    let pool = server.hub().pool([Dial::new(addr)], config).unwrap();
    assert!(pool.try_get().is_none(), "nothing open yet");
    wait_until("the connection opens", || pool.stats().idle == 1);
    let asked = Instant::now();
    let got = pool.get(Duration::from_millis(300));
    let took = asked.elapsed();
    assert!(matches!(got, Err(Error::Timeout)), "{got:?}");
    assert!(
        took < Duration::from_millis(900),
        "get(300 ms) returned after {took:?}: {:?}",
        pool.stats()
    );
    assert_eq!(pool.stats().wait_timeouts, 1);
    drop(pool);
    stop(server);
}

/// A caller waiting for a connection while the backend is down waits
/// out the connect backoff (8 s here); the server shutting down ends its
/// wait with `ShutDown` at once, not when the backoff ends.
#[test]
fn a_caller_waiting_out_the_backoff_sees_the_shutdown_at_once() {
    let refused = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let server = host();
    let eight = Duration::from_secs(8);
    let config = PoolConfig {
        max_size: 1,
        backoff: Reconnect {
            initial: eight,
            factor: 1.0,
            max: eight,
            jitter: 0.0,
            max_attempts: None,
        },
        ..PoolConfig::default()
    };
    let pool = server.hub().pool([Dial::new(refused)], config).unwrap();
    let (done_tx, done) = unbounded();
    let waiter = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let got = pool.get(TIMEOUT).map(drop);
            let _ = done_tx.send((got, Instant::now()));
        })
    };
    wait_until("the connect fails and the caller waits", || {
        let s = pool.stats();
        s.connect_failures == 1 && s.waits == 1
    });
    let shut = Instant::now();
    stop(server);
    let (got, at) = done.recv_timeout(TIMEOUT).expect("get returned");
    assert!(matches!(got, Err(Error::ShutDown)), "{got:?}");
    let late = at.saturating_duration_since(shut);
    assert!(
        late < Duration::from_secs(1),
        "saw the shutdown {late:?} late"
    );
    waiter.join().unwrap();
}
