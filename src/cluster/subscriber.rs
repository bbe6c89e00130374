//! The subscriber thread: one pub/sub connection, subscribed to the
//! broadcast channel, this node's channel, and the channel of each room
//! that has a member on this node (looked at again whenever a room
//! appears or goes on a loop). Envelopes from other nodes go to the
//! loops through the hub, whose inboxes bound them; the node's own come
//! back and are dropped.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use super::publisher::{connect, later, spread, IO_TIMEOUT};
use super::wire::{self, Target};
use super::{all_channel, bump, node_channel, room_channel, Shared};

/// How long a read waits before the thread looks at the rooms and the
/// stop flag again: the longest a new room waits for its subscription.
const TICK: Duration = Duration::from_millis(20);

pub(super) fn run(shared: &Arc<Shared>, client: &redis::Client) {
    let (mut attempt, mut ever, mut warned) = (0u32, false, false);
    while !shared.stopping() {
        let failed = match connect(client) {
            Ok(mut conn) => {
                if ever {
                    bump(&shared.counters.reconnects);
                }
                ever = true;
                let outcome = serve(shared, &mut conn, &mut attempt, &mut warned);
                shared.subscriber_up.store(false, Ordering::Release);
                shared
                    .subscribed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                match outcome {
                    Ok(()) => return,
                    Err(e) => {
                        // The broker went away: so did the publisher's link.
                        shared.publisher_up.store(false, Ordering::Release);
                        shared.losses.fetch_add(1, Ordering::AcqRel);
                        e
                    }
                }
            }
            Err(e) => e,
        };
        bump(&shared.counters.broker_errors);
        if !warned {
            log::warn!(
                "cluster {}: broker subscription lost: {failed}; retrying",
                shared.node
            );
            warned = true;
        }
        attempt += 1;
        let until = later(shared.config.reconnect.delay(attempt, spread()));
        // The backoff, cut short by a stop.
        while Instant::now() < until && !shared.stopping() {
            std::thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
        }
    }
}

/// Serve one connection until the stop flag (`Ok`) or a broker error.
fn serve(
    shared: &Shared,
    conn: &mut redis::Connection,
    attempt: &mut u32,
    warned: &mut bool,
) -> redis::RedisResult<()> {
    let prefix = &shared.config.prefix;
    let mut pubsub = conn.as_pubsub();
    // SUBSCRIBE and UNSUBSCRIBE wait for their answers with the I/O
    // timeout; only the wait for messages is cut to TICKs (a broker
    // further than a TICK away is no lost broker).
    pubsub.set_read_timeout(Some(IO_TIMEOUT))?;
    let own = node_channel(prefix, &shared.node, shared.incarnation);
    pubsub.subscribe(&[all_channel(prefix), own])?;
    let mut subscribed: BTreeSet<String> = BTreeSet::new();
    let mut seen = None;
    loop {
        if shared.stopping() {
            return Ok(());
        }
        // The count first, then the rooms: a change in between is seen
        // next time round.
        let changes = shared.hub.room_changes();
        if seen != Some(changes) {
            let want: BTreeSet<String> = shared
                .hub
                .rooms()
                .into_iter()
                .map(|(room, _)| room)
                .collect();
            let add: Vec<String> = want.difference(&subscribed).cloned().collect();
            let gone: Vec<String> = subscribed.difference(&want).cloned().collect();
            let channels = |rooms: &[String]| -> Vec<String> {
                rooms.iter().map(|r| room_channel(prefix, r)).collect()
            };
            pubsub.set_read_timeout(Some(IO_TIMEOUT))?;
            if !add.is_empty() {
                pubsub.subscribe(channels(&add))?;
            }
            if !gone.is_empty() {
                pubsub.unsubscribe(channels(&gone))?;
            }
            subscribed = want;
            *shared
                .subscribed
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = subscribed.iter().cloned().collect();
            if seen.is_none() {
                // Connected and subscribed: the outage (if any) is over.
                if *warned {
                    log::info!("cluster {}: broker subscription back", shared.node);
                }
                (*attempt, *warned) = (0, false);
                shared.subscriber_up.store(true, Ordering::Release);
            }
            seen = Some(changes);
            pubsub.set_read_timeout(Some(TICK))?;
        }
        match pubsub.get_message() {
            Ok(msg) => deliver(shared, msg.get_payload_bytes()),
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e),
        }
    }
}

/// Hand an envelope from another node to this node's loops.
fn deliver(shared: &Shared, bytes: &[u8]) {
    let Some(env) = wire::decode(bytes) else {
        bump(&shared.counters.malformed);
        return;
    };
    if env.origin == &*shared.node {
        if env.incarnation == shared.incarnation {
            bump(&shared.counters.echoes);
            return;
        }
        // Another live node has this one's name: its messages are still
        // delivered, and the clash is said (once per run).
        if !shared.name_clash.swap(true, Ordering::Relaxed) {
            log::warn!(
                "cluster {}: another node with this name is live (incarnation {:016x}); \
                 node names must be unique",
                shared.node,
                env.incarnation
            );
        }
    }
    // Counted before it is handed over: whoever sees it delivered sees
    // it counted.
    bump(&shared.counters.received);
    let hub = &shared.hub;
    let done = match env.target {
        Target::Room(room) => hub.publish(room, env.id, env.body),
        Target::All => hub.broadcast(env.id, env.body),
        Target::Conn(conn) => hub.conn(conn).send(env.id, env.body),
    };
    if let Err(e) = done {
        bump(&shared.counters.dropped);
        log::debug!(
            "cluster {}: from {}: not delivered: {e}",
            shared.node,
            env.origin
        );
    }
}
