//! The builder's timers: server-wide ones ([`Builder::every`], for game
//! ticks), a cron for every connection ([`Builder::cron`]), and the
//! wheel's resolution ([`Builder::timer_resolution`]).

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::Builder;
use crate::dispatch::context::Session;
use crate::runtime::Hub;

impl Builder {
    /// Run `f` every `interval` (at least 1 ms) for as long as the server
    /// runs, on loop 0's thread, with the server's [`Hub`]: a game tick,
    /// a periodic broadcast, a sweep. It never runs on two threads at
    /// once. The timer wheel's tick is made fine enough for `interval`
    /// (see [`timer_resolution`](Self::timer_resolution)); each run is
    /// due `interval` after the tick the last one ran in, at most one
    /// tick late. A panic in `f` is logged and ends this timer.
    pub fn every(mut self, interval: Duration, f: impl FnMut(&Hub) + Send + 'static) -> Self {
        self.timers
            .ticks
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .push((interval, Box::new(f)));
        self
    }

    /// Run `f` on each connection's loop, with its [`Session`], every
    /// `interval` (at least 1 ms) from the moment it opens until it
    /// closes: getty's `OnCron`. One timer per connection on its loop's
    /// wheel; `f` itself is shared. Setting it again replaces it. A panic
    /// in `f` closes that connection.
    pub fn cron(
        mut self,
        interval: Duration,
        f: impl Fn(&mut Session<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.timers.cron = Some((interval, Arc::new(f)));
        self
    }

    /// The timer wheel's tick: how late at most a timer fires
    /// (`Session::after`, `every`, heartbeats, handshake and close
    /// deadlines). Default: 100 ms, or finer when a heartbeat's check
    /// interval, an [`every`](Self::every) or a [`cron`](Self::cron)
    /// interval is shorter. At least 1 ms. A finer tick costs wake-ups
    /// only while timers are pending.
    pub fn timer_resolution(mut self, tick: Duration) -> Self {
        self.config.timer_resolution = tick;
        self
    }
}
