//! The pool at its edges: a backend that is down (the backoff bounds the
//! connects, nobody spins), a server shut down under a pool (calls end
//! with `ShutDown`, never hang), a guard outliving its pool and server.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use netloom::{Dial, Error, PoolConfig};

use super::{backend, host, stop, ECHO};
use crate::common::{wait_until, TIMEOUT};

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
