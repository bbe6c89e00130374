//! The publisher thread: takes envelopes from the bounded queue and
//! PUBLISHes them (pipelined in batches), refreshes the node's presence
//! record and reads the others' every heartbeat, and reconnects with the
//! backoff when the broker goes away.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::{bump, presence_key, wire, NodeInfo, Shared};

/// What the queue carries.
pub(super) enum Out {
    /// An envelope for a channel.
    Publish(String, Vec<u8>),
    /// Look at the stop flag now.
    Wake,
}

/// Most envelopes sent in one pipeline.
const BATCH: usize = 256;

/// How long one broker call may take before the connection counts as
/// lost.
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(1);

/// Where in the jitter band a delay falls (-1 to 1): a cheap spread from
/// the clock, enough to keep nodes that lost the broker together apart.
pub(super) fn spread() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 2001) / 1000.0 - 1.0
}

/// `now + d`, saturating at a day: a backoff or heartbeat never
/// overflows the clock.
pub(super) fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// A connection to the broker with bounded reads and writes.
pub(super) fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let conn = client.get_connection_with_timeout(IO_TIMEOUT)?;
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(conn)
}

/// The publisher's connection state: up, or down until `next_try`.
struct Link {
    conn: Option<redis::Connection>,
    /// Failed attempts since the last connection.
    attempt: u32,
    next_try: Instant,
    /// A connection was made before (the next one is a reconnect).
    ever: bool,
    /// This outage was logged.
    warned: bool,
    /// `Shared::losses` when the connection was made.
    losses: u64,
}

impl Link {
    fn lost(&mut self, shared: &Shared, what: &str, e: &redis::RedisError) {
        self.conn = None;
        shared.publisher_up.store(false, Ordering::Release);
        bump(&shared.counters.broker_errors);
        self.attempt += 1;
        self.next_try = later(shared.config.reconnect.delay(self.attempt, spread()));
        if !self.warned {
            log::warn!(
                "cluster {}: broker {what} failed: {e}; retrying",
                shared.node
            );
            self.warned = true;
        }
    }

    fn try_connect(&mut self, shared: &Shared, client: &redis::Client) {
        let losses = shared.losses.load(Ordering::Acquire);
        match connect(client) {
            Ok(conn) => {
                self.losses = losses;
                self.conn = Some(conn);
                if self.ever {
                    bump(&shared.counters.reconnects);
                    log::info!("cluster {}: broker reachable again", shared.node);
                }
                self.ever = true;
                self.attempt = 0;
                self.warned = false;
                shared.publisher_up.store(true, Ordering::Release);
            }
            Err(e) => self.lost(shared, "connect", &e),
        }
    }
}

pub(super) fn run(shared: &Arc<Shared>, client: &redis::Client, rx: &Receiver<Out>) {
    let mut link = Link {
        conn: None,
        attempt: 0,
        next_try: Instant::now(),
        ever: false,
        warned: false,
        losses: 0,
    };
    let mut next_beat = Instant::now();
    while !shared.stopping() {
        if link.conn.is_some() && shared.losses.load(Ordering::Acquire) != link.losses {
            // The subscriber saw the broker go: reconnect before sending.
            link.conn = None;
            link.next_try = Instant::now();
        }
        if link.conn.is_none() && Instant::now() >= link.next_try {
            link.try_connect(shared, client);
            next_beat = Instant::now();
        }
        if link.conn.is_some() && Instant::now() >= next_beat {
            next_beat = later(shared.config.heartbeat);
            if let Some(conn) = link.conn.as_mut() {
                if let Err(e) = heartbeat(shared, conn) {
                    link.lost(shared, "heartbeat", &e);
                }
            }
        }
        let until = if link.conn.is_some() {
            next_beat
        } else {
            link.next_try
        };
        let wait = until.saturating_duration_since(Instant::now());
        let first = match rx.recv_timeout(wait) {
            Ok(Out::Publish(channel, payload)) => (channel, payload),
            Ok(Out::Wake) | Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(Out::Publish(channel, payload)) => batch.push((channel, payload)),
                _ => break,
            }
        }
        let bytes: usize = batch.iter().map(|(_, p)| p.len()).sum();
        shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        let Some(conn) = link.conn.as_mut() else {
            let dropped = &shared.counters.dropped;
            dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
            continue;
        };
        let mut pipe = redis::pipe();
        for (channel, payload) in &batch {
            pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
        }
        match pipe.query::<()>(conn) {
            Ok(()) => {
                let published = &shared.counters.published;
                published.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                let dropped = &shared.counters.dropped;
                dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                link.lost(shared, "PUBLISH", &e);
            }
        }
    }
    // A clean stop (`Cluster::shutdown`, or the server shutting down)
    // removes the presence record; a dropped `Cluster` leaves it to expire.
    if shared.farewell.load(Ordering::Acquire) || shared.hub.runtime.is_shut_down() {
        if let Some(conn) = link.conn.as_mut() {
            let key = presence_key(&shared.config.prefix, &shared.node);
            let _ = redis::cmd("DEL").arg(key).exec(conn);
        }
    }
    shared.publisher_up.store(false, Ordering::Release);
}

/// Escape the glob characters of `s` for a SCAN pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Most SCAN rounds per heartbeat (a bound on a broker that keeps
/// answering with a cursor).
const MAX_SCANS: usize = 1000;

/// Write this node's presence record, read the others'.
fn heartbeat(shared: &Shared, conn: &mut redis::Connection) -> redis::RedisResult<()> {
    let (prefix, hub) = (&shared.config.prefix, &shared.hub);
    // Only the rooms the node is subscribed to: a member another node
    // counts is one its publishes reach.
    let mut rooms = hub.rooms();
    {
        let subscribed = shared.subscribed.lock();
        let subscribed = subscribed.unwrap_or_else(PoisonError::into_inner);
        rooms.retain(|(room, _)| subscribed.iter().any(|s| s == room));
    }
    rooms.sort();
    let record = wire::encode_presence(hub.connection_count(), &rooms);
    let ttl = u64::try_from(shared.config.presence_timeout.as_millis()).unwrap_or(u64::MAX);
    redis::cmd("SET")
        .arg(presence_key(prefix, &shared.node))
        .arg(record)
        .arg("PX")
        .arg(ttl)
        .exec(conn)?;
    let pattern = format!("{}*", glob_escape(&presence_key(prefix, "")));
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    for _ in 0..MAX_SCANS {
        let (next, mut found): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(100)
            .query(conn)?;
        keys.append(&mut found);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    let own = presence_key(prefix, &shared.node);
    keys.retain(|k| *k != own);
    let records: Vec<Option<Vec<u8>>> = if keys.is_empty() {
        Vec::new()
    } else {
        redis::cmd("MGET").arg(&keys).query(conn)?
    };
    let strip = presence_key(prefix, "");
    let view: Vec<NodeInfo> = keys
        .iter()
        .zip(records)
        .filter_map(|(key, record)| {
            let (connections, rooms) = wire::decode_presence(&record?)?;
            let node = key.strip_prefix(&strip)?.to_string();
            Some(NodeInfo {
                node,
                connections,
                rooms,
            })
        })
        .collect();
    *shared.view.lock().unwrap_or_else(PoisonError::into_inner) = (Some(Instant::now()), view);
    Ok(())
}
