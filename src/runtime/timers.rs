//! Timers for the application, on the loop's wheel: what a loop keeps for
//! them ([`UserTimers`], in its `LoopCore`) and the handle that cancels
//! one ([`TimerHandle`]). The wheel entry carries only the timer's slot
//! and serial; the callback lives here until it fires. What the callbacks
//! see (a `Session`, the `Hub`) is the application's: `dispatch::timers`
//! wraps them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use slab::Slab;

use super::LoopCore;
use crate::id::ConnId;

/// A timer's callback, run on its loop; `false` ends a repeating timer
/// (its connection is gone).
pub(crate) type TimerFn = Box<dyn FnMut(&LoopCore) -> bool + Send>;

/// Cancels a timer set with `Session::after`, `Session::every`,
/// `ConnHandle::after` or `ConnHandle::every`, from any thread. A
/// cancelled timer never fires again (a callback already running
/// finishes). Dropping the handle does not cancel the timer; a
/// connection's timers end with it.
#[derive(Debug, Clone)]
pub struct TimerHandle {
    cancelled: Arc<AtomicBool>,
}

impl TimerHandle {
    pub(crate) fn new() -> Self {
        TimerHandle {
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The handle of a timer that could not be set: cancelled already.
    pub(crate) fn refused() -> Self {
        let handle = TimerHandle::new();
        handle.cancel();
        handle
    }

    /// Stop the timer: it does not fire (again).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
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
    /// Add a timer firing `after` from now (then every `every`).
    pub(crate) fn add(
        &mut self,
        owner: Option<ConnId>,
        after: Duration,
        every: Option<Duration>,
        handle: TimerHandle,
        f: TimerFn,
    ) {
        self.serial = self.serial.wrapping_add(1);
        let serial = self.serial;
        let slot = self.slab.insert(Entry {
            serial,
            owner,
            every,
            handle,
            f: Some(f),
        });
        if let Some(owner) = owner {
            self.by_conn.entry(owner.key()).or_default().push(slot);
        }
        self.to_arm.push((slot, serial, after));
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
                if let Some(entry) = self.slab.try_remove(slot) {
                    entry.handle.cancel();
                    dropped.extend(entry.f);
                }
            }
        }
        dropped
    }
}
