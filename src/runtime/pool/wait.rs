//! How callers get a connection: `get`'s first-come-first-served turn,
//! `try_get` and `pick` without waiting, `request`'s shared pick; each
//! prunes, makes a connection when the pool may, and waits for a change.

use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use super::members::State;
use super::{Inner, Pooled};
use crate::error::{Error, Result};
use crate::runtime::ConnHandle;

/// A `get` caller (`ticket`) past its deadline leaves the line: the next
/// in line is woken, and the wait counted as timed out.
fn give_up(st: &mut State, ticket: u64) -> Error {
    st.waiters.retain(|w| w.0 != ticket);
    st.stats.wait_timeouts += 1;
    st.wake();
    Error::Timeout
}

impl Inner {
    pub(super) fn get(self: &Arc<Self>, until: Instant) -> Result<Pooled> {
        let mut st = self.lock();
        let ticket = st.ticket();
        st.waiters.push_back((ticket, std::thread::current()));
        let mut waited = false;
        loop {
            let now = Instant::now();
            let retired = st.prune(&self.config, now);
            if !retired.is_empty() {
                drop(st);
                retired.iter().for_each(ConnHandle::close);
                st = self.lock();
                continue;
            }
            // The server's shutdown closes the members (each wakes the
            // head of the line); one handed out may not come back.
            st.closed |= self.hub.runtime.is_shut_down();
            if st.closed {
                st.waiters.retain(|w| w.0 != ticket);
                st.wake();
                return Err(Error::ShutDown);
            }
            if st.waiters.front().map(|w| w.0) == Some(ticket) {
                if let Some(i) = st.pick_idle() {
                    st.members[i].out = true;
                    let handle = st.members[i].handle.clone();
                    let checked = self.config.health_check.as_ref().filter(|c| {
                        now.saturating_duration_since(st.members[i].idle_since) >= c.interval
                    });
                    if let Some(check) = checked {
                        drop(st);
                        // The check waits no longer than the caller may.
                        let left = until.saturating_duration_since(now);
                        let timeout = check.timeout.min(left).max(Duration::from_millis(1));
                        let healthy = handle
                            .request(check.id, &check.body, timeout)
                            .and_then(|p| p.wait())
                            .is_ok();
                        st = self.lock();
                        if !healthy {
                            st.remove(&handle);
                            drop(st);
                            handle.close();
                            st = self.lock();
                            if Instant::now() >= until {
                                return Err(give_up(&mut st, ticket));
                            }
                            continue;
                        }
                    }
                    st.waiters.pop_front();
                    st.wake();
                    drop(st);
                    return Ok(self.pooled(handle));
                }
                if st.should_create(&self.config, now, st.waiters.len()) {
                    st = self.create(st);
                    continue;
                }
            }
            if !waited {
                waited = true;
                st.stats.waits += 1;
            }
            let Some(left) = until.checked_duration_since(now).filter(|d| !d.is_zero()) else {
                return Err(give_up(&mut st, ticket));
            };
            st = self.wait(st, left, now);
        }
    }

    pub(super) fn try_get(self: &Arc<Self>) -> Option<Pooled> {
        let mut st = self.lock();
        let now = Instant::now();
        let retired = st.prune(&self.config, now);
        if st.closed || !st.waiters.is_empty() {
            drop(st);
            retired.iter().for_each(ConnHandle::close);
            return None;
        }
        let picked = st.pick_idle().map(|i| {
            st.members[i].out = true;
            st.members[i].handle.clone()
        });
        if picked.is_none() && st.should_create(&self.config, now, 1) {
            st = self.create(st);
        }
        drop(st);
        retired.iter().for_each(ConnHandle::close);
        picked.map(|h| self.pooled(h))
    }

    pub(super) fn pick(self: &Arc<Self>) -> Option<ConnHandle> {
        let mut st = self.lock();
        let now = Instant::now();
        let retired = st.prune(&self.config, now);
        let picked = if st.closed { None } else { st.pick_shared() };
        if picked.is_none() && st.should_create(&self.config, now, 1) {
            st = self.create(st);
        }
        drop(st);
        retired.iter().for_each(ConnHandle::close);
        picked
    }

    /// A ready connection for `request`, waiting (and making one) as
    /// `get` does, but without a turn in the FIFO: it is shared.
    pub(super) fn wait_shared(self: &Arc<Self>, until: Instant) -> Result<ConnHandle> {
        let mut st = self.lock();
        let ticket = st.ticket();
        let result = self.wait_shared_as(ticket, st, until);
        self.lock().shared.retain(|w| w.0 != ticket);
        result
    }

    fn wait_shared_as<'a>(
        self: &'a Arc<Self>,
        ticket: u64,
        mut st: MutexGuard<'a, State>,
        until: Instant,
    ) -> Result<ConnHandle> {
        let mut waited = false;
        loop {
            let now = Instant::now();
            let retired = st.prune(&self.config, now);
            if !retired.is_empty() {
                drop(st);
                retired.iter().for_each(ConnHandle::close);
                st = self.lock();
                continue;
            }
            st.closed |= self.hub.runtime.is_shut_down();
            if st.closed {
                return Err(Error::ShutDown);
            }
            if let Some(conn) = st.pick_shared() {
                return Ok(conn);
            }
            if st.should_create(&self.config, now, 1) {
                st = self.create(st);
                continue;
            }
            if !waited {
                waited = true;
                st.stats.waits += 1;
                st.shared.push((ticket, std::thread::current()));
            }
            let Some(left) = until.checked_duration_since(now).filter(|d| !d.is_zero()) else {
                st.stats.wait_timeouts += 1;
                return Err(Error::Timeout);
            };
            st = self.wait(st, left, now);
        }
    }

    /// Wait for a change (this thread unparked: see `State::wake`), at
    /// most `left`, and no longer than until the backoff lets a
    /// connection be made. A wake-up before the wait is not lost (the
    /// park token keeps it); a spurious one only costs a look.
    pub(super) fn wait<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        left: Duration,
        now: Instant,
    ) -> MutexGuard<'a, State> {
        let until_retry = st.retry_at.map_or(left, |at| {
            at.saturating_duration_since(now)
                .max(Duration::from_millis(1))
        });
        drop(st);
        std::thread::park_timeout(left.min(until_retry));
        self.lock()
    }

    pub(super) fn pooled(self: &Arc<Self>, handle: ConnHandle) -> Pooled {
        Pooled {
            handle,
            pool: self.clone(),
            discard: false,
        }
    }
}
