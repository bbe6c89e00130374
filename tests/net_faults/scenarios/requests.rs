//! Requests in flight when the path to the backend goes silent: they must
//! end with a typed timeout at their deadline, from every API, and never
//! hang; the replies that come after the path heals (TCP retransmits the
//! requests, the backend answers them) are counted as late and reach no
//! other request. Four rounds, with resident memory sampled after each.

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::{Dial, Error, PoolConfig, SeqPacker, Server};

use super::{assert_between, Env, SLACK};
use crate::netns::Fault;
use crate::probe::{check_drained, rss_kib, wait_for, Baseline};

const TIMEOUT: Duration = Duration::from_millis(400);
/// The wheel's tick: a request's timer ends up to one tick late.
const TICK: Duration = Duration::from_millis(100);
const THREADS: usize = 4;
/// Requests each thread has in flight with `request`, and with `request_with`.
const EACH: usize = 10;
const ROUNDS: usize = 4;
/// Resident memory may differ this much between the first and last round
/// (allocator and page granularity), not more.
const RSS_GROWTH_KIB: u64 = 1024;

/// Every request in flight across a partition fails with
/// `Error::Timeout` between its timeout and its timeout plus a tick and
/// slack: `request(..).wait()` from four threads, `request_with` (its
/// callback exactly once, run by the loop's timer, not by a waiting
/// caller) and `Pool::request`. `Stats::request_timeouts` counts each
/// one. After the partition, the late replies are counted in
/// `late_replies` and fresh requests get their own bodies back. Over
/// four rounds, resident memory stays within 1 MiB of the first round's.
pub fn in_flight(env: &Env) {
    let base = Baseline::take();
    let echo = env.server_peer("echo-tcp", &[]);
    let server = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .start()
        .unwrap();
    let hub = server.hub();
    let link = hub.dial(Dial::new(echo.addr())).unwrap();
    let pool = hub
        .pool(
            [Dial::new(echo.addr()).connect_timeout(Duration::from_millis(300))],
            PoolConfig {
                max_size: 2,
                min_idle: 2,
                ..PoolConfig::default()
            },
        )
        .unwrap();
    let mut rss = Vec::new();
    let mut timeouts = 0;
    let mut late = 0;
    for round in 1..=ROUNDS {
        // A working path first: the link answers (once TCP retransmitted
        // what the last round left) and the pool is full.
        let body = format!("round-{round}");
        let reply = link
            .request(1, &body, Duration::from_secs(10))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(reply.body, body.as_bytes());
        wait_for("the pool's 2 members", Duration::from_secs(10), || {
            pool.stats().idle == 2
        });

        env.fault(Fault::DropAll);
        let (cb_tx, callbacks) = unbounded();
        let issued = Instant::now();
        for i in 0..THREADS * EACH {
            let tx = cb_tx.clone();
            link.request_with(2, format!("cb-{round}-{i}"), TIMEOUT, move |r| {
                let _ = tx.send((Instant::now(), r.map(|m| m.body)));
            })
            .unwrap();
        }
        let (done_tx, done) = unbounded();
        for t in 0..THREADS {
            let (link, done_tx) = (link.clone(), done_tx.clone());
            thread::spawn(move || {
                let start = Instant::now();
                let pending: Vec<_> = (0..EACH)
                    .map(|i| link.request(1, format!("w-{t}-{i}"), TIMEOUT).unwrap())
                    .collect();
                for p in pending {
                    let outcome = p.wait().map(|m| m.body);
                    let _ = done_tx.send((start.elapsed(), outcome));
                }
            });
        }
        let pool_start = Instant::now();
        let pooled = pool.request(1, b"pooled", TIMEOUT);
        let pool_took = pool_start.elapsed();
        assert!(
            matches!(pooled, Err(Error::Timeout)),
            "Pool::request: {pooled:?}"
        );

        let hi = TIMEOUT + TICK + SLACK;
        let mut worst = Duration::ZERO;
        for _ in 0..THREADS * EACH {
            let (took, outcome) = done
                .recv_timeout(hi + Duration::from_secs(5))
                .expect("a waiting request never returned");
            assert!(
                matches!(outcome, Err(Error::Timeout)),
                "request: {outcome:?}"
            );
            assert!(took >= TIMEOUT && took <= hi, "request took {took:?}");
            worst = worst.max(took);
        }
        for _ in 0..THREADS * EACH {
            let (at, outcome) = callbacks
                .recv_timeout(hi + Duration::from_secs(5))
                .expect("a request_with callback never ran");
            assert!(
                matches!(outcome, Err(Error::Timeout)),
                "request_with: {outcome:?}"
            );
            let took = at - issued;
            assert!(
                took >= TIMEOUT && took <= hi,
                "request_with failed after {took:?}"
            );
            worst = worst.max(took);
        }
        if round == 1 {
            assert_between("Pool::request timed out after", pool_took, TIMEOUT, hi);
            assert_between("the slowest request timed out after", worst, TIMEOUT, hi);
        }
        timeouts += (2 * THREADS * EACH) as u64 + 1;
        assert_eq!(
            hub.stats().request_timeouts,
            timeouts,
            "request timeouts counted"
        );

        env.heal();
        // The link's requests reach the backend now (TCP retransmits
        // them) and their replies come back late. The pool's member was
        // closed after its timeout (`close_after_timeouts`): no reply.
        late += (2 * THREADS * EACH) as u64;
        wait_for("the late replies", Duration::from_secs(15), || {
            hub.stats().late_replies == late
        });
        for i in 0..10 {
            let body = format!("fresh-{round}-{i}");
            let reply = link
                .request(1, &body, Duration::from_secs(5))
                .unwrap()
                .wait()
                .unwrap();
            assert_eq!(
                reply.body,
                body.as_bytes(),
                "a fresh request got another's reply"
            );
        }
        assert!(
            callbacks.try_recv().is_err(),
            "a request_with callback ran twice"
        );
        rss.push(rss_kib());
        println!(
            "  round {round}: {} timeouts, {} late replies, fresh requests answered, RSS {} KiB",
            2 * THREADS * EACH + 1,
            2 * THREADS * EACH,
            rss[round - 1]
        );
    }
    let growth = rss[ROUNDS - 1].saturating_sub(rss[0]);
    assert!(
        growth <= RSS_GROWTH_KIB,
        "resident memory grew {growth} KiB over the rounds: {rss:?}"
    );
    println!("  memory: RSS {rss:?} KiB, growth {growth} KiB (bound {RSS_GROWTH_KIB})");

    pool.close();
    link.close();
    wait_for("every connection closed", Duration::from_secs(5), || {
        hub.stats().connections == 0
    });
    check_drained(&hub.stats(), "after closing the link and the pool");
    server.shutdown(Duration::from_secs(5)).unwrap();
    drop((hub, link, pool, echo));
    base.check_fds("after shutdown");
}
