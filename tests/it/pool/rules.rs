//! The pool's rules, one at a time: waiters served first come first
//! served, a wait that times out counted, idle and old connections
//! retired (and `min_idle` kept), a dead idle connection found by the
//! health check before it is handed out, a timed-out request leaving no
//! half-dead connection, several targets used in turn, and a closed pool.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use netloom::{Dial, Error, HealthCheck, PoolConfig};

use super::{backend, host, stop, ECHO, HEALTH, MUTE, NEVER};
use crate::common::{wait_until, TIMEOUT};

fn config(max_size: usize) -> PoolConfig {
    PoolConfig {
        max_size,
        ..PoolConfig::default()
    }
}

#[test]
fn waiters_are_served_first_come_first_served() {
    let b = backend(b'a');
    let server = host();
    let pool = server
        .hub()
        .pool([Dial::new(b.local_addr())], config(1))
        .unwrap();
    let first = pool.get(TIMEOUT).unwrap();
    // (The first get waited for its connection to open.)
    let base = pool.stats().waits;
    let order = Arc::new(Mutex::new(Vec::new()));
    let waiters: Vec<_> = (0..4)
        .map(|i| {
            let (mine, order) = (pool.clone(), order.clone());
            let waiter = thread::spawn(move || {
                let conn = mine.get(TIMEOUT).expect("served");
                order.lock().unwrap().push(i);
                drop(conn);
            });
            // The next waiter starts only once this one waits.
            wait_until("the waiter waits", || pool.stats().waits == base + i + 1);
            waiter
        })
        .collect();
    drop(first);
    for w in waiters {
        w.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
    let stats = pool.stats();
    assert_eq!((stats.size, stats.created, stats.wait_timeouts), (1, 1, 0));
    drop(pool);
    stop(server);
    stop(b);
}

#[test]
fn a_wait_past_its_timeout_is_a_typed_error_and_counted() {
    let b = backend(b'a');
    let server = host();
    let pool = server
        .hub()
        .pool([Dial::new(b.local_addr())], config(1))
        .unwrap();
    let held = pool.get(TIMEOUT).unwrap();
    assert!(matches!(
        pool.get(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    assert!(pool.try_get().is_none());
    assert_eq!(pool.stats().wait_timeouts, 1);
    assert_eq!(pool.stats().in_use, 1);
    drop(held);
    assert!(pool.try_get().is_some());
    pool.close();
    assert!(matches!(pool.get(TIMEOUT), Err(Error::ShutDown)));
    assert!(matches!(
        pool.request(ECHO, b"x", TIMEOUT),
        Err(Error::ShutDown)
    ));
    stop(server);
    stop(b);
}

#[test]
fn idle_connections_retire_and_min_idle_is_kept() {
    let b = backend(b'a');
    let server = host();
    let idle = PoolConfig {
        max_size: 2,
        idle_timeout: Some(Duration::from_millis(100)),
        ..PoolConfig::default()
    };
    let pool = server
        .hub()
        .pool([Dial::new(b.local_addr())], idle)
        .unwrap();
    drop(pool.get(TIMEOUT).unwrap());
    wait_until("the idle connection retires", || {
        let s = pool.stats();
        s.size == 0 && s.discarded == 1
    });
    drop(pool);
    let aging = PoolConfig {
        max_size: 2,
        min_idle: 1,
        max_lifetime: Some(Duration::from_millis(150)),
        ..PoolConfig::default()
    };
    let pool = server
        .hub()
        .pool([Dial::new(b.local_addr())], aging)
        .unwrap();
    wait_until("min_idle is made in the background", || {
        pool.stats().idle == 1
    });
    wait_until("old connections are replaced", || {
        let s = pool.stats();
        s.created >= 3 && s.discarded >= 2 && s.idle == 1
    });
    drop(pool);
    stop(server);
    stop(b);
}

#[test]
fn the_health_check_discards_a_dead_idle_connection_before_hand_out() {
    let b = backend(b'a');
    let server = host();
    let checked = PoolConfig {
        max_size: 2,
        health_check: Some(HealthCheck {
            id: HEALTH,
            body: Bytes::from_static(b"?"),
            interval: Duration::ZERO,
            timeout: Duration::from_millis(200),
        }),
        ..PoolConfig::default()
    };
    let pool = server
        .hub()
        .pool([Dial::new(b.local_addr())], checked)
        .unwrap();
    let conn = pool.get(TIMEOUT).unwrap();
    let dead = conn.id();
    // The backend stops answering this connection's checks; it stays up.
    conn.send(MUTE, b"").unwrap();
    let answer = conn.request(ECHO, b"x", TIMEOUT).unwrap().wait().unwrap();
    assert_eq!(&answer.body[..], b"xa");
    drop(conn);
    let next = pool.get(TIMEOUT).unwrap();
    assert_ne!(next.id(), dead, "the muted connection was handed out");
    let stats = pool.stats();
    assert_eq!((stats.discarded, stats.created), (1, 2), "{stats:?}");
    drop(next);
    drop(pool);
    stop(server);
    stop(b);
}

#[test]
fn a_timed_out_request_leaves_no_half_dead_connection() {
    let b = backend(b'a');
    let server = host();
    let pool = server
        .hub()
        .pool([Dial::new(b.local_addr())], config(1))
        .unwrap();
    let answer = pool.request(ECHO, b"1", TIMEOUT).unwrap();
    assert_eq!(&answer.body[..], b"1a");
    assert!(matches!(
        pool.request(NEVER, b"", Duration::from_millis(100)),
        Err(Error::Timeout)
    ));
    wait_until("the connection is discarded", || {
        pool.stats().discarded == 1
    });
    let answer = pool.request(ECHO, b"2", TIMEOUT).unwrap();
    assert_eq!(&answer.body[..], b"2a");
    assert_eq!(pool.stats().created, 2);
    drop(pool);
    stop(server);
    stop(b);
}

#[test]
fn several_targets_are_dialed_in_turn() {
    let (a, z) = (backend(b'a'), backend(b'z'));
    let server = host();
    let targets = [Dial::new(a.local_addr()), Dial::new(z.local_addr())];
    let pool = server.hub().pool(targets, config(2)).unwrap();
    // Two connections at once: one to each target.
    let (one, two) = (pool.get(TIMEOUT).unwrap(), pool.get(TIMEOUT).unwrap());
    drop((one, two));
    let mut tags: Vec<u8> = (0..10)
        .map(|_| {
            *pool
                .request(ECHO, b"", TIMEOUT)
                .unwrap()
                .body
                .last()
                .unwrap()
        })
        .collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(tags, b"az");
    drop(pool);
    stop(server);
    stop(a);
    stop(z);
}

#[test]
fn bad_settings_are_config_errors() {
    let server = host();
    let hub = server.hub();
    let addr = "127.0.0.1:9".parse().unwrap();
    let bad = [
        config(0),
        PoolConfig {
            min_idle: 3,
            ..config(2)
        },
        PoolConfig {
            close_after_timeouts: Some(0),
            ..config(2)
        },
    ];
    for c in bad {
        assert!(matches!(
            hub.pool([Dial::new(addr)], c),
            Err(Error::Config(_))
        ));
    }
    assert!(matches!(
        hub.pool(Vec::<Dial>::new(), config(1)),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        hub.pool([Dial::new(addr).profile("nope")], config(1)),
        Err(Error::Config(_))
    ));
    stop(server);
}
