//! A partition between netloom (A) and its backend (B): every packet
//! dropped for a few seconds, then nothing. The links find out through
//! their profile's heartbeat (ping-before-kick: the backend echoes the
//! ping while it is reachable), then reconnect by their policy; a pool's
//! members are replaced.

use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::{CloseReason, Context, Dial, PoolConfig, Profile, Reconnect, SeqPacker, Server};

use super::{assert_between, Env, SLACK};
use crate::netns::Fault;
use crate::probe::{check_drained, wait_for, Baseline};

const CHECK: Duration = Duration::from_millis(100);
const IDLE: Duration = Duration::from_millis(700);
const PING_AFTER: Duration = Duration::from_millis(300);
const PING: u32 = 9;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// The wheel's tick (100 ms, or a smaller heartbeat check): a timer may
/// end up to one tick late.
const TICK: Duration = Duration::from_millis(100);
/// `on_disconnect` runs just after the loop set the next timer, and the
/// test stamps the time in it: two stamps can be that much closer than
/// the timers were.
const STAMP: Duration = Duration::from_millis(5);

/// 200 ms, 400 ms, 800 ms, then 800 ms.
fn policy() -> Reconnect {
    Reconnect {
        initial: Duration::from_millis(200),
        factor: 2.0,
        max: Duration::from_millis(800),
        jitter: 0.0,
        max_attempts: None,
    }
}

/// Reconnect and pool through a partition.
///
/// The dialed link: the heartbeat drops it (`IdleTimeout`) within its
/// bound; then each failed attempt (`ConnectTimeout`: SYNs dropped)
/// reports the policy's next delay (200, 400, 800, 800 ms), and each
/// comes no sooner than the last delay plus the connect timeout and no
/// later than that plus two ticks and slack. Sends made while it is down
/// are queued and echoed, in order, once it is back; after the partition
/// ends it reconnects within one backoff and one connect timeout, and
/// requests flow again. The pool (3 members, `min_idle` 3): its members
/// are discarded during the partition and its connects fail; after it,
/// it is back to 3 idle members that answer requests.
pub fn reconnect_and_pool(env: &Env) {
    let base = Baseline::take();
    let echo = env.server_peer("echo-tcp", &[]);
    let (down_tx, downs) = unbounded();
    let (up_tx, ups) = unbounded();
    let (echo_tx, echoes) = unbounded();
    let link_profile = Profile::new()
        .packer(SeqPacker::default())
        .heartbeat(CHECK, IDLE)
        .ping_before_kick(PING_AFTER, PING)
        .route(PING, |_ctx: &mut Context<'_>| ())
        .route(2, move |ctx: &mut Context<'_>| {
            let _ = echo_tx.send(ctx.body().to_vec());
        });
    let server = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .profile("link", link_profile)
        .on_disconnect(move |s, d| {
            let _ = down_tx.send((s.id(), Instant::now(), d.clone()));
        })
        .on_reconnect(move |s, attempts| {
            let _ = up_tx.send((s.id(), Instant::now(), attempts));
        })
        .start()
        .unwrap();
    let hub = server.hub();
    let target = Dial::new(echo.addr())
        .profile("link")
        .connect_timeout(CONNECT_TIMEOUT);
    let link = hub.dial(target.clone().reconnect(policy())).unwrap();
    let pool = hub
        .pool(
            [target],
            PoolConfig {
                max_size: 3,
                min_idle: 3,
                backoff: Reconnect {
                    initial: Duration::from_millis(100),
                    factor: 2.0,
                    max: Duration::from_millis(400),
                    jitter: 0.0,
                    max_attempts: None,
                },
                ..PoolConfig::default()
            },
        )
        .unwrap();
    let reply = link.request(1, b"before", Duration::from_secs(5)).unwrap();
    assert_eq!(&reply.wait().unwrap().body[..], b"before");
    wait_for("the pool's 3 members", Duration::from_secs(10), || {
        pool.stats().idle == 3
    });
    assert_eq!(
        &pool.request(1, b"p", Duration::from_secs(5)).unwrap().body[..],
        b"p"
    );
    let before = pool.stats();
    println!("  pool before: {before:?}");

    let cut = env.fault(Fault::DropAll);
    let next_down = || loop {
        let (id, at, d) = downs
            .recv_timeout(Duration::from_secs(5))
            .expect("on_disconnect of the link");
        if id == link.id() {
            return (at, d);
        }
    };
    let (mut at, first) = next_down();
    assert!(
        matches!(first.reason, CloseReason::IdleTimeout),
        "{:?}",
        first.reason
    );
    assert_eq!(
        (first.attempt, first.retry_in),
        (1, Duration::from_millis(200))
    );
    // Its last byte (an echoed ping) came at most PING_AFTER + a tick before the cut.
    cut.assert_after(
        "heartbeat drop of the link",
        at,
        IDLE - PING_AFTER - CHECK,
        IDLE + CHECK + SLACK,
    );
    let mut wait = first.retry_in;
    for (attempt, ms) in [(2, 400), (3, 800), (4, 800)] {
        let (now, d) = next_down();
        assert!(
            matches!(d.reason, CloseReason::ConnectTimeout),
            "attempt {}: {:?}",
            attempt - 1,
            d.reason
        );
        assert_eq!(
            (d.attempt, d.retry_in),
            (attempt, Duration::from_millis(ms))
        );
        let earliest = wait + CONNECT_TIMEOUT;
        assert_between(
            &format!(
                "attempt {} failed after the one before (backoff {wait:?} + connect timeout)",
                attempt - 1
            ),
            now - at,
            earliest - STAMP,
            earliest + 2 * TICK + SLACK,
        );
        (at, wait) = (now, d.retry_in);
    }
    for i in 0..3 {
        link.send(2, format!("queued-{i}")).unwrap();
    }
    wait_for(
        "the pool's members discarded and its connects failing",
        Duration::from_secs(5),
        || {
            let s = pool.stats();
            s.discarded >= before.discarded + 3 && s.connect_failures > before.connect_failures
        },
    );
    println!("  pool during the partition: {:?}", pool.stats());

    let healed = env.heal();
    let (back_at, attempts) = loop {
        let (id, at, attempts) = ups
            .recv_timeout(Duration::from_secs(5))
            .expect("on_reconnect of the link");
        if id == link.id() {
            break (at, attempts);
        }
    };
    assert_between(
        &format!("reconnect (after {attempts} attempts) after the partition ended"),
        back_at - healed,
        Duration::ZERO,
        policy().max + CONNECT_TIMEOUT + 2 * TICK + SLACK,
    );
    for i in 0..3 {
        let got = echoes
            .recv_timeout(Duration::from_secs(5))
            .expect("a queued send's echo");
        assert_eq!(
            got,
            format!("queued-{i}").into_bytes(),
            "queued sends out of order"
        );
    }
    for i in 0..20 {
        let body = format!("after-{i}");
        let reply = link
            .request(1, &body, Duration::from_secs(5))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(reply.body, body.as_bytes());
    }
    println!("  link: queued sends echoed in order, 20 requests answered");
    wait_for("the pool refilled to 3", Duration::from_secs(5), || {
        pool.stats().idle == 3
    });
    let refill = healed.elapsed();
    for i in 0..6 {
        let body = format!("pool-{i}");
        assert_eq!(
            pool.request(1, &body, Duration::from_secs(5)).unwrap().body,
            body.as_bytes()
        );
    }
    let after = pool.stats();
    println!("  pool refilled within {refill:.2?} of the partition's end: {after:?}");
    assert_eq!((after.size, after.idle), (3, 3));
    assert!(after.created >= before.created + 3, "{after:?}");

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
