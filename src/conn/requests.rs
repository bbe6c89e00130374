//! [`Requests`]: a loop's requests waiting for replies, matched by
//! sequence number.
//!
//! A request's sequence number is taken from a counter per loop (never 0,
//! which means "no request"), so it is unique among the loop's
//! connections and comes round again only after 2^32 − 1 requests. The
//! side that dialed a connection numbers its requests odd, the side that
//! accepted it even (HTTP/2's rule for stream ids): when both ends send
//! requests on one connection, the peer's request is never taken for the
//! reply to one of ours. A reply
//! whose request timed out finds a tombstone (kept one timeout longer, at
//! least [`TOMBSTONE_MIN`]) and is counted and dropped: it is never handed
//! to another request. A tombstone is a few dozen bytes; requests timing
//! out at a rate `r` hold about `r × max(timeout, 10 s)` of them.
//!
//! **Timers.** A connection with requests has one timer armed at a time,
//! at its earliest deadline (never one per request: at a million requests
//! a second with a 10 s timeout that would be ten million wheel entries).
//! When it fires, what is due expires and the timer is armed again for
//! the next deadline; a request answered in time costs no timer at all.
//! Each timer carries the serial it was armed with: one superseded by an
//! earlier deadline (or one that fired early, and was armed again) finds
//! a newer serial when it fires and does nothing.
//!
//! The maps hash with `FxHash`: their keys (slots, this side's sequence
//! numbers) are chosen here, never by a peer, so there is no flood to
//! resist, and SipHash was a tenth of a request's client CPU.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::codec::Message;
use crate::config::FOREVER;
use crate::error::{panic_message, Error};

/// What a request gets: its reply, or why there is none.
pub(crate) type Reply = Result<Message, Error>;

/// Where a request's outcome goes. Every sink gets exactly one outcome:
/// one dropped unanswered (a request still in the inbox of a loop that
/// exits, say) answers `Err(ShutDown)` on its way out, unless the caller
/// got the error instead ([`forget`](Self::forget)).
pub(crate) enum ReplySink {
    /// To a thread waiting for it (dropped, the waiter sees `ShutDown`).
    Channel(oneshot::ReplyTx),
    /// To a callback, run on the connection's loop thread.
    Callback(Callback),
}

/// A reply callback, called exactly once: with the outcome, or with
/// `Err(ShutDown)` when dropped unanswered.
pub(crate) struct Callback(Option<Box<dyn FnOnce(Reply) + Send>>);

impl Callback {
    pub(crate) fn new(f: impl FnOnce(Reply) + Send + 'static) -> Self {
        Callback(Some(Box::new(f)))
    }

    /// Run the callback with `reply` (its panic is caught and logged).
    fn call(&mut self, reply: Reply) {
        if let Some(f) = self.0.take() {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(reply))) {
                log::error!("a reply callback panicked: {}", panic_message(&*panic));
            }
        }
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        // Not while unwinding: a second panic there would abort.
        if !std::thread::panicking() {
            self.call(Err(Error::ShutDown));
        }
    }
}

impl ReplySink {
    /// Hand over the outcome (a callback's panic is caught and logged).
    /// Outside `conn`, through `ConnTable::deliver`, which checks that no
    /// borrow of the table is held while the callback runs.
    pub(super) fn deliver(self, reply: Reply) {
        match self {
            ReplySink::Channel(tx) => tx.send(reply),
            ReplySink::Callback(mut f) => f.call(reply),
        }
    }

    /// Drop the sink without an outcome: the request's error went back
    /// to its caller instead (`request_with` returned it).
    pub(crate) fn forget(self) {
        if let ReplySink::Callback(mut f) = self {
            f.0 = None;
        }
    }
}

/// The least time a timed-out request's tombstone is kept: a reply later
/// than this after the timeout is an ordinary (unmatched) message.
pub(crate) const TOMBSTONE_MIN: Duration = Duration::from_secs(10);

enum Entry {
    /// Waiting until `deadline`; a tombstone then lives `timeout` again.
    Waiting {
        sink: ReplySink,
        deadline: Instant,
        timeout: Duration,
    },
    /// Timed out; kept until `forget` so a late reply is recognised.
    Expired { forget: Instant },
}

impl Entry {
    /// When this entry next needs the timer.
    fn due(&self) -> Instant {
        match self {
            Entry::Waiting { deadline, .. } => *deadline,
            Entry::Expired { forget } => *forget,
        }
    }
}

/// What an incoming message with a sequence number is.
pub(crate) enum Matched {
    /// The reply to a waiting request.
    Reply(ReplySink),
    /// The reply to a request that timed out: count it and drop it.
    Late,
    /// No request of ours: a message like any other.
    Unmatched,
}

/// A timer the reactor must set: for the connection at `key` of
/// `generation`, at `at`, handing `serial` back to `expire_due`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) key: usize,
    pub(crate) generation: u32,
    pub(crate) at: Instant,
    pub(crate) serial: u32,
}

/// One connection's requests.
struct ConnRequests {
    generation: u32,
    /// The low bit of this side's sequence numbers (1: it dialed).
    parity: u32,
    by_seq: FxHashMap<u32, Entry>,
    /// The connection's timer is armed for this instant (none: no timer).
    armed: Option<Instant>,
    /// The serial of the armed timer (any other timer is superseded).
    serial: u32,
    /// Requests timed out since the last reply (`in_a_row`).
    timeouts_in_row: u32,
}

/// A loop's waiting requests.
#[derive(Default)]
pub(crate) struct Requests {
    /// Per connection slot. An entry stays while its connection lives
    /// (with its armed timer), so a connection doing one request at a
    /// time arms a timer once per timeout, not once per request.
    by_conn: FxHashMap<usize, ConnRequests>,
    last_seq: u32,
    /// Timers to set (drained by the reactor every turn).
    deadlines: Vec<Deadline>,
    /// Sinks of an entry left by a slot's earlier occupant (a leak, never
    /// expected: see `start`), to fail once the borrow is released.
    orphans: Vec<ReplySink>,
}

impl ConnRequests {
    /// Arm the connection's timer for `at` (superseding the armed one).
    fn arm(&mut self, key: usize, at: Instant) -> Deadline {
        self.armed = Some(at);
        self.serial = self.serial.wrapping_add(1);
        Deadline {
            key,
            generation: self.generation,
            at,
            serial: self.serial,
        }
    }
}

impl Requests {
    /// Register a request about to be sent at `now` on a connection this
    /// side `dialed` (or accepted); returns its sequence number. The
    /// caller checked that the connection at `key` of `generation` is
    /// open (`ConnTable::begin_request`): a stale id never gets here.
    pub(crate) fn start(
        &mut self,
        key: usize,
        generation: u32,
        dialed: bool,
        timeout: Duration,
        sink: ReplySink,
        now: Instant,
    ) -> u32 {
        let fresh = || ConnRequests {
            generation,
            parity: u32::from(dialed),
            by_seq: FxHashMap::default(),
            armed: None,
            serial: 0,
            timeouts_in_row: 0,
        };
        let conn = self.by_conn.entry(key).or_insert_with(fresh);
        // The entry of a slot's earlier occupant went with it (`fail_all`
        // when it was removed): one here is a leak. Its sinks are failed
        // by the caller (`take_orphans`), never dropped under the borrow.
        debug_assert_eq!(conn.generation, generation, "requests of a removed slot");
        if conn.generation != generation {
            let stale = std::mem::replace(conn, fresh());
            self.orphans
                .extend(stale.by_seq.into_values().filter_map(|e| match e {
                    Entry::Waiting { sink, .. } => Some(sink),
                    Entry::Expired { .. } => None,
                }));
        }
        let mut seq = self.last_seq;
        loop {
            seq = seq.wrapping_add(1);
            if seq != 0 && seq & 1 == conn.parity && !conn.by_seq.contains_key(&seq) {
                break;
            }
        }
        self.last_seq = seq;
        let deadline = now + timeout.min(FOREVER);
        conn.by_seq.insert(
            seq,
            Entry::Waiting {
                sink,
                deadline,
                timeout,
            },
        );
        if conn.armed.is_none_or(|armed| deadline < armed) {
            self.deadlines.push(conn.arm(key, deadline));
        }
        seq
    }

    /// Undo `start` (the request could not be sent).
    pub(crate) fn cancel(&mut self, key: usize, generation: u32, seq: u32) -> Option<ReplySink> {
        let conn = self
            .by_conn
            .get_mut(&key)
            .filter(|c| c.generation == generation)?;
        match conn.by_seq.remove(&seq)? {
            Entry::Waiting { sink, .. } => Some(sink),
            Entry::Expired { .. } => None,
        }
    }

    /// Match an incoming message's sequence number (one of the other
    /// side's parity is its own request, never a reply).
    pub(crate) fn matched(&mut self, key: usize, generation: u32, seq: u32) -> Matched {
        let Some(conn) = self
            .by_conn
            .get_mut(&key)
            .filter(|c| c.generation == generation && seq & 1 == c.parity)
        else {
            return Matched::Unmatched;
        };
        let matched = match conn.by_seq.remove(&seq) {
            Some(Entry::Waiting {
                sink,
                deadline,
                timeout,
            }) => {
                super::metered::observe_reply(deadline, timeout);
                Matched::Reply(sink)
            }
            Some(Entry::Expired { .. }) => Matched::Late,
            None => return Matched::Unmatched,
        };
        conn.timeouts_in_row = 0;
        matched
    }

    /// The connection's timer armed with `serial` fired at `now`: the
    /// requests due time out (their sinks are returned, to fail with
    /// `Timeout`, each leaving a tombstone), tombstones due are forgotten,
    /// and the timer is armed again for the next deadline. A superseded
    /// timer does nothing.
    pub(crate) fn expire_due(
        &mut self,
        key: usize,
        generation: u32,
        serial: u32,
        now: Instant,
    ) -> Vec<ReplySink> {
        let mut sinks = Vec::new();
        let Some(conn) = self
            .by_conn
            .get_mut(&key)
            .filter(|c| c.generation == generation && c.serial == serial)
        else {
            return sinks;
        };
        conn.armed = None;
        conn.by_seq.retain(|_, entry| match entry {
            Entry::Expired { forget } => *forget > now,
            Entry::Waiting { deadline, .. } if *deadline > now => true,
            Entry::Waiting { timeout, .. } => {
                let forget = now + (*timeout).clamp(TOMBSTONE_MIN, FOREVER);
                if let Entry::Waiting { sink, .. } =
                    std::mem::replace(entry, Entry::Expired { forget })
                {
                    sinks.push(sink);
                }
                true
            }
        });
        if let Some(at) = conn.by_seq.values().map(Entry::due).min() {
            self.deadlines.push(conn.arm(key, at));
        }
        conn.timeouts_in_row = (conn.timeouts_in_row).saturating_add(sinks.len() as u32);
        sinks
    }

    /// Requests of the connection at `key` of `generation` that timed out
    /// since its last reply (a late one too): `Dial::reconnect_after_timeouts`.
    pub(crate) fn in_a_row(&self, key: usize, generation: u32) -> u32 {
        self.by_conn
            .get(&key)
            .filter(|c| c.generation == generation)
            .map_or(0, |c| c.timeouts_in_row)
    }

    /// The connection was lost or closed: every waiting request fails.
    pub(crate) fn fail_all(&mut self, key: usize, generation: u32) -> Vec<ReplySink> {
        match self.by_conn.remove(&key) {
            Some(conn) if conn.generation == generation => conn
                .by_seq
                .into_values()
                .filter_map(|e| match e {
                    Entry::Waiting { sink, .. } => Some(sink),
                    Entry::Expired { .. } => None,
                })
                .collect(),
            Some(other) => {
                self.by_conn.insert(key, other);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// Sinks `start` took from a removed slot's leftover entry.
    pub(crate) fn take_orphans(&mut self) -> Vec<ReplySink> {
        std::mem::take(&mut self.orphans)
    }

    /// The timers to set since the last call.
    pub(crate) fn take_deadlines(&mut self) -> Vec<Deadline> {
        std::mem::take(&mut self.deadlines)
    }

    /// Whether timers wait to be set ([`take_deadlines`](Self::take_deadlines)).
    pub(crate) fn has_deadlines(&self) -> bool {
        !self.deadlines.is_empty()
    }

    /// How many connections have an entry (tests: nothing leaks).
    #[cfg(test)]
    pub(crate) fn connections(&self) -> usize {
        self.by_conn.len()
    }
}

pub(crate) mod oneshot;
#[cfg(test)]
mod tests;
