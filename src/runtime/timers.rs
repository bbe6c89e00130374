//! Timers for the application, on the loop's wheel: what a loop keeps for
//! them ([`UserTimers`], in its `LoopCore`) and the handle that cancels
//! one ([`TimerHandle`]). The wheel entry carries only the timer's slot
//! and serial; the callback lives here until it fires, is cancelled (the
//! handle queues the cancel for its loop, `LoopShared::cancels`, drained
//! every turn) or its connection goes. What the callbacks see (a
//! `Session`, the `Hub`) is the application's: `dispatch::timers` wraps
//! them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rustc_hash::FxHashMap;
use slab::Slab;

use super::{local, LoopCore, Runtime};
use crate::id::ConnId;

/// A timer's callback, run on its loop; `false` ends a repeating timer
/// (its connection is gone).
pub(crate) type TimerFn = Box<dyn FnMut(&LoopCore) -> bool + Send>;

/// Cancels a timer set with `Session::after`, `Session::every`,
/// `ConnHandle::after` or `ConnHandle::every`, from any thread. A
/// cancelled timer never fires again (a callback already running
/// finishes), and its loop drops its callback (with what it captured) on
/// its next turn, not when the timer would have been due. Dropping the
/// handle does not cancel the timer; a connection's timers end with it.
#[derive(Clone)]
pub struct TimerHandle {
    shared: Arc<Shared>,
}

/// What a handle shares with its loop.
struct Shared {
    cancelled: AtomicBool,
    /// Where its loop keeps the timer (`slot << 32 | serial`), once it is
    /// added; `UNSET` before.
    at: AtomicU64,
    /// The loop that keeps it, told of a cancel (`None`: a timer no user
    /// holds a handle of, or one never set).
    home: Option<(Arc<Runtime>, usize)>,
}

const UNSET: u64 = u64::MAX;

impl std::fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerHandle")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl TimerHandle {
    /// A handle of a timer to be kept by loop `index` of `runtime`.
    pub(crate) fn on_loop(runtime: &Arc<Runtime>, index: usize) -> Self {
        TimerHandle::with_home(Some((runtime.clone(), index)))
    }

    /// A handle nobody outside netloom holds (`Builder::every`, the cron).
    pub(crate) fn detached() -> Self {
        TimerHandle::with_home(None)
    }

    /// The handle of a timer that could not be set: cancelled already.
    pub(crate) fn refused() -> Self {
        let handle = TimerHandle::detached();
        handle.refuse();
        handle
    }

    /// Its timer was not set (or is gone with its connection): it says it
    /// is cancelled, with nothing for its loop to drop.
    pub(crate) fn refuse(&self) {
        self.shared.cancelled.store(true, Ordering::SeqCst);
    }

    fn with_home(home: Option<(Arc<Runtime>, usize)>) -> Self {
        TimerHandle {
            shared: Arc::new(Shared {
                cancelled: AtomicBool::new(false),
                at: AtomicU64::new(UNSET),
                home,
            }),
        }
    }

    /// Stop the timer: it does not fire (again), and its callback is
    /// dropped on its loop's next turn (the loop is woken for it).
    pub fn cancel(&self) {
        let shared = &*self.shared;
        if shared.cancelled.swap(true, Ordering::SeqCst) {
            return;
        }
        // Not added yet: its loop sees the flag when it adds it (both
        // sides write, then read the other's word: one of them sees it).
        let at = shared.at.load(Ordering::SeqCst);
        let Some((runtime, index)) = shared.home.as_ref().filter(|_| at != UNSET) else {
            return;
        };
        // Shutting down, the loops drop every connection's timers anyway
        // (and may be gone: nothing to wake).
        let Some(lp) = runtime
            .loops
            .get(*index)
            .filter(|_| !runtime.is_shut_down())
        else {
            return;
        };
        let entry = ((at >> 32) as u32, at as u32);
        lp.cancels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
        // On its own loop the end of this turn drains the queue.
        if local::with_current(runtime, *index, |_| ()).is_none() {
            lp.notify();
        }
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.shared.cancelled.load(Ordering::SeqCst)
    }
}

struct Entry {
    serial: u32,
    /// The connection it belongs to (`None`: the server's).
    owner: Option<ConnId>,
    every: Option<Duration>,
    handle: TimerHandle,
    /// Taken out while it runs.
    f: Option<TimerFn>,
    /// Off the wheel: it came due while its connection was closing, and
    /// waits to learn whether the connection is kept for a reconnect
    /// (`unpark`) or removed (`drop_conn`).
    parked: bool,
}

/// A timer for the reactor to put on the wheel: slot, serial, delay.
pub(crate) type Arm = (usize, u32, Duration);

/// A loop's application timers.
#[derive(Default)]
pub(crate) struct UserTimers {
    slab: Slab<Entry>,
    serial: u32,
    /// Each connection's timers, by slot (removed when it closes).
    by_conn: FxHashMap<usize, Vec<usize>>,
    /// Timers to put on the wheel (drained by the reactor every turn).
    to_arm: Vec<Arm>,
    /// Timers removed while their entry was on the wheel (cancelled, or
    /// their connection gone) since the wheel was last swept of them.
    dead: usize,
}

/// What firing a timer found.
pub(crate) enum Due {
    /// Run it (its connection, if any, to be checked by the caller).
    Run(TimerFn, Option<ConnId>),
    /// Nothing to run: a stale wheel entry, or a cancelled timer (now
    /// removed; its callback to be dropped outside the borrow).
    Nothing(Option<TimerFn>),
}

impl UserTimers {
    /// Add a timer firing `after` from now (then every `every`); `parked`
    /// (its connection is closing): kept off the wheel, see [`park`](Self::park).
    /// A timer cancelled already is not kept: its callback comes back,
    /// to be dropped outside the borrow.
    pub(crate) fn add(
        &mut self,
        owner: Option<ConnId>,
        after: Duration,
        every: Option<Duration>,
        handle: TimerHandle,
        f: TimerFn,
        parked: bool,
    ) -> Option<TimerFn> {
        self.serial = self.serial.wrapping_add(1);
        let serial = self.serial;
        let shared = handle.shared.clone();
        let slot = self.slab.insert(Entry {
            serial,
            owner,
            every,
            handle,
            f: Some(f),
            parked,
        });
        // Then read the flag: see `TimerHandle::cancel`.
        let at = (slot as u64) << 32 | u64::from(serial);
        shared.at.store(at, Ordering::SeqCst);
        if shared.cancelled.load(Ordering::SeqCst) {
            return self.slab.remove(slot).f;
        }
        if let Some(owner) = owner {
            self.by_conn.entry(owner.key()).or_default().push(slot);
        }
        if !parked {
            self.to_arm.push((slot, serial, after));
        }
        None
    }

    /// Timers to put on the wheel.
    pub(crate) fn take_to_arm(&mut self) -> Vec<Arm> {
        std::mem::take(&mut self.to_arm)
    }

    pub(crate) fn has_to_arm(&self) -> bool {
        !self.to_arm.is_empty()
    }

    /// The wheel entry `(slot, serial)` is due.
    pub(crate) fn due(&mut self, slot: usize, serial: u32) -> Due {
        let Some(entry) = self.slab.get_mut(slot).filter(|e| e.serial == serial) else {
            return Due::Nothing(None);
        };
        if entry.handle.is_cancelled() {
            return Due::Nothing(self.remove(slot));
        }
        match entry.f.take() {
            Some(f) => Due::Run(f, entry.owner),
            None => Due::Nothing(None),
        }
    }

    /// After `f` ran for `(slot, serial)`: a repeating timer still wanted
    /// (`again`, not cancelled) is put back and armed again; anything else
    /// is removed. Returns what to drop outside the borrow.
    pub(crate) fn ran(
        &mut self,
        slot: usize,
        serial: u32,
        f: TimerFn,
        again: bool,
    ) -> Option<TimerFn> {
        let Some(entry) = self.slab.get_mut(slot).filter(|e| e.serial == serial) else {
            return Some(f);
        };
        match entry.every {
            Some(every) if again && !entry.handle.is_cancelled() => {
                entry.f = Some(f);
                self.to_arm.push((slot, serial, every));
                None
            }
            _ => {
                self.remove(slot);
                Some(f)
            }
        }
    }

    /// `(slot, serial)` came due, not run, while its connection was
    /// closing: it waits off the wheel, with `f`, for the connection to
    /// be kept for a reconnect ([`unpark`](Self::unpark)) or removed.
    pub(crate) fn park(&mut self, slot: usize, serial: u32, f: TimerFn) -> Option<TimerFn> {
        let Some(entry) = self.slab.get_mut(slot).filter(|e| e.serial == serial) else {
            return Some(f);
        };
        entry.f = Some(f);
        entry.parked = true;
        None
    }

    /// Connection `id` is kept for a reconnect: its timers that came due
    /// while it was closing are due now.
    pub(crate) fn unpark(&mut self, id: ConnId) {
        let Some(slots) = self.by_conn.get(&id.key()) else {
            return;
        };
        for &slot in slots {
            if let Some(e) = self.slab.get_mut(slot) {
                if e.owner == Some(id) && e.parked {
                    e.parked = false;
                    self.to_arm.push((slot, e.serial, Duration::ZERO));
                }
            }
        }
    }

    /// The cancels its handles queued (`LoopShared::cancels`): those
    /// timers go now (their callbacks returned, to be dropped outside the
    /// borrow). One running now goes when it returns (`ran`).
    pub(crate) fn drop_cancelled(&mut self, cancels: &[(u32, u32)]) -> Vec<TimerFn> {
        let mut dropped = Vec::new();
        for &(slot, serial) in cancels {
            let slot = slot as usize;
            let idle = (self.slab.get(slot)).is_some_and(|e| e.serial == serial && e.f.is_some());
            if idle {
                dropped.extend(self.remove_unfired(slot));
            }
        }
        dropped
    }

    /// Whether the wheel entry `(slot, serial)` is a live timer's (not
    /// cancelled, nor removed, nor parked off the wheel).
    pub(crate) fn is_armed(&self, slot: usize, serial: u32) -> bool {
        (self.slab.get(slot))
            .is_some_and(|e| e.serial == serial && !e.parked && !e.handle.is_cancelled())
    }

    /// Timers removed with an entry on the wheel since the last sweep
    /// (`swept` starts the count over).
    pub(crate) fn dead(&self) -> usize {
        self.dead
    }

    /// The wheel was swept of the dead timers' entries.
    pub(crate) fn swept(&mut self) {
        self.dead = 0;
    }

    /// Remove a timer whose wheel entry (if it has one) will never run it.
    fn remove_unfired(&mut self, slot: usize) -> Option<TimerFn> {
        if self.slab.get(slot).is_some_and(|e| !e.parked) {
            self.dead += 1;
        }
        self.remove(slot)
    }

    fn remove(&mut self, slot: usize) -> Option<TimerFn> {
        let entry = self.slab.try_remove(slot)?;
        if let Some(owner) = entry.owner {
            if let Some(list) = self.by_conn.get_mut(&owner.key()) {
                list.retain(|&s| s != slot);
                if list.is_empty() {
                    self.by_conn.remove(&owner.key());
                }
            }
        }
        entry.f
    }

    /// The connection `id` closed: its timers go (their callbacks are
    /// returned, to be dropped outside the borrow: they are user code).
    pub(crate) fn drop_conn(&mut self, id: ConnId) -> Vec<TimerFn> {
        let Some(slots) = self.by_conn.remove(&id.key()) else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        for slot in slots {
            let owned = self.slab.get(slot).is_some_and(|e| e.owner == Some(id));
            if owned {
                if self.slab.get(slot).is_some_and(|e| !e.parked) {
                    self.dead += 1;
                }
                if let Some(entry) = self.slab.try_remove(slot) {
                    entry.handle.refuse();
                    dropped.extend(entry.f);
                }
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn noop() -> TimerFn {
        Box::new(|_: &LoopCore| true)
    }

    /// Where the loop keeps the timer of `h` (slot, serial).
    fn place(h: &TimerHandle) -> (u32, u32) {
        let at = h.shared.at.load(Ordering::SeqCst);
        ((at >> 32) as u32, at as u32)
    }

    #[test]
    fn a_queued_cancel_drops_its_timer_and_only_that_one() {
        let mut timers = UserTimers::default();
        let (a, b) = (TimerHandle::detached(), TimerHandle::detached());
        assert!(timers
            .add(None, HOUR, None, a.clone(), noop(), false)
            .is_none());
        assert!(timers
            .add(None, HOUR, None, b.clone(), noop(), false)
            .is_none());
        a.cancel();
        let (slot, serial) = place(&a);
        assert_eq!(timers.drop_cancelled(&[(slot, serial)]).len(), 1);
        assert_eq!(timers.dead(), 1, "its wheel entry is dead");
        assert!(!timers.is_armed(slot as usize, serial));
        let (slot_b, serial_b) = place(&b);
        assert!(timers.is_armed(slot_b as usize, serial_b));
        // A stale cancel (the slot holds another timer now) drops nothing.
        let c = TimerHandle::detached();
        assert!(timers
            .add(None, HOUR, None, c.clone(), noop(), false)
            .is_none());
        assert_eq!(place(&c).0, slot, "the slot is reused");
        assert!(timers.drop_cancelled(&[(slot, serial)]).is_empty());
        assert!(timers.is_armed(slot as usize, place(&c).1));
        timers.swept();
        assert_eq!(timers.dead(), 0);
    }

    #[test]
    fn a_timer_parked_while_its_connection_closes_is_due_again_when_it_is_kept() {
        let mut timers = UserTimers::default();
        let id = ConnId::new(1, 0, 3, 7);
        let h = TimerHandle::detached();
        let every = Some(Duration::from_millis(20));
        assert!(timers
            .add(Some(id), HOUR, every, h.clone(), noop(), false)
            .is_none());
        let (slot, serial) = place(&h);
        let slot = slot as usize;
        assert_eq!(timers.take_to_arm(), [(slot, serial, HOUR)]);
        let Due::Run(f, owner) = timers.due(slot, serial) else {
            panic!("not due");
        };
        assert_eq!(owner, Some(id));
        assert!(timers.park(slot, serial, f).is_none());
        assert!(!timers.is_armed(slot, serial), "parked: off the wheel");
        // Another connection in that slot is not this one.
        timers.unpark(ConnId::new(1, 0, 3, 8));
        assert!(timers.take_to_arm().is_empty());
        timers.unpark(id);
        assert_eq!(timers.take_to_arm(), [(slot, serial, Duration::ZERO)]);
        // Removed for good instead: freed, and no wheel entry left dead.
        let Due::Run(f, _) = timers.due(slot, serial) else {
            panic!("not due");
        };
        assert!(timers.park(slot, serial, f).is_none());
        assert_eq!(timers.drop_conn(id).len(), 1);
        assert_eq!(timers.dead(), 0);
        assert!(h.is_cancelled());
    }

    #[test]
    fn a_timer_cancelled_before_it_is_added_is_not_kept() {
        let mut timers = UserTimers::default();
        let early = TimerHandle::detached();
        early.cancel();
        assert!(timers.add(None, HOUR, None, early, noop(), false).is_some());
        assert!(timers.take_to_arm().is_empty());
        assert!(TimerHandle::refused().is_cancelled());
    }
}
