//! The cluster's public types: how a node joins ([`ClusterConfig`]), a
//! connection's cluster-wide name ([`NodeConnId`]), a node's presence
//! ([`NodeInfo`]) and the counters ([`ClusterStats`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Reconnect;
use crate::error::{Error, Result};
use crate::id::ConnId;

/// The longest node name, in bytes.
pub const MAX_NODE_NAME: usize = 64;

/// How a node joins a cluster. Build it with [`ClusterConfig::new`] and
/// change the public fields as needed.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The broker, e.g. `redis://127.0.0.1:6379/`.
    pub url: String,
    /// This node's name, unique in the cluster (1 to [`MAX_NODE_NAME`]
    /// bytes).
    pub node: String,
    /// Prefix of every channel and key (default `netloom:`): clusters
    /// sharing one Redis use different prefixes.
    pub prefix: String,
    /// How often the node refreshes its presence (default 1 s).
    pub heartbeat: Duration,
    /// How long a presence record lives without a refresh (default 3 s;
    /// longer than `heartbeat`).
    pub presence_timeout: Duration,
    /// Messages waiting for the publisher thread at most (default 4096);
    /// over it the publishing call returns [`Error::Broker`].
    pub queue: usize,
    /// Bytes of those messages at most (default 16 MiB), the same way:
    /// the queue bounds the memory it holds, not only the count.
    pub queue_bytes: usize,
    /// The backoff between attempts to reach the broker (default: 100 ms
    /// doubling to 5 s).
    pub reconnect: Reconnect,
}

impl ClusterConfig {
    /// The defaults, for the broker at `url` and the node named `node`.
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> Self {
        ClusterConfig {
            url: url.into(),
            node: node.into(),
            prefix: "netloom:".into(),
            heartbeat: Duration::from_secs(1),
            presence_timeout: Duration::from_secs(3),
            queue: 4096,
            queue_bytes: 16 << 20,
            reconnect: Reconnect {
                initial: Duration::from_millis(100),
                factor: 2.0,
                max: Duration::from_secs(5),
                jitter: 0.2,
                max_attempts: None,
            },
        }
    }

    pub(super) fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("cluster: {what}")));
        if self.node.is_empty() || self.node.len() > MAX_NODE_NAME {
            return bad("the node name must be 1 to 64 bytes");
        }
        if self.heartbeat.is_zero() || self.presence_timeout <= self.heartbeat {
            return bad("heartbeat must be above zero and below presence_timeout");
        }
        if self.presence_timeout > Duration::from_secs(86_400) {
            return bad("presence_timeout must be at most a day");
        }
        if self.queue == 0 || self.queue_bytes == 0 {
            return bad("queue and queue_bytes must be at least 1");
        }
        self.reconnect.validate()
    }
}

/// A connection of any node of the cluster: the node's name, which run
/// of that node it is (`incarnation`), and the connection's id there.
/// Get one from [`Cluster::id_of`](super::Cluster::id_of)(super::Cluster::id_of); store it
/// anywhere (its text form, `node/loop:slot.generation`, is for logs).
///
/// The incarnation is drawn anew each time a node's `Cluster` starts:
/// after a node restarts under the same name, its connection ids begin
/// again from the same numbers, and an id kept from the earlier run
/// would name a new connection. Sends go to the incarnation's own
/// channel, which the new run does not listen to: a stale id reaches
/// nobody.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeConnId {
    /// The node's name.
    pub node: Arc<str>,
    /// The run of the node the connection belongs to.
    pub incarnation: u64,
    /// The connection's id on that node.
    pub conn: ConnId,
}

impl fmt::Display for NodeConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.conn)
    }
}

/// One node as its presence record last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name.
    pub node: String,
    /// Its open connections.
    pub connections: usize,
    /// Its rooms with members, and how many.
    pub rooms: Vec<(String, usize)>,
}

/// What the cluster layer of one node did (counters since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Envelopes published to the broker.
    pub published: u64,
    /// Envelopes from other nodes handed to this node's loops.
    pub received: u64,
    /// This node's own envelopes, come back from the broker and dropped.
    pub echoes: u64,
    /// Envelopes that could not be decoded (dropped).
    pub malformed: u64,
    /// Messages for other nodes not sent: broker down, queue full, or a
    /// PUBLISH that failed.
    pub dropped: u64,
    /// Failed attempts to reach the broker, and lost connections to it.
    pub broker_errors: u64,
    /// Connections to the broker made again after a loss.
    pub reconnects: u64,
}
