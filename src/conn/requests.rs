//! [`Requests`]: a loop's requests waiting for replies, matched by
//! sequence number.
//!
//! A request's sequence number is taken from a counter per loop (never 0,
//! which means "no request"), so it is unique among the loop's
//! connections and comes round again only after 2^32 − 1 requests. A reply
//! whose request timed out finds a tombstone (kept one timeout longer, at
//! least [`TOMBSTONE_MIN`]) and is counted and dropped: it is never handed
//! to another request. A tombstone is a few dozen bytes; requests timing
//! out at a rate `r` hold about `r × max(timeout, 10 s)` of them.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::codec::Message;
use crate::error::{panic_message, Error};

/// What a request gets: its reply, or why there is none.
pub(crate) type Reply = Result<Message, Error>;

/// Where a request's outcome goes.
pub(crate) enum ReplySink {
    /// To a thread waiting for it.
    Channel(crossbeam_channel::Sender<Reply>),
    /// To a callback, run on the connection's loop thread.
    Callback(Box<dyn FnOnce(Reply) + Send>),
}

impl ReplySink {
    /// Hand over the outcome (a callback's panic is caught and logged).
    pub(crate) fn deliver(self, reply: Reply) {
        match self {
            ReplySink::Channel(tx) => {
                let _ = tx.send(reply);
            }
            ReplySink::Callback(f) => {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(|| f(reply))) {
                    log::error!("a reply callback panicked: {}", panic_message(&*panic));
                }
            }
        }
    }
}

/// The least time a timed-out request's tombstone is kept: a reply later
/// than this after the timeout is an ordinary (unmatched) message.
pub(crate) const TOMBSTONE_MIN: Duration = Duration::from_secs(10);

enum Entry {
    /// Waiting, with its timeout (a tombstone lives that long again).
    Waiting(ReplySink, Duration),
    /// Timed out; kept so a late reply is recognised (and dropped).
    Expired,
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

/// A timer the reactor must set: for request `seq` of a connection, after
/// `after`; `expired` for the tombstone's end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) key: usize,
    pub(crate) generation: u32,
    pub(crate) seq: u32,
    pub(crate) after: Duration,
    pub(crate) expired: bool,
}

/// A loop's waiting requests.
#[derive(Default)]
pub(crate) struct Requests {
    /// Per connection slot: its generation and its requests by seq.
    by_conn: HashMap<usize, (u32, HashMap<u32, Entry>)>,
    last_seq: u32,
    /// Timers to set (drained by the reactor every turn).
    deadlines: Vec<Deadline>,
}

impl Requests {
    /// Register a request about to be sent; returns its sequence number.
    pub(crate) fn start(
        &mut self,
        key: usize,
        generation: u32,
        timeout: Duration,
        sink: ReplySink,
    ) -> u32 {
        let conn = self
            .by_conn
            .entry(key)
            .or_insert((generation, HashMap::new()));
        if conn.0 != generation {
            *conn = (generation, HashMap::new());
        }
        let mut seq = self.last_seq;
        loop {
            seq = seq.wrapping_add(1);
            if seq != 0 && !conn.1.contains_key(&seq) {
                break;
            }
        }
        self.last_seq = seq;
        conn.1.insert(seq, Entry::Waiting(sink, timeout));
        self.deadlines.push(Deadline {
            key,
            generation,
            seq,
            after: timeout,
            expired: false,
        });
        seq
    }

    /// Undo `start` (the request could not be sent).
    pub(crate) fn cancel(&mut self, key: usize, seq: u32) -> Option<ReplySink> {
        match self.by_conn.get_mut(&key)?.1.remove(&seq)? {
            Entry::Waiting(sink, _) => Some(sink),
            Entry::Expired => None,
        }
    }

    /// Match an incoming message's sequence number.
    pub(crate) fn matched(&mut self, key: usize, generation: u32, seq: u32) -> Matched {
        let Some((_, map)) = self.by_conn.get_mut(&key).filter(|(g, _)| *g == generation) else {
            return Matched::Unmatched;
        };
        match map.remove(&seq) {
            Some(Entry::Waiting(sink, _)) => Matched::Reply(sink),
            Some(Entry::Expired) => Matched::Late,
            None => Matched::Unmatched,
        }
    }

    /// The request timed out: its sink (to fail with `Timeout`), leaving a
    /// tombstone for a late reply, removed after its timeout again (`d`
    /// names the request; its `after` is not used).
    pub(crate) fn expire(&mut self, d: Deadline) -> Option<ReplySink> {
        let (g, map) = self.by_conn.get_mut(&d.key)?;
        if *g != d.generation {
            return None;
        }
        if d.expired {
            if matches!(map.get(&d.seq), Some(Entry::Expired)) {
                map.remove(&d.seq);
            }
            return None;
        }
        match map.get_mut(&d.seq) {
            Some(entry @ Entry::Waiting(..)) => {
                let Entry::Waiting(sink, after) = std::mem::replace(entry, Entry::Expired) else {
                    return None;
                };
                self.deadlines.push(Deadline {
                    expired: true,
                    after: after.max(TOMBSTONE_MIN),
                    ..d
                });
                Some(sink)
            }
            _ => None,
        }
    }

    /// The connection was lost or closed: every waiting request fails.
    pub(crate) fn fail_all(&mut self, key: usize, generation: u32) -> Vec<ReplySink> {
        match self.by_conn.remove(&key) {
            Some((g, map)) if g == generation => map
                .into_values()
                .filter_map(|e| match e {
                    Entry::Waiting(sink, _) => Some(sink),
                    Entry::Expired => None,
                })
                .collect(),
            Some(other) => {
                self.by_conn.insert(key, other);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// The timers to set since the last call.
    pub(crate) fn take_deadlines(&mut self) -> Vec<Deadline> {
        std::mem::take(&mut self.deadlines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> (ReplySink, crossbeam_channel::Receiver<Reply>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        (ReplySink::Channel(tx), rx)
    }

    #[test]
    fn sequence_numbers_skip_zero_and_pending_ones_when_they_wrap() {
        let mut r = Requests {
            last_seq: u32::MAX - 1,
            ..Requests::default()
        };
        let a = r.start(1, 1, Duration::from_secs(1), sink().0);
        let b = r.start(1, 1, Duration::from_secs(1), sink().0);
        assert_eq!((a, b), (u32::MAX, 1));
        r.last_seq = 0;
        assert_eq!(
            r.start(1, 1, Duration::from_secs(1), sink().0),
            2,
            "1 is pending"
        );
    }

    #[test]
    fn a_reply_after_the_timeout_is_late_never_another_requests() {
        let mut r = Requests::default();
        let (s, rx) = sink();
        let seq = r.start(3, 7, Duration::from_secs(1), s);
        let deadline = r.take_deadlines()[0];
        r.expire(deadline)
            .expect("waiting")
            .deliver(Err(Error::Timeout));
        assert!(matches!(rx.try_recv(), Ok(Err(Error::Timeout))));
        assert!(matches!(r.matched(3, 7, seq), Matched::Late));
        assert!(matches!(r.matched(3, 7, seq), Matched::Unmatched));
        // Another generation of the slot never matches.
        let seq2 = r.start(3, 8, Duration::from_secs(1), sink().0);
        assert!(matches!(r.matched(3, 7, seq2), Matched::Unmatched));
        assert!(matches!(r.matched(3, 8, seq2), Matched::Reply(_)));
    }

    #[test]
    fn losing_the_connection_fails_every_waiting_request() {
        let mut r = Requests::default();
        let rxs: Vec<_> = (0..3)
            .map(|_| {
                let (s, rx) = sink();
                r.start(5, 1, Duration::from_secs(1), s);
                rx
            })
            .collect();
        for s in r.fail_all(5, 1) {
            s.deliver(Err(Error::Disconnected));
        }
        for rx in rxs {
            assert!(matches!(rx.try_recv(), Ok(Err(Error::Disconnected))));
        }
        assert!(r.fail_all(5, 1).is_empty());
    }
}
