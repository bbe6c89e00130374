//! The table's side of requests: handing an outcome to its sink with no
//! borrow of the table held (a callback is user code and may call back
//! into the table), and the debug check that enforces it wherever user
//! code runs.

use super::ConnTable;
use crate::conn::requests::{Reply, ReplySink};
use crate::error::Error;

impl ConnTable {
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
    use std::sync::Arc;

    use super::*;
    use crate::codec::{LengthPacker, ServerPacker};
    use crate::config::Config;
    use crate::transport::Wire;

    fn table() -> ConnTable {
        let config = Config::default();
        let packer = ServerPacker::Length(LengthPacker::default());
        let wire = Wire::new(packer, None, None, Vec::new(), &config).unwrap();
        ConnTable::new(0, Arc::new(wire), &config, Arc::default(), Arc::default())
    }

    #[test]
    fn a_reply_delivered_with_no_borrow_held_runs() {
        let table = table();
        let (tx, rx) = crossbeam_channel::unbounded();
        table.deliver(ReplySink::Channel(tx), Err(Error::Timeout));
        assert!(matches!(rx.try_recv(), Ok(Err(Error::Timeout))));
    }

    #[test]
    #[should_panic(expected = "with the table's `requests` borrowed")]
    fn a_reply_delivered_under_a_borrow_panics_in_debug_builds() {
        let table = table();
        let (tx, _rx) = crossbeam_channel::unbounded();
        let _held = table.requests.borrow_mut();
        table.deliver(ReplySink::Channel(tx), Err(Error::Timeout));
    }
}
