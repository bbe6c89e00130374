//! 50 threads hammer a pool of 8 while its backend is shut down and
//! started again on the same port: every request either gets its own
//! answer or fails with a typed error, no connection is ever held by two
//! callers at once (checked on every hand-out), no answer reaches another
//! caller, and the pool is back to 8 open connections after the restart.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use netloom::{Dial, Error, PoolConfig};

use super::{backend, backend_on, host, stop, ECHO};
use crate::common::{wait_until, TIMEOUT};

/// Errors a request may end with while the backend restarts.
fn allowed(e: &Error) -> bool {
    matches!(
        e,
        Error::Timeout | Error::Disconnected | Error::Closed | Error::InboxFull
    )
}

#[test]
fn fifty_threads_share_a_pool_of_eight_across_a_backend_restart() {
    let first = backend(b'1');
    let addr = first.local_addr();
    let server = host();
    let config = PoolConfig {
        max_size: 8,
        ..PoolConfig::default()
    };
    let pool = server.hub().pool([Dial::new(addr)], config).unwrap();
    let held = Arc::new(Mutex::new(HashSet::new()));
    let stop_flag = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..50u32)
        .map(|t| {
            let (pool, held, stop_flag) = (pool.clone(), held.clone(), stop_flag.clone());
            let (ok, failed) = (ok.clone(), failed.clone());
            thread::spawn(move || {
                let limit = Instant::now() + TIMEOUT * 3;
                for n in 0u32.. {
                    if stop_flag.load(Ordering::Relaxed) || Instant::now() > limit {
                        return;
                    }
                    let body = [t.to_le_bytes(), n.to_le_bytes()].concat();
                    let timeout = Duration::from_millis(300);
                    let answer = if t % 2 == 0 {
                        pool.get(timeout).and_then(|conn| {
                            let fresh = held.lock().unwrap().insert(conn.id());
                            assert!(fresh, "connection {} handed out twice", conn.id());
                            let answer = conn.request(ECHO, &body, timeout).and_then(|p| p.wait());
                            held.lock().unwrap().remove(&conn.id());
                            answer
                        })
                    } else {
                        pool.request(ECHO, &body, timeout)
                    };
                    match answer {
                        Ok(m) => {
                            assert_eq!(m.id, ECHO);
                            // Its own body, from either backend.
                            assert_eq!(&m.body[..8], &body[..], "an answer crossed callers");
                            assert_eq!(m.body.len(), 9);
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            assert!(allowed(&e), "untyped failure: {e:?}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    wait_until("requests flow through the first backend", || {
        ok.load(Ordering::Relaxed) > 500
    });
    stop(first);
    let before = ok.load(Ordering::Relaxed);
    let second = backend_on(addr, b'2');
    wait_until("requests flow through the second backend", || {
        ok.load(Ordering::Relaxed) > before + 500
    });
    wait_until("the pool is back to eight open connections", || {
        let s = pool.stats();
        s.size == 8 && s.idle + s.in_use == 8
    });
    stop_flag.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a worker failed");
    }
    let stats = pool.stats();
    assert!(stats.discarded >= 1, "{stats:?}");
    assert!(stats.created >= 9, "{stats:?}");
    assert!(stats.size <= 8, "{stats:?}");
    drop(pool);
    stop(server);
    stop(second);
}
