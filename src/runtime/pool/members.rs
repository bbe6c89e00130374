//! What a pool knows of its connections, under its lock: the members,
//! the FIFO of waiters, the backoff after failed connects, the counters;
//! and what retires a member (gone, too old, idle too long).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::PoolStats;
use crate::config::{Jitter, PoolConfig};
use crate::runtime::ConnHandle;

/// A member's link, as its loop reports it (`Dial::watch`).
pub(super) const CONNECTING: u8 = 0;
pub(super) const OPEN: u8 = 1;
pub(super) const GONE: u8 = 2;
/// Closed before it ever opened: a failed connect, not a discard.
pub(super) const FAILED: u8 = 3;

/// One connection of the pool.
pub(super) struct Member {
    pub(super) handle: ConnHandle,
    /// `CONNECTING`, `OPEN` or `GONE`, set on the connection's loop.
    pub(super) link: Arc<AtomicU8>,
    pub(super) born: Instant,
    /// When it was last given back (or opened).
    pub(super) idle_since: Instant,
    /// Handed out by `get` (exclusive until given back).
    pub(super) out: bool,
}

impl Member {
    pub(super) fn state(&self) -> u8 {
        self.link.load(Ordering::Acquire)
    }

    /// Open and not handed out: `get` may take it, `request` may use it.
    pub(super) fn ready(&self) -> bool {
        !self.out && self.state() == OPEN
    }
}

/// The pool's state, under its lock.
#[derive(Default)]
pub(super) struct State {
    pub(super) members: Vec<Member>,
    /// Connections being dialed (reserved, not members yet).
    pub(super) creating: usize,
    /// `get` callers waiting, first come first served, by ticket: only
    /// the first is woken by a change (no herd of 64 threads per give-back).
    pub(super) waiters: VecDeque<(u64, Thread)>,
    /// `request` callers waiting for any ready connection, by ticket.
    pub(super) shared: Vec<(u64, Thread)>,
    /// The background keeper, woken when the pool closes.
    pub(super) keeper: Option<Thread>,
    pub(super) next_ticket: u64,
    /// The target the next connection dials (round-robin).
    pub(super) next_target: usize,
    /// Where `request` looks first (round-robin over ready members).
    pub(super) next_shared: usize,
    /// Connects that failed in a row, and when the next may start.
    pub(super) failures: u32,
    pub(super) retry_at: Option<Instant>,
    pub(super) jitter: Jitter,
    pub(super) closed: bool,
    pub(super) stats: PoolStats,
}

impl State {
    /// A new connection may be dialed now.
    pub(super) fn can_create(&self, config: &PoolConfig, now: Instant) -> bool {
        !self.closed
            && self.members.len() + self.creating < config.max_size
            && self.retry_at.is_none_or(|at| now >= at)
    }

    /// Something changed (a member opened, went, was given back; a waiter
    /// left; the pool closed): wake whoever may act on it.
    pub(super) fn wake(&self) {
        if let Some((_, first)) = self.waiters.front() {
            first.unpark();
        }
        for (_, waiter) in &self.shared {
            waiter.unpark();
        }
        if self.closed {
            if let Some(keeper) = &self.keeper {
                keeper.unpark();
            }
        }
    }

    /// A ticket for a waiter.
    pub(super) fn ticket(&mut self) -> u64 {
        self.next_ticket += 1;
        self.next_ticket
    }

    /// Connections on their way: being dialed, or connecting.
    pub(super) fn coming(&self) -> usize {
        self.creating
            + self
                .members
                .iter()
                .filter(|m| m.state() == CONNECTING)
                .count()
    }

    /// A caller needs a connection that is not ready: make one if the
    /// pool may and fewer are on their way than callers wait (`waiting`).
    pub(super) fn should_create(&self, config: &PoolConfig, now: Instant, waiting: usize) -> bool {
        self.coming() < waiting.max(1) && self.can_create(config, now)
    }

    /// A connect failed: the next waits by the backoff.
    pub(super) fn failed(&mut self, config: &PoolConfig, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.stats.connect_failures += 1;
        let delay = config.backoff.delay(self.failures, self.jitter.next());
        self.retry_at = now.checked_add(delay);
    }

    /// A connection opened: the backoff starts over.
    pub(super) fn opened(&mut self) {
        self.failures = 0;
        self.retry_at = None;
    }

    /// The idle member `get` hands out: the most recently given back
    /// (so that extra connections go idle and retire).
    pub(super) fn pick_idle(&self) -> Option<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].ready())
            .max_by_key(|&i| self.members[i].idle_since)
    }

    /// The member `request` multiplexes over: the next ready one in turn.
    pub(super) fn pick_shared(&mut self) -> Option<ConnHandle> {
        let n = self.members.len();
        for step in 0..n {
            let i = (self.next_shared + step) % n;
            if self.members[i].ready() {
                self.next_shared = i + 1;
                return Some(self.members[i].handle.clone());
            }
        }
        None
    }

    /// Drop the members that are gone, and retire (return, to be closed
    /// outside the lock) the idle ones past their lifetime or idle
    /// timeout, keeping `min_idle` of those idle too long.
    pub(super) fn prune(&mut self, config: &PoolConfig, now: Instant) -> Vec<ConnHandle> {
        let mut retired = Vec::new();
        let mut idle_left = self.members.iter().filter(|m| m.ready()).count();
        let older = |at: Instant, limit: Option<Duration>| {
            limit.is_some_and(|l| now.saturating_duration_since(at) >= l)
        };
        let mut discarded = 0;
        self.members.retain(|m| {
            let state = m.state();
            if state == FAILED {
                return false;
            }
            if state == GONE {
                if !m.out {
                    discarded += 1;
                }
                return m.out; // a handed-out one goes when given back
            }
            if !m.ready() {
                return true;
            }
            let too_old = older(m.born, config.max_lifetime);
            let too_idle = idle_left > config.min_idle && older(m.idle_since, config.idle_timeout);
            if too_old || too_idle {
                idle_left -= 1;
                discarded += 1;
                retired.push(m.handle.clone());
                return false;
            }
            true
        });
        self.stats.discarded += discarded;
        retired
    }

    /// Remove the member `handle` names (closed by the caller); returns
    /// whether it was there.
    pub(super) fn remove(&mut self, handle: &ConnHandle) -> bool {
        let before = self.members.len();
        self.members.retain(|m| m.handle.id() != handle.id());
        let removed = self.members.len() < before;
        if removed {
            self.stats.discarded += 1;
        }
        removed
    }

    /// The counters, with the sizes as they are now.
    pub(super) fn stats(&self) -> PoolStats {
        let mut stats = self.stats.clone();
        stats.size = self.members.len() + self.creating;
        stats.idle = self.members.iter().filter(|m| m.ready()).count();
        stats.in_use = self.members.iter().filter(|m| m.out).count();
        stats
    }
}
