//! Ordering and many clients: pipelined requests answered in order, and a
//! thousand concurrent clients each getting their own echoes.

use std::io;
use std::time::{Duration, Instant};

use netloom::{Context, Server};

use super::echo_builder;
use crate::common::{frame, start, Client};

/// Per-connection request counter (user data).
struct Counter(u64);

/// Reply on `100 + msg_id` with (per-connection counter u64 LE, body).
fn counted_reply(ctx: &mut Context<'_>) -> netloom::Result<()> {
    let n = match ctx.data_mut().get_mut::<Counter>() {
        Some(c) => {
            c.0 += 1;
            c.0
        }
        None => {
            ctx.data_mut().insert(Counter(0));
            0
        }
    };
    let mut out = n.to_le_bytes().to_vec();
    out.extend_from_slice(ctx.body());
    ctx.reply(100 + ctx.msg_id(), out)
}

#[test]
fn pipelined_requests_are_answered_in_request_order() {
    let server = start(
        Server::builder()
            .event_loops(2)
            .route(1, counted_reply)
            .route(2, counted_reply)
            .route(3, counted_reply),
    );
    const N: u32 = 1000;
    // Two connections (on different loops), each with its own counter,
    // both fully pipelined before either reads.
    let mut clients = [
        Client::connect(server.local_addr()),
        Client::connect(server.local_addr()),
    ];
    for (k, c) in clients.iter_mut().enumerate() {
        let mut wire = Vec::new();
        for i in 0..N {
            let id = 1 + (i + k as u32) % 3;
            wire.extend_from_slice(&frame(id, &i.to_le_bytes()));
        }
        c.send_raw(&wire);
    }
    for (k, c) in clients.iter_mut().enumerate() {
        for i in 0..N {
            let (id, body) = c.recv();
            assert_eq!(id, 101 + (i + k as u32) % 3, "conn {k}, reply {i}: route");
            assert_eq!(body.len(), 12, "conn {k}, reply {i}: body length");
            let counter = u64::from_le_bytes(body[..8].try_into().unwrap());
            let echoed = u32::from_le_bytes(body[8..].try_into().unwrap());
            assert_eq!(counter, u64::from(i), "conn {k}: reply {i} out of order");
            assert_eq!(echoed, i, "conn {k}: reply {i} answers another request");
        }
    }
}

/// Raise this process's soft descriptor limit to its hard limit (only
/// ever raised, under `serial()`: it is process-wide), then check that
/// `needed` more descriptors fit under it.
fn ensure_descriptors(needed: u64) {
    let _serial = crate::common::serial();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(rc, 0, "getrlimit: {}", io::Error::last_os_error());
    // macOS refuses a soft limit over OPEN_MAX (10240): try that second.
    for soft in [lim.rlim_max, lim.rlim_max.min(10240)] {
        if soft <= lim.rlim_cur {
            break;
        }
        let raised = libc::rlimit {
            rlim_cur: soft,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit within the hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = soft;
            break;
        }
    }
    let open = std::fs::read_dir("/dev/fd").map_or(0, |d| d.count() as u64);
    assert!(
        lim.rlim_cur >= open + needed,
        "this test needs {needed} descriptors beyond the {open} open, and the limit is {} \
         (hard limit {}): raise `ulimit -n`",
        lim.rlim_cur,
        lim.rlim_max
    );
}

#[test]
fn thousand_concurrent_clients_each_get_their_own_echoes() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 125;
    // A descriptor per client and one per server side, and room for the
    // tests running beside this one.
    ensure_descriptors(2 * (THREADS * PER_THREAD) as u64 + 512);
    let server = start(echo_builder(4));
    let addr = server.local_addr();
    let started = Instant::now();

    let all: Vec<Vec<Client>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut clients: Vec<Client> =
                        (0..PER_THREAD).map(|_| Client::connect(addr)).collect();
                    for (c, client) in clients.iter_mut().enumerate() {
                        let mut wire = frame(1, format!("t{t}-c{c}-first").as_bytes());
                        wire.extend_from_slice(&frame(2, format!("t{t}-c{c}-second").as_bytes()));
                        client.send_raw(&wire);
                    }
                    for (c, client) in clients.iter_mut().enumerate() {
                        assert_eq!(client.recv(), (1, format!("t{t}-c{c}-first").into_bytes()));
                        assert_eq!(client.recv(), (2, format!("t{t}-c{c}-second").into_bytes()));
                    }
                    clients
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    let total: usize = all.iter().map(Vec::len).sum();
    assert_eq!(total, THREADS * PER_THREAD);
    assert_eq!(server.connection_count(), THREADS * PER_THREAD);
    let stats = server.stats();
    assert_eq!(stats.accepted, (THREADS * PER_THREAD) as u64);
    assert_eq!(stats.messages_in, (2 * THREADS * PER_THREAD) as u64);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "1000 clients took {:?}",
        started.elapsed()
    );
}
