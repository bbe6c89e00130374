//! A dialed link found dead while it looks up: its requests timing out in
//! a row (`Dial::reconnect_after_timeouts`) or its health check failing
//! (`Dial::health_check`). Either closes it with a typed reason, and it
//! reconnects by its policy (`keep_for_reconnect`). Only dialed
//! connections with these settings pay for them: accepted ones have no
//! `DialState`, and the checks' timers are only set for those that ask.

use super::timers::TimerKind;
use super::{start_on, EventLoop};
use crate::buf::Payload;
use crate::conn::flag;
use crate::conn::requests::{Callback, ReplySink};
use crate::error::{CloseReason, Error};
use crate::runtime::local;

impl EventLoop {
    /// A dialed connection opened: its first health check is an interval
    /// away (the timer belongs to this attempt, so a loss drops it).
    pub(super) fn start_health(&mut self, key: usize, generation: u32) {
        let interval = (self.core.table.dials.borrow())
            .get(&key)
            .and_then(|d| d.spec.health.as_ref().map(|h| h.interval));
        if let Some(interval) = interval {
            self.schedule(key, generation, interval, TimerKind::Health);
        }
    }

    /// The health check's timer fired (of this attempt: `fire_timers`
    /// drops an earlier one's): send the check and set the next. A check
    /// that gets no reply in time, or cannot be sent, closes the link
    /// with `HealthCheckFailed`; one failed by a loss (`Disconnected`) or a
    /// close meanwhile (`Closed`) does nothing: the link is gone already.
    pub(super) fn health_due(&mut self, key: usize, generation: u32) {
        let core = self.core.clone();
        let table = &core.table;
        let Some(check) = (table.dials.borrow())
            .get(&key)
            .and_then(|d| d.spec.health.clone())
        else {
            return;
        };
        let up = table.conns.borrow().get(key).is_some_and(|c| {
            c.generation == generation
                && c.is_connected()
                && !c.has(flag::CLOSING)
                && !c.has(flag::CONNECTING)
        });
        if !up {
            return;
        }
        let id = table.id(key, generation);
        let runtime = core.runtime.clone();
        let sink = ReplySink::Callback(Callback::new(move |reply| {
            let why = match reply {
                Ok(_) | Err(Error::Disconnected | Error::Closed | Error::ShutDown) => return,
                Err(e) => e.to_string(),
            };
            log::warn!("conn {id}: health check failed: {why}");
            local::current(&runtime, |core| {
                (core.table).close_with(id, CloseReason::HealthCheckFailed(why), None)
            });
        }));
        let body = Payload::Shared(check.body.clone());
        let _ = start_on(&core, id, check.id, body, check.timeout, sink, true);
        self.schedule(key, generation, check.interval, TimerKind::Health);
    }

    /// Requests of the connection at `key` timed out: with
    /// `Dial::reconnect_after_timeouts(n)`, the `n`th in a row closes it
    /// with `RequestTimeouts(n)`.
    pub(super) fn timeouts_in_a_row(&mut self, key: usize, generation: u32) {
        let table = &self.core.table;
        let Some(n) = (table.dials.borrow())
            .get(&key)
            .and_then(|d| d.spec.timeouts_to_drop)
        else {
            return;
        };
        if table.requests.borrow().in_a_row(key, generation) >= n {
            log::warn!(
                "conn {}: {n} requests in a row timed out; dropping the link",
                table.id(key, generation)
            );
            table.close(key, generation, CloseReason::RequestTimeouts(n));
        }
    }
}
