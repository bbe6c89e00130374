//! A peer that vanishes while we still have data queued for it: the
//! heartbeat's kick must not wait out `close_linger` trying to flush to a
//! peer it has just declared dead. For a dialed link that would hold the
//! reconnect back by the linger; for an accepted connection it would
//! delay `on_close` past the heartbeat's documented bound.

use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::{CloseReason, Context, Dial, Error, Profile, Reconnect, SeqPacker, Server};

use super::{assert_between, Env, SLACK};
use crate::netns::Fault;
use crate::probe::{check_drained, wait_for, Baseline};

const CHECK: Duration = Duration::from_millis(100);
const IDLE: Duration = Duration::from_millis(700);
/// Longer than any bound below: a close that waits for it is seen.
const LINGER: Duration = Duration::from_secs(5);
/// What we try to queue for the vanished peer (the queue's mark is 4 MiB).
const BACKLOG: usize = 2 << 20;

/// Queue up to `BACKLOG` bytes on `send` (64 KiB messages) until the
/// queue is full; returns what was queued.
fn fill(mut send: impl FnMut(&[u8]) -> netloom::Result<()>) -> usize {
    let chunk = vec![7u8; 64 << 10];
    let mut queued = 0;
    while queued < BACKLOG {
        match send(&chunk) {
            Ok(()) => queued += chunk.len(),
            Err(Error::BufferFull) => break,
            Err(e) => panic!("send: {e:?}"),
        }
    }
    queued
}

/// A dialed link whose backend vanished (partition) while it had about
/// 2 MiB queued: its heartbeat drops it within `IDLE + CHECK` (plus
/// slack) of the cut, and its first reconnect attempt follows at its
/// policy's delay, not after `close_linger` (5 s here).
pub fn link_with_data_queued(env: &Env) {
    let base = Baseline::take();
    let echo = env.server_peer("hold-listen", &[]);
    let (down_tx, downs) = unbounded();
    let server = Server::builder()
        .event_loops(1)
        .packer(SeqPacker::default())
        .close_linger(LINGER)
        .profile(
            "link",
            Profile::new()
                .packer(SeqPacker::default())
                .heartbeat(CHECK, IDLE)
                .route(2, |_ctx: &mut Context<'_>| ()),
        )
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send((Instant::now(), d.clone()));
        })
        .start()
        .unwrap();
    let hub = server.hub();
    let policy = Reconnect {
        initial: Duration::from_millis(200),
        factor: 1.0,
        max: Duration::from_millis(200),
        jitter: 0.0,
        max_attempts: None,
    };
    let link = hub
        .dial(
            Dial::new(echo.addr())
                .profile("link")
                .connect_timeout(Duration::from_millis(300))
                .reconnect(policy),
        )
        .unwrap();
    wait_for("the link open", Duration::from_secs(10), || {
        hub.stats().connects == 1
    });
    // The backend reads everything and says nothing: the heartbeat counts
    // from the open. Cut, then queue.
    let cut = env.fault(Fault::DropAll);
    let queued = fill(|b| link.send_confirmed(2, b).wait());
    println!("  queued {queued} bytes for the vanished backend");
    let (at, first) = downs
        .recv_timeout(LINGER + Duration::from_secs(5))
        .expect("on_disconnect");
    assert!(
        matches!(first.reason, CloseReason::IdleTimeout),
        "{:?}",
        first.reason
    );
    cut.assert_after(
        "heartbeat drop of a link with data queued",
        at,
        Duration::ZERO,
        IDLE + CHECK + SLACK,
    );
    let (next, second) = downs
        .recv_timeout(LINGER + Duration::from_secs(5))
        .expect("attempt 1");
    assert!(
        matches!(second.reason, CloseReason::ConnectTimeout),
        "{:?}",
        second.reason
    );
    assert_between(
        "its first attempt failed after",
        next - at,
        Duration::from_millis(500) - Duration::from_millis(5),
        Duration::from_millis(500) + 2 * CHECK + SLACK,
    );
    let stats = hub.stats();
    assert!(
        stats.unflushed_closes >= 1,
        "the dropped data is counted: {stats}"
    );
    link.close();
    wait_for("every connection closed", Duration::from_secs(5), || {
        hub.stats().connections == 0
    });
    check_drained(&hub.stats(), "after closing the link");
    server.shutdown(Duration::from_secs(5)).unwrap();
    drop((hub, link, echo));
    base.check_fds("after shutdown");
}

/// An accepted connection whose peer vanished while about 2 MiB were
/// queued for it: the heartbeat closes it (`on_close`, `IdleTimeout`)
/// within `IDLE + CHECK` (plus slack) of the peer's last byte, as the
/// GUIDE's heartbeat section promises, not after `close_linger`.
pub fn accepted_with_data_queued(env: &Env) {
    let base = Baseline::take();
    let (tx, closes) = unbounded();
    let (hello_tx, hellos) = unbounded();
    let server = Server::builder()
        .event_loops(1)
        .packer(SeqPacker::default())
        .close_linger(LINGER)
        .heartbeat(CHECK, IDLE)
        .route(1, move |ctx: &mut Context<'_>| {
            let _ = hello_tx.send((Instant::now(), ctx.handle()));
            ctx.reply(1, ctx.body())
        })
        .on_close(move |_s, reason| {
            let _ = tx.send((Instant::now(), reason.clone()));
        })
        .bind(super::addr_a())
        .unwrap()
        .start()
        .unwrap();
    let mut peer = env.client_peer("hold-client", server.local_addr());
    let (last, conn) = hellos.recv_timeout(Duration::from_secs(5)).unwrap();
    env.fault(Fault::DropAll);
    peer.kill();
    let queued = fill(|b| conn.send_confirmed(2, b).wait());
    println!("  queued {queued} bytes for the vanished peer");
    let (at, reason) = closes
        .recv_timeout(LINGER + Duration::from_secs(5))
        .expect("on_close");
    assert!(matches!(reason, CloseReason::IdleTimeout), "{reason:?}");
    assert_between(
        "heartbeat close of a peer with data queued, after its last byte",
        at - last,
        IDLE,
        IDLE + CHECK + SLACK,
    );
    let stats = server.stats();
    assert_eq!(
        stats.unflushed_closes, 1,
        "the dropped data is counted: {stats}"
    );
    check_drained(&stats, "after the kick");
    server.shutdown(Duration::from_secs(5)).unwrap();
    drop((conn, peer));
    base.check_fds("after shutdown");
}
