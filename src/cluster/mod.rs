//! Rooms, sends and broadcasts across nodes, through Redis pub/sub (the
//! `cluster` feature).
//!
//! A [`Cluster`] joins one server (its [`Hub`]) to the other nodes on one
//! Redis. It is a floor of its own above the server: it reaches the loops
//! only through the hub (handles and inboxes), and the loops know nothing
//! of it.
//!
//! ```text
//!  handler ── cluster.publish(room) ──► hub.publish (this node's members)
//!                                  └──► bounded queue ──► publisher thread ──► PUBLISH
//!  Redis ──► subscriber thread ──► envelope from another node? ──► hub.publish /
//!            (SUBSCRIBE room:R only      broadcast / conn.send (the loops' inboxes,
//!             while R has a member here)  bounded by `inbox_capacity`)
//! ```
//!
//! * Each node has a name ([`ClusterConfig::node`], unique in the
//!   cluster); a connection is named across nodes by a [`NodeConnId`].
//! * Channels: `{prefix}room:{room}`, `{prefix}all`, and
//!   `{prefix}node:{node}:{incarnation}` for sends to one connection (see
//!   [`NodeConnId`]: an id of a node's earlier run reaches nobody).
//!   A node subscribes to a room's channel only while it has a member in
//!   the room (it looks whenever a room appears or goes on a loop), and
//!   drops its own echoes (every envelope names the node it came from).
//! * Delivery is at most once. While the broker is unreachable, the
//!   publishing calls deliver to this node's connections and return
//!   [`Error::Broker`] (logged once per outage, counted in
//!   [`ClusterStats`]); both threads reconnect with the
//!   [`Reconnect`](crate::Reconnect) backoff and the subscriber subscribes again to what
//!   the node needs. A message published while a node was not (yet)
//!   subscribed is not delivered to it.
//! * Presence: every `heartbeat` the node writes its connection count and
//!   its rooms' member counts to `{prefix}presence:{node}`, expiring after
//!   `presence_timeout`, and reads the other nodes' records. A room is in
//!   the record only once the node is subscribed to it: a remote member
//!   that [`Cluster::room_len`] counts is one a publish reaches. A node that
//!   stops refreshing (crashed, or its `Cluster` dropped) is gone from the
//!   others' view once its record expires.

mod publisher;
mod subscriber;
mod types;
mod wire;

pub use types::{ClusterConfig, ClusterStats, NodeConnId, NodeInfo, MAX_NODE_NAME};

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{bounded, Sender, TrySendError};

use crate::error::{Error, Result};
use crate::id::ConnId;
use crate::runtime::Hub;

use wire::Target;

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    received: AtomicU64,
    echoes: AtomicU64,
    malformed: AtomicU64,
    dropped: AtomicU64,
    broker_errors: AtomicU64,
    reconnects: AtomicU64,
}

impl Shared {
    /// The other nodes as last read, unless that was longer ago than
    /// `presence_timeout` (their records would have expired by now).
    fn others(&self) -> Vec<NodeInfo> {
        let view = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        match view.0 {
            Some(at) if at.elapsed() <= self.config.presence_timeout => view.1.clone(),
            _ => Vec::new(),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What the cluster's threads share with its handle.
struct Shared {
    config: ClusterConfig,
    node: Arc<str>,
    /// This run of the node (see [`NodeConnId`]).
    incarnation: u64,
    /// Bytes of the envelopes in the queue to the publisher.
    queued_bytes: std::sync::atomic::AtomicUsize,
    hub: Hub,
    counters: Counters,
    /// The publisher thread has a connection to the broker.
    publisher_up: AtomicBool,
    /// The subscriber thread has a connection and its subscriptions.
    subscriber_up: AtomicBool,
    /// Connections the subscriber lost: the publisher's connection to
    /// the same broker is taken for lost too (never a message sent on a
    /// connection to a broker that went away since).
    losses: AtomicU64,
    /// The rooms the node is subscribed to now.
    subscribed: Mutex<Vec<String>>,
    /// The other nodes, from their presence records, and when they were
    /// read: a view older than `presence_timeout` (the broker gone) is
    /// ignored, as the records themselves would have expired.
    view: Mutex<(Option<Instant>, Vec<NodeInfo>)>,
    stop: AtomicBool,
    /// A message under this node's name from another run was seen (said
    /// once).
    name_clash: AtomicBool,
    /// Delete the presence record on the way out (a clean shutdown).
    farewell: AtomicBool,
}

impl Shared {
    /// The threads should stop: the `Cluster` was dropped or shut down,
    /// or its server is shutting down.
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire) || self.hub.runtime.is_shut_down()
    }
}

/// The channel of `room`'s messages.
fn room_channel(prefix: &str, room: &str) -> String {
    format!("{prefix}room:{room}")
}

/// The channel of broadcasts.
fn all_channel(prefix: &str) -> String {
    format!("{prefix}all")
}

/// The channel of sends to the connections of `node`'s run
/// `incarnation`.
fn node_channel(prefix: &str, node: &str, incarnation: u64) -> String {
    format!("{prefix}node:{node}:{incarnation:016x}")
}

/// A number for this run of a node: the clock's nanoseconds, the process
/// id and a counter of the process's clusters, mixed.
fn new_incarnation() -> u64 {
    static STARTED: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = STARTED.fetch_add(1, Ordering::Relaxed);
    let mut x =
        nanos ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64's finaliser: nearby inputs give far-apart outputs.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The key of `node`'s presence record.
fn presence_key(prefix: &str, node: &str) -> String {
    format!("{prefix}presence:{node}")
}

/// One node of a cluster: see the [module docs](self).
///
/// Dropping the last clone stops its threads without removing its
/// presence record (the others drop it after `presence_timeout`, as for
/// a crashed node); [`shutdown`](Self::shutdown), or the server shutting
/// down, stops them and removes it at once. Dropping it waits for its
/// threads (up to about two seconds, when a connection attempt is in
/// progress).
///
/// # Examples
///
/// ```no_run
/// use netloom::cluster::{Cluster, ClusterConfig};
/// use netloom::Server;
///
/// let server = Server::builder().bind("127.0.0.1:6570")?.start()?;
/// let config = ClusterConfig::new("redis://127.0.0.1:6379/", "node-a");
/// let cluster = Cluster::start(server.hub(), config)?;
/// cluster.publish("lobby", 3, b"hello, every node")?;
/// # Ok::<(), netloom::Error>(())
/// ```
pub struct Cluster {
    shared: Arc<Shared>,
    out: Sender<publisher::Out>,
    threads: Arc<Threads>,
}

struct Threads(
    Mutex<Vec<JoinHandle<()>>>,
    Arc<Shared>,
    Sender<publisher::Out>,
);

impl Drop for Threads {
    fn drop(&mut self) {
        self.1.stop.store(true, Ordering::Release);
        let _ = self.2.try_send(publisher::Out::Wake);
        let threads = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Clone for Cluster {
    fn clone(&self) -> Self {
        Cluster {
            shared: self.shared.clone(),
            out: self.out.clone(),
            threads: self.threads.clone(),
        }
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.shared.node)
            .finish()
    }
}

impl Cluster {
    /// Join `hub`'s server to the cluster on `config.url`: starts the
    /// publisher and subscriber threads. The broker need not be up: the
    /// node connects in the background, with the reconnect backoff, and
    /// works alone meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad URL or setting, [`Error::Io`] if a
    /// thread cannot be spawned.
    pub fn start(hub: Hub, config: ClusterConfig) -> Result<Cluster> {
        config.check()?;
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| Error::Config(format!("cluster: broker URL: {e}")))?;
        let (out, rx) = bounded(config.queue);
        let shared = Arc::new(Shared {
            node: Arc::from(config.node.as_str()),
            incarnation: new_incarnation(),
            queued_bytes: Default::default(),
            config,
            hub,
            counters: Counters::default(),
            publisher_up: AtomicBool::new(false),
            subscriber_up: AtomicBool::new(false),
            losses: AtomicU64::new(0),
            subscribed: Mutex::default(),
            view: Mutex::default(),
            stop: AtomicBool::new(false),
            name_clash: AtomicBool::new(false),
            farewell: AtomicBool::new(false),
        });
        let threads = Arc::new(Threads(Mutex::default(), shared.clone(), out.clone()));
        let name = |what: &str| format!("netloom-cluster-{what}");
        let (s, c) = (shared.clone(), client.clone());
        let p = std::thread::Builder::new()
            .name(name("pub"))
            .spawn(move || publisher::run(&s, &c, &rx))?;
        threads
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(p);
        let s = shared.clone();
        let t = std::thread::Builder::new()
            .name(name("sub"))
            .spawn(move || subscriber::run(&s, &client))?;
        threads
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(t);
        Ok(Cluster {
            shared,
            out,
            threads,
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.shared.node
    }

    /// The cluster-wide name of a connection of this node.
    pub fn id_of(&self, conn: ConnId) -> NodeConnId {
        NodeConnId {
            node: self.shared.node.clone(),
            incarnation: self.shared.incarnation,
            conn,
        }
    }

    /// Whether both of the node's connections to the broker are up (and
    /// its subscriptions in place).
    pub fn is_connected(&self) -> bool {
        let s = &self.shared;
        s.publisher_up.load(Ordering::Acquire) && s.subscriber_up.load(Ordering::Acquire)
    }

    /// Whether the node is subscribed to `room`'s channel now (it is while
    /// it has a member there and the broker is reachable).
    pub fn is_subscribed(&self, room: &str) -> bool {
        let subscribed = self.shared.subscribed.lock();
        let subscribed = subscribed.unwrap_or_else(PoisonError::into_inner);
        subscribed.iter().any(|r| r == room)
    }

    /// Send one message to a connection on any node. On this node it is
    /// [`ConnHandle::send`](crate::ConnHandle::send); on another, it goes
    /// through the broker (a closed or stale id there is counted on that
    /// node, not reported here).
    ///
    /// # Errors
    ///
    /// This node: as `ConnHandle::send`. Another node: [`Error::Broker`].
    pub fn send(&self, to: &NodeConnId, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        let s = &self.shared;
        if to.node == s.node {
            if to.incarnation != s.incarnation {
                // An id of this node's earlier run: nobody here.
                return Err(Error::Closed);
            }
            return s.hub.conn(to.conn).send(id, body);
        }
        let payload = wire::encode(
            (&s.node, s.incarnation),
            &Target::Conn(to.conn),
            id,
            body.as_ref(),
        );
        let channel = node_channel(&s.config.prefix, &to.node, to.incarnation);
        self.enqueue(channel, payload)
    }

    /// Send one message to every connection of every node: this node's
    /// through [`Hub::broadcast`], each other node encoding it once for
    /// its own connections.
    ///
    /// # Errors
    ///
    /// `Hub::broadcast`'s: [`Error::InboxFull`] after the other nodes
    /// have it (the other loops here too), the others before any node
    /// has it; or [`Error::Broker`] (this node's connections got it).
    pub fn broadcast(&self, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        let body = body.as_ref();
        let local = self.shared.hub.broadcast(id, body);
        self.then_remote(local, &Target::All, id, body)
    }

    /// Send one message to every member of `room` on every node (see
    /// [`Hub::publish`] for this node's part).
    ///
    /// # Errors
    ///
    /// `Hub::publish`'s: [`Error::InboxFull`] after the other nodes have
    /// it (the other loops here too), the others ([`Error::RoomName`],
    /// [`Error::Pack`], [`Error::ShutDown`]) before any node has it; or
    /// [`Error::Broker`] (this node's members got it).
    pub fn publish(&self, room: &str, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        let body = body.as_ref();
        let local = self.shared.hub.publish(room, id, body);
        self.then_remote(local, &Target::Room(room), id, body)
    }

    /// After this node's part (`local`): the other nodes', unless the
    /// message could not go anywhere (a bad name, the packer, shutdown).
    /// A full inbox of one loop here stops nobody else; it is reported
    /// after the other nodes have it.
    fn then_remote(
        &self,
        local: Result<()>,
        target: &Target<'_>,
        id: u32,
        body: &[u8],
    ) -> Result<()> {
        match local {
            Ok(()) | Err(Error::InboxFull) => {}
            Err(e) => return Err(e),
        }
        let prefix = &self.shared.config.prefix;
        let channel = match target {
            Target::Room(room) => room_channel(prefix, room),
            _ => all_channel(prefix),
        };
        self.remote(channel, target, id, body)?;
        local
    }

    /// [`publish`](Self::publish) to every member but `except`, a
    /// connection of this node (typically the sender).
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub fn publish_except(
        &self,
        room: &str,
        except: ConnId,
        id: u32,
        body: impl AsRef<[u8]>,
    ) -> Result<()> {
        let body = body.as_ref();
        let local = self.shared.hub.publish_except(room, except, id, body);
        self.then_remote(local, &Target::Room(room), id, body)
    }

    fn remote(&self, channel: String, target: &Target<'_>, id: u32, body: &[u8]) -> Result<()> {
        let payload = wire::encode(
            (&self.shared.node, self.shared.incarnation),
            target,
            id,
            body,
        );
        self.enqueue(channel, payload)
    }

    fn enqueue(&self, channel: String, payload: Vec<u8>) -> Result<()> {
        let s = &self.shared;
        // Either thread may be the first to see the broker gone.
        if !self.is_connected() {
            bump(&s.counters.dropped);
            return Err(Error::Broker("not connected".into()));
        }
        let full = || {
            bump(&s.counters.dropped);
            Err(Error::Broker("the queue to the broker is full".into()))
        };
        let bytes = payload.len();
        let before = s.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > s.config.queue_bytes && before > 0 {
            s.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return full();
        }
        match self.out.try_send(publisher::Out::Publish(channel, payload)) {
            Ok(()) => Ok(()),
            Err(e) => {
                s.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
                match e {
                    TrySendError::Full(_) => full(),
                    TrySendError::Disconnected(_) => Err(Error::ShutDown),
                }
            }
        }
    }

    /// Members of `room` on every node: this node's now
    /// ([`Hub::room_len`]), the others' as their presence records last
    /// said (at most one heartbeat old, plus the broker's delay).
    pub fn room_len(&self, room: &str) -> usize {
        let others: usize = (self.shared.others().iter())
            .flat_map(|n| n.rooms.iter())
            .filter(|(r, _)| r == room)
            .map(|(_, n)| *n)
            .sum();
        self.shared.hub.room_len(room) + others
    }

    /// Every node: this one now, and the others whose presence records
    /// have not expired (as last read, once per heartbeat).
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let hub = &self.shared.hub;
        let mut nodes = vec![NodeInfo {
            node: self.shared.node.to_string(),
            connections: hub.connection_count(),
            rooms: hub.rooms(),
        }];
        nodes.extend(self.shared.others());
        nodes
    }

    /// The cluster layer's counters.
    pub fn stats(&self) -> ClusterStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClusterStats {
            published: get(&c.published),
            received: get(&c.received),
            echoes: get(&c.echoes),
            malformed: get(&c.malformed),
            dropped: get(&c.dropped),
            broker_errors: get(&c.broker_errors),
            reconnects: get(&c.reconnects),
        }
    }

    /// Leave the cluster: remove this node's presence record (if the
    /// broker is reachable) and stop its threads. Other clones of this
    /// `Cluster` stop working too.
    pub fn shutdown(self) {
        self.shared.farewell.store(true, Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.out.try_send(publisher::Out::Wake);
    }
}
