//! How a pool keeps its members: dialing one (`create`), hearing from
//! its loop (`watch`), taking one back (`give_back`), closing, and the
//! background keeper (`maintain`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::members::{Member, State, CONNECTING, FAILED, GONE, OPEN};
use super::Inner;
use crate::conn::dial::Watch;
use crate::error::Error;
use crate::runtime::ConnHandle;

impl Inner {
    /// Dial one more member (the lock is released meanwhile: the dial
    /// waits for a loop to make its slot); the lock again after.
    pub(super) fn create<'a>(
        self: &'a Arc<Self>,
        mut st: MutexGuard<'a, State>,
    ) -> MutexGuard<'a, State> {
        st.creating += 1;
        let target = st.next_target % self.targets.len();
        st.next_target = st.next_target.wrapping_add(1);
        drop(st);
        let link = Arc::new(AtomicU8::new(CONNECTING));
        let mut dial = self.targets[target].clone();
        dial.watch = Some(self.watch(link.clone()));
        let dialed = self.hub.dial(dial);
        let mut st = self.lock();
        st.creating -= 1;
        let now = Instant::now();
        match dialed {
            Ok(handle) => {
                st.stats.created += 1;
                st.members.push(Member {
                    handle,
                    link,
                    born: now,
                    idle_since: now,
                    out: false,
                });
            }
            Err(Error::ShutDown) => st.closed = true,
            Err(e) => {
                log::warn!("pool: cannot dial: {e}");
                st.failed(&self.config, now);
            }
        }
        st.wake();
        st
    }

    /// What a member's loop tells the pool: it opened (`true`) or is
    /// closed for good (`false`; before it opened, a failed connect).
    pub(super) fn watch(self: &Arc<Self>, link: Arc<AtomicU8>) -> Watch {
        let pool: Weak<Inner> = Arc::downgrade(self);
        Watch(Arc::new(move |open| {
            let before = link.load(Ordering::Acquire);
            let now_state = match (open, before) {
                (true, _) => OPEN,
                (false, CONNECTING) => FAILED,
                (false, _) => GONE,
            };
            link.store(now_state, Ordering::Release);
            let Some(pool) = pool.upgrade() else {
                return;
            };
            let mut st = pool.lock();
            let now = Instant::now();
            if open {
                st.opened();
                if let Some(m) = st.members.iter_mut().find(|m| Arc::ptr_eq(&m.link, &link)) {
                    m.idle_since = now;
                }
            } else if before == CONNECTING {
                st.failed(&pool.config, now);
            }
            drop(st);
            pool.notify();
        }))
    }

    pub(super) fn give_back(&self, handle: &ConnHandle, discard: bool) {
        let mut st = self.lock();
        let now = Instant::now();
        let Some(i) = st.members.iter().position(|m| m.handle.id() == handle.id()) else {
            return;
        };
        let m = &mut st.members[i];
        m.out = false;
        m.idle_since = now;
        let old = self
            .config
            .max_lifetime
            .is_some_and(|l| now.saturating_duration_since(m.born) >= l);
        let gone = m.state() == GONE;
        let close = discard || old || gone || st.closed;
        if close {
            st.remove(handle);
        }
        drop(st);
        if close {
            handle.close();
        }
        self.notify();
    }

    /// Refuse everything from now on and close every member.
    pub(super) fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        let members: Vec<ConnHandle> = st
            .members
            .iter()
            .filter(|m| !m.out)
            .map(|m| m.handle.clone())
            .collect();
        st.members.retain(|m| m.out);
        drop(st);
        members.iter().for_each(ConnHandle::close);
        self.notify();
    }

    /// The background keeper: retire idle members past their time, keep
    /// `min_idle`, until the pool closes.
    pub(super) fn maintain(self: Arc<Self>) {
        let tick = [self.config.idle_timeout, self.config.max_lifetime]
            .into_iter()
            .flatten()
            .map(|d| d / 4)
            .fold(Duration::from_secs(1), Duration::min)
            .max(Duration::from_millis(10));
        let mut st = self.lock();
        loop {
            if st.closed {
                return;
            }
            let now = Instant::now();
            let retired = st.prune(&self.config, now);
            if !retired.is_empty() {
                drop(st);
                retired.iter().for_each(ConnHandle::close);
                self.notify();
                st = self.lock();
                continue;
            }
            let coming = st.creating
                + st.members
                    .iter()
                    .filter(|m| m.state() == CONNECTING)
                    .count();
            let idle = st.members.iter().filter(|m| m.ready()).count();
            if idle + coming < self.config.min_idle && st.can_create(&self.config, now) {
                st = self.create(st);
                continue;
            }
            st = self.wait(st, tick, now);
        }
    }
}
