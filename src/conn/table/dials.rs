//! The table's side of dialed connections: their slots made before they
//! connect, named by whole id until the reactor starts connecting them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use super::ConnTable;
use crate::conn::dial::{Dial, DialState, Resolve};
use crate::conn::{flag, Conn};
use crate::error::{Error, Result};
use crate::id::ConnId;
use crate::stats::Counters;
use crate::transport::udp::UdpPeer;
use crate::transport::Layer;

impl ConnTable {
    /// Make a dialed connection: its slot and id now, down (no socket)
    /// until the reactor starts connecting it (`take_dials`; its clock of
    /// activity starts when it connects).
    pub(crate) fn reserve_dial(&self, spec: Arc<Dial>) -> ConnId {
        let generation = self.next_generation();
        let layer = match spec.udp {
            true => Layer::udp(UdpPeer::dialed()),
            false => Layer::down(spec.ws.as_ref().map(|w| &w.0)),
        };
        let mut conn = Conn::new(None, spec.addr, generation, 0, layer);
        conn.set(flag::OUTBOUND);
        conn.profile = spec.profile;
        let key = self.insert(conn);
        self.dials.borrow_mut().insert(key, DialState::new(spec));
        let id = self.id(key, generation);
        self.to_dial.borrow_mut().push(id);
        Counters::add(&self.counters.connections, 1);
        id
    }

    /// Dialed connections to start connecting (drained by the reactor;
    /// each through [`down_dial`](Self::down_dial)).
    pub(crate) fn take_dials(&self) -> Vec<ConnId> {
        std::mem::take(&mut *self.to_dial.borrow_mut())
    }

    /// Dials to start or request timers to set: work the reactor does
    /// once a turn, so a turn that left some must not be followed by a
    /// sleep.
    pub(crate) fn has_deferred(&self) -> bool {
        !self.to_dial.borrow().is_empty() || self.requests.borrow().has_deadlines()
    }

    /// The slot of the dialed connection `id`, if it is still there, open
    /// and without a socket: ready for a connect attempt. `None` for one
    /// closed meanwhile (its slot may hold another connection by now).
    pub(crate) fn down_dial(&self, id: ConnId) -> Option<usize> {
        let mut slab = self.conns.borrow_mut();
        let (key, conn) = self.open_conn(&mut slab, id)?;
        (!conn.is_connected() && conn.has(flag::OUTBOUND)).then_some(key)
    }

    /// A host dial's name resolved (on a resolver thread, for try
    /// `tries`): its addresses are kept for the attempt, or its error to
    /// fail it with, and the connection is queued to go on this turn
    /// (`take_dials`). An answer for an earlier try, or for a connection
    /// closed or connected meanwhile, is dropped.
    pub(crate) fn resolved(&self, id: ConnId, tries: u32, result: io::Result<Vec<SocketAddr>>) {
        let Some(key) = self.down_dial(id) else {
            return;
        };
        {
            let mut dials = self.dials.borrow_mut();
            let Some(d) = dials.get_mut(&key) else {
                return;
            };
            if !matches!(d.resolve, Resolve::Pending(t) if t == tries) {
                return;
            }
            d.resolve = match result {
                Ok(addrs) if !addrs.is_empty() => {
                    d.addrs = addrs.into();
                    Resolve::Idle
                }
                Ok(_) => Resolve::Failed("the name resolved to no address".into()),
                Err(e) => Resolve::Failed(e.to_string()),
            };
        }
        let mut to_dial = self.to_dial.borrow_mut();
        if !to_dial.contains(&id) {
            to_dial.push(id);
        }
    }

    /// `ConnHandle::reconnect_now`: a dialed connection waiting out its
    /// backoff is queued to connect this turn (`take_dials`); the attempt
    /// it starts bumps `DialState::tries`, so the skipped backoff's timer
    /// is stale when it fires. Returns whether an attempt was queued:
    /// false for one connecting (its host name resolving too) or open
    /// (left alone).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] for a connection closed for good;
    /// [`Error::Config`] for one that was accepted, not dialed.
    pub(crate) fn reconnect_now(&self, id: ConnId) -> Result<bool> {
        let mut slab = self.conns.borrow_mut();
        let (key, conn) = self.open_conn(&mut slab, id).ok_or(Error::Closed)?;
        if !conn.has(flag::OUTBOUND) {
            return Err(Error::Config(format!(
                "reconnect_now: conn {id} was accepted, not dialed"
            )));
        }
        let resolving = (self.dials.borrow())
            .get(&key)
            .is_some_and(|d| matches!(d.resolve, Resolve::Pending(_)));
        if conn.is_connected() || resolving {
            return Ok(false);
        }
        let mut to_dial = self.to_dial.borrow_mut();
        if !to_dial.contains(&id) {
            to_dial.push(id);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::table;
    use super::*;

    /// A dial reserved is work for the loop's next turn (it must not sleep
    /// first), and only a dialed connection without a socket is one to
    /// connect.
    #[test]
    fn a_reserved_dial_is_work_for_the_next_turn_and_only_a_down_dial_connects() {
        let table = table();
        assert!(!table.has_deferred());
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let id = table.reserve_dial(Arc::new(Dial::new(addr)));
        assert!(table.has_deferred(), "a dial to start, no request timer");
        assert_eq!(table.take_dials(), vec![id]);
        assert!(!table.has_deferred());
        assert!(table.down_dial(id).is_some());
        // An accepted connection (without a socket here) is never dialed.
        let generation = table.next_generation();
        let key = table.insert(Conn::new(None, addr, generation, 0, Layer::default()));
        assert_eq!(table.down_dial(table.id(key, generation)), None);
    }
}
