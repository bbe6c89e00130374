//! The threads off the loop: the worker pool and the logic thread. Each
//! takes a connection's task, runs its items in order with the
//! connection's data, and gives the data back to the loop with what the
//! handlers sent (and, between items once a millisecond has passed, what
//! they sent so far, so a slow item does not hold back the replies of the
//! ones before it; fast items' replies leave in one write).

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use super::super::context::{Context, Session};
use super::super::{handle, App};
use super::{Job, Receivers};
use crate::error::{panic_message, CloseReason};
use crate::ext::Extensions;
use crate::runtime::exec::{Item, Off, Outcome, Place, Task};
use crate::runtime::local::Holding;
use crate::runtime::{Command, Runtime};

/// How long a task's replies may wait for the task's later items before
/// they are given to the loop anyway.
const EARLY: Duration = Duration::from_millis(1);

/// The worker pool's and logic thread's threads, and how to wait for
/// them with a deadline.
#[derive(Default)]
pub(crate) struct Workers {
    threads: Vec<JoinHandle<()>>,
    /// Each channel, with the number of threads taking from it (told to
    /// stop with one `Job::Stop` each).
    channels: Vec<(Sender<Job>, usize)>,
    /// Disconnected once every thread has ended (each holds a sender).
    ended: Option<Receiver<()>>,
}

impl Workers {
    /// Tell the threads to stop (the loops have exited: what they have
    /// queued is dropped), and join the ones that end by `deadline` (all of
    /// them, without one; at least [`GRACE`] is given). A thread still in a
    /// handler then is left to end on its own (its outcome is dropped).
    /// False if one panicked.
    pub(crate) fn join(&mut self, deadline: Option<Instant>) -> bool {
        for (tx, threads) in self.channels.drain(..) {
            for _ in 0..threads {
                let _ = tx.send(Job::Stop);
            }
        }
        let mut all_ended = deadline.is_none();
        if let (Some(ended), Some(deadline)) = (self.ended.take(), deadline) {
            let until = deadline.max(Instant::now() + GRACE);
            all_ended = matches!(
                ended.recv_deadline(until),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected)
            );
        }
        let mut ok = true;
        let mut left = 0;
        for t in self.threads.drain(..) {
            // Every thread has let go of its sender: each is at its end.
            if all_ended || t.is_finished() {
                ok &= t.join().is_ok();
            } else {
                left += 1;
            }
        }
        if left > 0 {
            log::warn!(
                "{left} worker thread(s) still ran a handler at the shutdown deadline; \
                 left to end on their own"
            );
        }
        ok
    }
}

/// How long an idle worker may take to end once told to.
const GRACE: Duration = Duration::from_millis(100);

/// Start the threads `receivers` ask for. They hold the application
/// weakly: once the loops (and the server handle) let it go, the channels
/// close and the threads end.
pub(crate) fn spawn(
    receivers: Receivers,
    app: &Arc<App>,
    runtime: &Arc<Runtime>,
) -> io::Result<Workers> {
    let mut threads = Vec::new();
    let (alive, ended) = crossbeam_channel::bounded::<()>(0);
    let mut start = |name: String, rx: Receiver<Job>, logic: bool| -> io::Result<()> {
        let (app, runtime, alive) = (Arc::downgrade(app), runtime.clone(), alive.clone());
        let t = std::thread::Builder::new().name(name).spawn(move || {
            let _alive = alive;
            work(&rx, &app, &runtime, logic);
        })?;
        threads.push(t);
        Ok(())
    };
    let mut channels = Vec::new();
    if let (Some((rx, n)), Some(tx)) = (receivers.pool, &app.exec.pool) {
        for i in 0..n {
            start(format!("netloom-worker-{i}"), rx.clone(), false)?;
        }
        channels.push((tx.clone(), n));
    }
    if let (Some(rx), Some(tx)) = (receivers.single, &app.exec.single) {
        start("netloom-logic".into(), rx, true)?;
        channels.push((tx.clone(), 1));
    }
    Ok(Workers {
        threads,
        channels,
        ended: Some(ended),
    })
}

/// Take jobs until told to stop; `logic`: this is the logic thread.
fn work(rx: &Receiver<Job>, app: &Weak<App>, runtime: &Arc<Runtime>, logic: bool) {
    while let Ok(job) = rx.recv() {
        match job {
            Job::Task(task) => {
                let exited = &runtime.loops[task.conn.loop_index()].exited;
                if exited.load(Ordering::Acquire) {
                    // Its loop is gone, and its `on_close` has run.
                    continue;
                }
                let Some(app) = app.upgrade() else {
                    return;
                };
                run_task(&app, runtime, task, logic);
            }
            Job::Stop => return,
            Job::Run(f) => {
                if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
                    log::error!("a server timer panicked: {}", panic_message(&*panic));
                }
            }
        }
    }
}

/// Run one connection's items in order, then give its data back.
fn run_task(app: &App, runtime: &Arc<Runtime>, task: Task, logic: bool) {
    let Task {
        conn,
        peer,
        profile,
        mut data,
        items,
        held,
        warned,
    } = task;
    let off = Off::new(runtime, &app.state, items.len(), warned);
    // A `ConnHandle::run(..).wait()` for this connection would wait for
    // this task (on the logic thread of a server whose model is
    // `Exec::Single`, any connection's would): it panics instead
    // (`Receipt::wait`).
    let every = logic && runtime.config.logic_thread;
    let _holding = Holding::enter(runtime, conn, every);
    let routing = app.routing(profile);
    let count = items.len();
    let mut last_given = Instant::now();
    for (i, item) in items.into_iter().enumerate() {
        if off.closed.get() {
            // It asked to close: what it had not handled is dropped.
            break;
        }
        let ran = catch_unwind(AssertUnwindSafe(|| match item {
            Item::Message { id, seq, body } => {
                let Some((router, unknown_id)) = routing else {
                    return;
                };
                let mut ctx = context(&off, conn, peer, profile, &mut data, id, seq, &body);
                handle(router.get(id), unknown_id, &app.bad_bodies, &mut ctx);
            }
            Item::Work(work) => work(Place::Off(&off), conn, peer, profile, &mut data),
        }));
        if let Err(panic) = ran {
            // A handler's panics are caught in `handle`; this is queued
            // work's (a timer, `ConnHandle::run`).
            log::error!(
                "conn {conn}: code run on it panicked: {}",
                panic_message(&*panic)
            );
            off.close(CloseReason::HandlerPanic, None);
        }
        // Replies so far go ahead of a slow item's (a handler that
        // blocked for a while); fast items' replies leave together.
        if i + 1 < count && off.has_out() && last_given.elapsed() >= EARLY {
            last_given = Instant::now();
            let (out, bodies) = off.take();
            let early = Outcome {
                conn,
                data: None,
                out,
                bodies,
                held: 0,
                warned: off.warned.get(),
            };
            give_back(runtime, early);
        }
    }
    let (out, bodies) = off.take();
    let outcome = Outcome {
        conn,
        data: Some(data),
        out,
        bodies,
        held,
        warned: off.warned.get(),
    };
    give_back(runtime, outcome);
}

/// A handler's context off the loop.
#[allow(clippy::too_many_arguments)]
fn context<'a>(
    off: &'a Off<'a>,
    conn: crate::id::ConnId,
    peer: std::net::SocketAddr,
    profile: u8,
    data: &'a mut Extensions,
    id: u32,
    seq: u32,
    body: &'a Bytes,
) -> Context<'a> {
    Context {
        session: Session {
            at: Place::Off(off),
            id: conn,
            peer,
            profile,
            data,
        },
        id,
        seq,
        body,
        source: body,
        source_alloc: body.len(),
        values: Extensions::new(),
    }
}

/// Hand an outcome to the connection's loop. Never refused for space (it
/// carries the connection's data back); a loop that has stopped drops it.
fn give_back(runtime: &Runtime, outcome: Outcome) {
    let index = outcome.conn.loop_index();
    let _ = runtime.push(index, 0, Command::Outcome(Box::new(outcome)));
}
