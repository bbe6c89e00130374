//! The broker goes away and comes back: publishing is a typed error while
//! it is gone, local delivery goes on, the nodes reconnect and subscribe
//! again. A node that stops refreshing its presence is dropped.

use std::time::{Duration, Instant};

use netloom::cluster::Cluster;
use netloom::Error;

use super::{join, node, settle, Redis};

#[test]
fn the_nodes_recover_and_resubscribe_after_a_broker_restart() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let (mut a1, mut a2) = (a.connect(), a.connect());
    let mut b1 = b.connect();
    for c in [&mut a1, &mut a2, &mut b1] {
        join(c, "r");
    }
    settle("subscribed", || {
        a.cluster.is_subscribed("r") && b.cluster.is_subscribed("r")
    });
    a1.send(3, b"r\nbefore");
    assert_eq!(a2.recv(), (3, b"r\nbefore".to_vec()));
    assert_eq!(b1.recv(), (3, b"r\nbefore".to_vec()));

    redis.stop();
    settle("a sees the broker gone", || !a.cluster.is_connected());
    let refused = a.cluster.publish("r", 3, b"r\nwhile down");
    assert!(matches!(refused, Err(Error::Broker(_))), "{refused:?}");
    assert_eq!(a1.recv(), (3, b"r\nwhile down".to_vec()), "local delivery");
    assert_eq!(a2.recv(), (3, b"r\nwhile down".to_vec()));
    assert!(a.cluster.stats().broker_errors >= 1);

    redis.restart();
    settle("both reconnected and subscribed", || {
        a.cluster.is_connected()
            && b.cluster.is_connected()
            && a.cluster.is_subscribed("r")
            && b.cluster.is_subscribed("r")
    });
    a1.send(3, b"r\nafter");
    assert_eq!(a2.recv(), (3, b"r\nafter".to_vec()));
    assert_eq!(
        b1.recv(),
        (3, b"r\nafter".to_vec()),
        "b missed nothing after"
    );
    let stats = b.cluster.stats();
    assert!(
        stats.reconnects >= 1 && stats.broker_errors >= 1,
        "{stats:?}"
    );
}

/// Presence: a node counts the other's members and lists it; a node that
/// stops refreshing (its `Cluster` dropped while its server runs, as a
/// crashed node's record is left behind) is dropped once its record
/// expires; one whose server shuts down removes its record at once.
#[test]
fn presence_counts_other_nodes_and_drops_a_node_that_stops() {
    let Some(redis) = Redis::start() else { return };
    let a = node(&redis, "a");
    // b's routes do not hold its cluster: dropping it stops the refresh.
    let b_server = crate::common::start(netloom::Server::builder().event_loops(2).route(
        1,
        |ctx: &mut netloom::Context<'_>| {
            let room = String::from_utf8_lossy(ctx.body()).into_owned();
            ctx.join(&room)?;
            ctx.reply(1, b"ok")
        },
    ));
    let b = Cluster::start(b_server.hub(), super::config(&redis, "b")).unwrap();
    let mut on_a = a.connect();
    let mut b1 = crate::common::Client::connect(b_server.local_addr());
    let mut b2 = crate::common::Client::connect(b_server.local_addr());
    join(&mut on_a, "r");
    join(&mut b1, "r");
    join(&mut b2, "r");
    settle("a sees b's members", || a.cluster.room_len("r") == 3);
    let seen = a.cluster.nodes();
    let bs = seen.iter().find(|n| n.node == "b").expect("b is present");
    assert_eq!(bs.connections, 2);
    assert_eq!(bs.rooms, vec![("r".to_string(), 2)]);
    on_a.send(4, b"r");
    assert_eq!(on_a.recv(), (4, b"3".to_vec()));

    drop(b);
    let stopped = Instant::now();
    settle("b dropped", || {
        a.cluster.nodes().iter().all(|n| n.node != "b")
    });
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "dropped by expiry, not at once: {took:?}"
    );
    assert_eq!(a.cluster.room_len("r"), 1);

    // A node whose server shuts down leaves at once (a 10 s record).
    let mut config = super::config(&redis, "c");
    config.heartbeat = Duration::from_secs(5);
    config.presence_timeout = Duration::from_secs(10);
    let c = super::node_with(config, |b| b);
    settle("a sees c", || {
        a.cluster.nodes().iter().any(|n| n.node == "c")
    });
    c.server.shutdown(crate::common::TIMEOUT).unwrap();
    drop(c.cluster);
    let left = Instant::now();
    settle("c gone", || a.cluster.nodes().iter().all(|n| n.node != "c"));
    assert!(
        left.elapsed() < Duration::from_secs(5),
        "{:?}",
        left.elapsed()
    );
}

/// No broker at all (nothing listens on its port): the node works alone,
/// publishing delivers locally and says the broker is missing, counted.
#[test]
fn a_node_without_its_broker_delivers_locally_and_says_so() {
    let Some(redis) = Redis::start() else { return };
    let mut config = super::config(&redis, "alone");
    drop(redis); // its port now refuses
    config.reconnect.initial = std::time::Duration::from_millis(50);
    let a = super::node_with(config, |b| b);
    let (mut a1, mut a2) = (a.connect(), a.connect());
    join(&mut a1, "r");
    join(&mut a2, "r");
    a1.send(3, b"r\nlocal");
    assert_eq!(a2.recv(), (3, b"r\nlocal".to_vec()));
    assert!(!a.cluster.is_connected());
    let refused = a.cluster.broadcast(5, b"all");
    assert!(matches!(refused, Err(Error::Broker(_))), "{refused:?}");
    assert_eq!(a1.recv(), (5, b"all".to_vec()));
    assert_eq!(a2.recv(), (5, b"all".to_vec()));
    settle("attempts counted", || a.cluster.stats().broker_errors >= 2);
    let stats = a.cluster.stats();
    assert!(stats.dropped >= 2 && stats.published == 0, "{stats:?}");
}

/// A node whose loop is stuck is bounded like a slow peer: what other
/// nodes send it past its inbox capacity is dropped and counted, and
/// what was taken arrives once the loop runs again.
#[test]
fn a_stuck_node_drops_past_its_inbox_and_counts() {
    let Some(redis) = Redis::start() else { return };
    let a = node(&redis, "a");
    let (entered_tx, entered) = crossbeam_channel::bounded(1);
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    let b = super::node_with(super::config(&redis, "b"), move |builder| {
        builder.event_loops(1).inbox_capacity(64 << 10).route(
            50,
            move |_ctx: &mut netloom::Context<'_>| {
                let _ = entered_tx.send(());
                let _ = released.recv_timeout(crate::common::TIMEOUT);
            },
        )
    });
    let mut on_b = b.connect();
    join(&mut on_b, "r");
    let mut stuck = b.connect();
    settle("subscribed", || {
        b.cluster.is_subscribed("r") && a.cluster.is_connected()
    });
    stuck.send(50, b"");
    entered
        .recv_timeout(crate::common::TIMEOUT)
        .expect("b's loop is stuck");
    const N: usize = 400;
    for i in 0..N {
        a.cluster.publish("r", 7, [i as u8; 1024]).unwrap();
    }
    settle("b took or dropped all", || {
        let s = b.cluster.stats();
        s.received as usize == N && s.dropped > 0
    });
    release.send(()).unwrap();
    let taken = N - b.cluster.stats().dropped as usize;
    // The inbox holds at most its capacity of encoded messages.
    assert!((1..=64).contains(&taken), "took {taken}");
    for _ in 0..taken {
        assert_eq!(on_b.recv().0, 7);
    }
    assert!(
        b.server.stats().send_errors > 0,
        "the inbox refusals counted"
    );
}
