//! The table's side of requests: handing an outcome to its sink with no
//! borrow of the table held (a callback is user code and may call back
//! into the table), and the debug check that enforces it wherever user
//! code runs.

use super::ConnTable;
use crate::conn::flag;
use crate::conn::requests::{Reply, ReplySink};
use crate::error::{Error, Result};
use crate::id::ConnId;

/// Where a request waits: the slot and generation of its connection
/// (checked open), and whether this side dialed it (which numbers its
/// requests: see `conn::requests`).
pub(crate) struct Requester {
    pub(crate) key: usize,
    pub(crate) generation: u32,
    pub(crate) dialed: bool,
}

impl ConnTable {
    /// Before a request on connection `to` is registered: `to` must name
    /// an open connection of this loop, checked first, so that a stale id
    /// fails with [`Error::Closed`] before any request state is touched;
    /// and its framing must carry sequence numbers ([`Error::NoSeq`]).
    /// Marks the connection's messages as possible replies.
    pub(crate) fn begin_request(&self, to: ConnId) -> Result<Requester> {
        let mut slab = self.conns.borrow_mut();
        let Some((key, conn)) = self.open_conn(&mut slab, to) else {
            return Err(self.send_error(Error::Closed));
        };
        if !self.wire.carries_seq(conn.profile, conn.layer.protocol()) {
            return Err(self.send_error(Error::NoSeq));
        }
        conn.set(flag::AWAITING);
        Ok(Requester {
            key,
            generation: conn.generation,
            dialed: conn.has(flag::OUTBOUND),
        })
    }

    /// Hand a request its outcome. A callback sink runs user code, which
    /// may call back into the table (retry on the same handle): no cell of
    /// the table may be borrowed (checked in debug builds).
    pub(crate) fn deliver(&self, sink: ReplySink, reply: Reply) {
        self.debug_assert_unborrowed("a reply callback");
        sink.deliver(reply);
    }

    /// Fail every request waiting on the connection at `key` of
    /// `generation` with [`Error::Disconnected`] (it was lost or closed):
    /// the sinks are taken out first and called after the borrow ends.
    pub(crate) fn fail_requests(&self, key: usize, generation: u32) {
        let sinks = self.requests.borrow_mut().fail_all(key, generation);
        for sink in sinks {
            self.deliver(sink, Err(Error::Disconnected));
        }
    }

    /// Debug builds: panic (loudly, on the loop) if a cell of the table is
    /// borrowed when user code, `what`, is about to run: that code could
    /// call back into the table and panic with "already borrowed", or its
    /// panic would be caught and the rest of it silently skipped.
    pub(crate) fn debug_assert_unborrowed(&self, what: &str) {
        if cfg!(debug_assertions) {
            let cells = [
                ("conns", self.conns.try_borrow_mut().is_err()),
                ("pool", self.pool.try_borrow_mut().is_err()),
                ("dirty", self.dirty.try_borrow_mut().is_err()),
                ("requests", self.requests.try_borrow_mut().is_err()),
                ("dials", self.dials.try_borrow_mut().is_err()),
                ("to_dial", self.to_dial.try_borrow_mut().is_err()),
            ];
            if let Some((cell, _)) = cells.iter().find(|(_, borrowed)| *borrowed) {
                panic!("{what} is about to run with the table's `{cell}` borrowed");
            }
        }
    }
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::super::testing::table;
    use super::*;

    #[test]
    fn a_reply_delivered_with_no_borrow_held_runs() {
        let table = table();
        let (tx, rx) = crate::conn::requests::oneshot::oneshot();
        table.deliver(ReplySink::Channel(tx), Err(Error::Timeout));
        assert!(matches!(rx.try_recv(), Ok(Err(Error::Timeout))));
    }

    /// A stale id (its slot free, then reused; or another loop's twin)
    /// creates no request state, and a removed connection leaves none.
    #[test]
    fn a_stale_id_touches_no_request_state_and_a_removed_one_leaves_none() {
        use crate::conn::Conn;
        use std::time::{Duration, Instant};

        let table = table();
        let peer = "127.0.0.1:1".parse().unwrap();
        let conn = |g| Conn::new(None, peer, g, 0, Default::default());
        let first = table.next_generation();
        let key = table.insert(conn(first));
        let old = table.id(key, first);
        let at = table.begin_request(old).unwrap();
        let (tx, rx) = crate::conn::requests::oneshot::oneshot();
        let sink = ReplySink::Channel(tx);
        let now = Instant::now();
        let second = Duration::from_secs(1);
        table
            .requests
            .borrow_mut()
            .start(at.key, at.generation, at.dialed, second, sink, now);
        assert!(table.remove(key).is_some());
        table.fail_requests(key, first);
        assert!(matches!(rx.try_recv(), Ok(Err(Error::Disconnected))));
        assert_eq!(table.requests.borrow().connections(), 0);

        assert!(matches!(table.begin_request(old), Err(Error::Closed)));
        let next = table.next_generation();
        assert_eq!(table.insert(conn(next)), key, "the slot is reused");
        assert!(matches!(table.begin_request(old), Err(Error::Closed)));
        let twin = ConnId::new(1, 1, key, next);
        assert!(matches!(table.begin_request(twin), Err(Error::Closed)));
        let other_server = ConnId::new(2, 0, key, next);
        assert!(matches!(
            table.begin_request(other_server),
            Err(Error::Closed)
        ));
        assert_eq!(table.requests.borrow().connections(), 0);
        assert!(table.begin_request(table.id(key, next)).is_ok());
    }

    #[test]
    #[should_panic(expected = "with the table's `requests` borrowed")]
    fn a_reply_delivered_under_a_borrow_panics_in_debug_builds() {
        let table = table();
        let (tx, _rx) = crate::conn::requests::oneshot::oneshot();
        let _held = table.requests.borrow_mut();
        table.deliver(ReplySink::Channel(tx), Err(Error::Timeout));
    }
}
