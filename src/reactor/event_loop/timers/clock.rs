//! The loop's clock and its hashed timer wheel: when a timer is due.
//! What each timer does when it fires is the parent module's.

use std::time::{Duration, Instant};

use super::super::EventLoop;
use super::{Timer, TimerKind};
use crate::config::Config;
use crate::timer::TimerWheel;

/// The loop's clock and timer wheel.
pub(in crate::reactor::event_loop) struct Timers {
    wheel: TimerWheel<Timer>,
    due: Vec<Timer>,
    tick_ms: u64,
    start: Instant,
    /// Milliseconds since `start`, updated once per turn.
    now_ms: u64,
}

impl Timers {
    pub(in crate::reactor::event_loop) fn new(config: &Config) -> Timers {
        let mut tick = config.timer_resolution;
        if let Some(finest) = config.finest_timer {
            tick = tick.min(finest);
        }
        let mut longest = config.close_linger.max(config.handshake_timeout);
        for hb in config.heartbeats() {
            tick = tick.min(hb.check_interval);
            longest = longest.max(hb.idle_timeout);
        }
        let tick_ms = millis(tick).max(1);
        let slots = (millis(longest) / tick_ms).saturating_add(2).min(1 << 16) as usize;
        Timers {
            wheel: TimerWheel::new(slots),
            due: Vec::new(),
            tick_ms,
            start: Instant::now(),
            now_ms: 0,
        }
    }

    pub(in crate::reactor::event_loop) fn update_clock(&mut self) {
        self.now_ms = self.start.elapsed().as_millis() as u64;
    }

    /// The clock as stored in connections (wrapping milliseconds).
    pub(in crate::reactor::event_loop) fn now32(&self) -> u32 {
        self.now_ms as u32
    }

    /// How long until the next timer may be due.
    pub(in crate::reactor::event_loop) fn until_next(&self) -> Option<Duration> {
        self.wheel.next_due().map(|tick| {
            Duration::from_millis(
                tick.saturating_mul(self.tick_ms)
                    .saturating_sub(self.now_ms),
            )
        })
    }

    /// Schedule a timer to fire at `at` or later (never before: the
    /// milliseconds are rounded up on the wheel's own clock).
    pub(in crate::reactor::event_loop) fn schedule_at(
        &mut self,
        key: usize,
        generation: u32,
        at: Instant,
        kind: TimerKind,
        mark: u32,
    ) {
        let at_ms = millis(at.saturating_duration_since(self.start)).saturating_add(1);
        let timer = Timer {
            key: key as u32,
            generation,
            kind,
            attempt: 0,
            mark,
        };
        self.insert(timer, at_ms);
    }

    /// Put an application timer on the wheel (see `TimerKind::User`).
    pub(in crate::reactor::event_loop) fn schedule_user(
        &mut self,
        slot: usize,
        serial: u32,
        after: Duration,
    ) {
        let timer = Timer {
            key: slot as u32,
            generation: serial,
            kind: TimerKind::User,
            attempt: 0,
            mark: 0,
        };
        self.schedule(timer, after);
    }

    /// Keep the application timers' wheel entries `live(slot, serial)`
    /// names (the others' timers were removed before they came due).
    pub(in crate::reactor::event_loop) fn retain_user(
        &mut self,
        mut live: impl FnMut(usize, u32) -> bool,
    ) {
        self.wheel
            .retain(|t| !EventLoop::is_user(t.kind) || live(t.key as usize, t.generation));
    }

    /// Entries on the wheel.
    pub(in crate::reactor::event_loop) fn len(&self) -> usize {
        self.wheel.len()
    }

    /// Durations are capped at `FOREVER` where they enter netloom; the
    /// arithmetic here saturates all the same, so no duration can wrap
    /// into the past (and fire at once) or panic: a tick beyond the wheel's
    /// round stays in its slot until its own round comes.
    /// `after` (rounded up to a millisecond) from the clock now, not the
    /// turn's start: a timer armed late in a turn, or for a command sent
    /// during it, never ends before `after` has passed for whoever asked,
    /// but for the fraction of a millisecond the clock does not count (a
    /// repeating timer whose interval is the tick stays on its tick).
    pub(super) fn schedule(&mut self, timer: Timer, after: Duration) {
        let now_ms = millis(self.start.elapsed()).max(self.now_ms);
        let after_ms =
            millis(after).saturating_add(u64::from(after.subsec_nanos() % 1_000_000 != 0));
        self.insert(timer, now_ms.saturating_add(after_ms));
    }

    fn insert(&mut self, timer: Timer, at_ms: u64) {
        self.wheel.insert(at_ms.div_ceil(self.tick_ms), timer);
    }

    /// The timers due now (give the vector back with `restore`).
    pub(super) fn take_due(&mut self) -> Vec<Timer> {
        let mut due = std::mem::take(&mut self.due);
        let now_tick = self.now_ms / self.tick_ms;
        if now_tick > self.wheel.current() {
            self.wheel.advance(now_tick, &mut due);
        }
        due
    }

    pub(super) fn restore(&mut self, mut due: Vec<Timer>) {
        due.clear();
        self.due = due;
    }
}

/// Whole milliseconds in `d`, saturating at `u64::MAX` (`as u64` would
/// truncate `Duration::MAX` to a small number).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
