//! The application's timers on the loop's wheel (`Session::after`,
//! `every`, `Builder::every`, `Builder::cron`): a wheel entry carries the
//! timer's slot and serial in the loop's `UserTimers`, where its callback
//! waits. A connection's timers end with it; a cancelled one's callback is
//! dropped on the next turn (its handle queues the cancel and wakes the
//! loop), and its wheel entry, left in place, is swept out once the dead
//! entries make up half the wheel: the wheel holds at most about twice the
//! live timers.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::PoisonError;

use super::timers::TimerKind;
use super::EventLoop;
use crate::error::panic_message;
use crate::id::ConnId;
use crate::runtime::Due;

/// Dead wheel entries below this are never swept (a sweep visits the
/// whole wheel; this many dead entries pay for it).
const SWEEP_AT: usize = 1024;

impl EventLoop {
    /// Drop the callbacks of the timers cancelled since last time, then
    /// put the timers added since last time on the wheel.
    pub(super) fn arm_user_timers(&mut self) {
        let core = self.core.clone();
        let cancels = std::mem::take(
            &mut *(core.shared().cancels)
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if !cancels.is_empty() {
            let dropped = core.timers.borrow_mut().drop_cancelled(&cancels);
            drop(dropped);
        }
        self.sweep_dead_user_timers();
        let arms = core.timers.borrow_mut().take_to_arm();
        for (slot, serial, after) in arms {
            self.timers.schedule_user(slot, serial, after);
        }
    }

    /// Sweep the wheel of the entries of timers removed before they came
    /// due, once they are at least half of it (amortised: each sweep is
    /// paid for by as many removals as it visits entries, halved).
    fn sweep_dead_user_timers(&mut self) {
        let dead = self.core.timers.borrow().dead();
        if dead < SWEEP_AT || dead.saturating_mul(2) < self.timers.len() {
            return;
        }
        {
            let live = self.core.timers.borrow();
            self.timers
                .retain_user(|slot, serial| live.is_armed(slot, serial));
        }
        self.core.timers.borrow_mut().swept();
    }

    /// A timer's wheel entry is due: run its callback (unless cancelled,
    /// stale, or its connection is gone), then arm it again if it repeats.
    /// A connection closing now may yet be kept for a reconnect: its
    /// timer waits, parked, for that (`timers_back`) or for its removal.
    pub(super) fn user_timer_due(&mut self, slot: usize, serial: u32) {
        let core = self.core.clone();
        let due = core.timers.borrow_mut().due(slot, serial);
        let (mut f, owner) = match due {
            Due::Run(f, owner) => (f, owner),
            Due::Nothing(dropped) => {
                drop(dropped);
                return;
            }
        };
        let table = &core.table;
        if let Some(id) = owner.filter(|&id| table.is_closing(id) && !table.is_gone(id)) {
            let dropped = core.timers.borrow_mut().park(slot, serial, f);
            drop(dropped);
            log::trace!("conn {id}: a timer waits for the close to end");
            return;
        }
        let alive = owner.is_none_or(|id| !table.is_closing(id));
        let again = alive
            && catch_unwind(AssertUnwindSafe(|| f(&core))).unwrap_or_else(|panic| {
                // A connection's timer catches its own (and closes the
                // connection); this is a server-wide one.
                log::error!("a timer panicked: {}", panic_message(&*panic));
                false
            });
        let dropped = core.timers.borrow_mut().ran(slot, serial, f, again);
        drop(dropped);
        self.arm_user_timers();
    }

    /// Connection `id` was kept for a reconnect: its timers that came due
    /// while it was closing are due now.
    pub(super) fn timers_back(&mut self, id: ConnId) {
        self.core.timers.borrow_mut().unpark(id);
    }

    /// Whether a timer kind is the application's (its entry names a
    /// timer's slot, not a connection's).
    pub(super) fn is_user(kind: TimerKind) -> bool {
        kind == TimerKind::User
    }
}
