//! Timers for the application, the `Session`-facing half: a connection's
//! own ([`Session::after`], [`Session::every`], and from any thread
//! [`ConnHandle::after`], [`ConnHandle::every`]), run on its loop with its
//! `Session` as a handler is, and ending with it. The loop's wheel holds
//! them (`runtime::UserTimers`, `reactor::event_loop::user_timers`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crossbeam_channel::Sender;
use std::time::Duration;

use super::context::Session;
use super::exec::{self, Job};
use crate::config::saturate;
use crate::error::{Error, Result};
use crate::id::ConnId;
use crate::runtime::exec::Place;
use crate::runtime::{Command, ConnHandle, Hub, LoopCore, TimerFn, TimerHandle};

/// The shortest interval of a repeating timer (a zero one would fire
/// every turn).
const MIN_EVERY: Duration = Duration::from_millis(1);

/// `f` run with the `Session` of connection `id` where its work runs (on
/// its loop, or behind the work it has at a worker or the logic thread);
/// `false` (stop) once the connection is gone or closing. A panic in `f`
/// closes the connection, as a handler's does.
fn on_session(id: ConnId, f: impl FnMut(&mut Session<'_>) + Send + 'static) -> TimerFn {
    let f = Arc::new(Mutex::new(f));
    // A run still waiting behind the connection's work (a worker holds
    // its data) is not queued again: a repeating timer does not pile up
    // runs while a handler blocks.
    let waiting = Arc::new(AtomicBool::new(false));
    Box::new(move |core: &LoopCore| {
        if waiting.swap(true, Ordering::AcqRel) {
            return true;
        }
        let (f, waiting) = (f.clone(), waiting.clone());
        exec::submit(
            core,
            id,
            Box::new(move |at, id, peer, profile, data| {
                waiting.store(false, Ordering::Release);
                let mut session = Session {
                    at,
                    id,
                    peer,
                    profile,
                    data,
                };
                let mut f = f.lock().unwrap_or_else(PoisonError::into_inner);
                f(&mut session);
            }),
            false,
        )
    })
}

/// A `FnOnce` as the `FnMut` a timer holds (it runs once).
fn once(f: impl FnOnce(&mut Session<'_>) + Send + 'static) -> impl FnMut(&mut Session<'_>) + Send {
    let mut f = Some(f);
    move |s: &mut Session<'_>| {
        if let Some(f) = f.take() {
            f(s);
        }
    }
}

/// Register a timer of connection `id` on `core` (its own loop): on the
/// wheel; while the connection is closing, off it (parked: it is due when
/// the connection is kept for a reconnect, and goes with it otherwise);
/// not at all once the connection is gone (in `on_close`, say): then the
/// handle says cancelled and `f` is dropped now.
fn add(
    core: &LoopCore,
    id: ConnId,
    after: Duration,
    every: Option<Duration>,
    handle: TimerHandle,
    f: TimerFn,
) {
    if core.table.is_gone(id) {
        handle.refuse();
        drop(f);
        return;
    }
    let parked = core.table.is_closing(id);
    let refused =
        (core.timers.borrow_mut()).add(Some(id), saturate(after), every, handle, f, parked);
    // User code (what it captured): dropped outside the borrow.
    drop(refused);
}

impl Session<'_> {
    /// Run `f` on this connection's loop, with its `Session`, once after
    /// `delay` (on the loop's timer wheel: up to one tick late, see
    /// `Builder::timer_resolution`). It never runs if the connection has
    /// closed (or is closing) by then, or if the returned handle was
    /// cancelled. A panic in `f` closes the connection. Under
    /// [`Exec::Single`](crate::Exec::Single) as the server's model it runs
    /// on the logic thread; while the connection's work is at a worker,
    /// it waits behind that work.
    pub fn after(
        &self,
        delay: Duration,
        f: impl FnOnce(&mut Session<'_>) + Send + 'static,
    ) -> TimerHandle {
        self.set_timer(delay, None, on_session(self.id, once(f)))
    }

    /// Run `f` on this connection's loop, with its `Session`, every
    /// `interval` (at least 1 ms), first `interval` from now, until the
    /// connection closes or the handle is cancelled: a per-connection
    /// cron (getty's `OnCron`). Each run is scheduled from the end of the
    /// last one's tick, so a slow `f` shifts the next run rather than
    /// piling them up.
    pub fn every(
        &self,
        interval: Duration,
        f: impl FnMut(&mut Session<'_>) + Send + 'static,
    ) -> TimerHandle {
        let interval = saturate(interval).max(MIN_EVERY);
        self.set_timer(interval, Some(interval), on_session(self.id, f))
    }

    /// Set a timer of this connection: on its loop's wheel directly, or,
    /// off the loop, through its inbox (a timer that cannot be set comes
    /// back cancelled).
    fn set_timer(&self, after: Duration, every: Option<Duration>, f: TimerFn) -> TimerHandle {
        match self.at {
            Place::Loop(core) => {
                let handle = TimerHandle::on_loop(&core.runtime, self.id.loop_index());
                add(core, self.id, after, every, handle.clone(), f);
                handle
            }
            Place::Off(_) => self
                .handle()
                .set_timer(after, every, f)
                .unwrap_or_else(|e| {
                    log::debug!("conn {}: timer not set: {e}", self.id);
                    TimerHandle::refused()
                }),
        }
    }
}

impl ConnHandle {
    /// [`Session::after`] from any thread: the timer is set on the
    /// connection's loop (through its inbox, in order with this thread's
    /// sends).
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`], or [`Error::InboxFull`] (nothing set).
    pub fn after(
        &self,
        delay: Duration,
        f: impl FnOnce(&mut Session<'_>) + Send + 'static,
    ) -> Result<TimerHandle> {
        self.set_timer(delay, None, on_session(self.id, once(f)))
    }

    /// [`Session::every`] from any thread.
    ///
    /// # Errors
    ///
    /// As [`after`](Self::after).
    pub fn every(
        &self,
        interval: Duration,
        f: impl FnMut(&mut Session<'_>) + Send + 'static,
    ) -> Result<TimerHandle> {
        let interval = saturate(interval).max(MIN_EVERY);
        self.set_timer(interval, Some(interval), on_session(self.id, f))
    }

    pub(crate) fn set_timer(
        &self,
        after: Duration,
        every: Option<Duration>,
        f: TimerFn,
    ) -> Result<TimerHandle> {
        let (runtime, id) = (&self.runtime, self.id);
        if runtime.is_shut_down() {
            return Err(Error::ShutDown);
        }
        let handle = TimerHandle::on_loop(runtime, id.loop_index());
        let mine = handle.clone();
        let job = Box::new(move |core: &LoopCore| add(core, id, after, every, mine, f));
        runtime.push(id.loop_index(), 0, Command::Run { bytes: 0, job })?;
        Ok(handle)
    }
}

/// A server-wide timer's callback (`Builder::every`).
pub(crate) type TickFn = Box<dyn FnMut(&Hub) + Send>;
/// The per-connection cron (`Builder::cron`).
pub(crate) type CronFn = Arc<dyn Fn(&mut Session<'_>) + Send + Sync>;

/// The timers the builder set: server-wide ones, set on loop 0 as it
/// starts, and a cron every connection gets when it opens.
#[derive(Default)]
pub(crate) struct AppTimers {
    pub(crate) ticks: Mutex<Vec<(Duration, TickFn)>>,
    pub(crate) cron: Option<(Duration, CronFn)>,
}

impl AppTimers {
    /// Set the server-wide timers on `core` (loop 0, once); with `logic`,
    /// each tick runs on the logic thread (`Exec::Single`).
    pub(crate) fn start_ticks(&self, core: &LoopCore, logic: Option<&Sender<Job>>) {
        let ticks = std::mem::take(&mut *self.ticks.lock().unwrap_or_else(PoisonError::into_inner));
        for (interval, mut f) in ticks {
            let interval = saturate(interval).max(MIN_EVERY);
            let hub = Hub {
                runtime: core.runtime.clone(),
            };
            let timer: TimerFn = match logic {
                None => Box::new(move |_core: &LoopCore| {
                    f(&hub);
                    true
                }),
                Some(logic) => {
                    let (logic, f) = (logic.clone(), Arc::new(Mutex::new(f)));
                    // One tick in flight: while the logic thread is busy,
                    // ticks are skipped, not piled up (as on a loop).
                    let waiting = Arc::new(AtomicBool::new(false));
                    Box::new(move |_core: &LoopCore| {
                        if waiting.swap(true, Ordering::AcqRel) {
                            return true;
                        }
                        let (f, hub, waiting) = (f.clone(), hub.clone(), waiting.clone());
                        let tick = move || {
                            waiting.store(false, Ordering::Release);
                            (f.lock().unwrap_or_else(PoisonError::into_inner))(&hub)
                        };
                        if logic.send(Job::Run(Box::new(tick))).is_err() {
                            return false;
                        }
                        true
                    })
                }
            };
            let handle = TimerHandle::detached();
            let refused = (core.timers.borrow_mut()).add(
                None,
                interval,
                Some(interval),
                handle,
                timer,
                false,
            );
            drop(refused);
        }
    }

    /// Start the cron of connection `id`, which just opened.
    pub(crate) fn start_cron(&self, core: &LoopCore, id: ConnId) {
        if let Some((interval, f)) = &self.cron {
            let f = f.clone();
            let interval = saturate(*interval).max(MIN_EVERY);
            let timer = on_session(id, move |s| f(s));
            add(
                core,
                id,
                interval,
                Some(interval),
                TimerHandle::detached(),
                timer,
            );
        }
    }

    /// The finest interval the builder's timers need (the wheel's tick is
    /// at most this).
    pub(crate) fn finest(&self) -> Option<Duration> {
        let ticks = self.ticks.lock().unwrap_or_else(PoisonError::into_inner);
        ticks
            .iter()
            .map(|(d, _)| *d)
            .chain(self.cron.as_ref().map(|(d, _)| *d))
            .min()
            .map(|d| d.max(MIN_EVERY))
    }
}
