//! The application's timers on the loop's wheel (`Session::after`,
//! `every`, `Builder::every`, `Builder::cron`): a wheel entry carries the
//! timer's slot and serial in the loop's `UserTimers`, where its callback
//! waits. A connection's timers end with it; a cancelled one is dropped
//! when its entry comes due.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::timers::TimerKind;
use super::EventLoop;
use crate::error::panic_message;
use crate::runtime::Due;

impl EventLoop {
    /// Put the timers added since last time on the wheel.
    pub(super) fn arm_user_timers(&mut self) {
        let arms = self.core.timers.borrow_mut().take_to_arm();
        for (slot, serial, after) in arms {
            self.timers.schedule_user(slot, serial, after);
        }
    }

    /// A timer's wheel entry is due: run its callback (unless cancelled,
    /// stale, or its connection is gone or closing), then arm it again if
    /// it repeats.
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
        let alive = owner.is_none_or(|id| !core.table.is_closing(id));
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

    /// Whether a timer kind is the application's (its entry names a
    /// timer's slot, not a connection's).
    pub(super) fn is_user(kind: TimerKind) -> bool {
        kind == TimerKind::User
    }
}
