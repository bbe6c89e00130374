//! The loop's side of the execution models: a connection's messages and
//! work wait in its lane ([`enqueue`], [`submit`]); [`App::pump`] runs
//! what belongs on the loop and hands the rest to the worker pool or the
//! logic thread with the connection's data; [`App::outcome`] takes the
//! data back with what the handlers sent. Over `Config::exec_backlog` the
//! connection's reads pause (or, where they may not, it closes).

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;

use super::super::context::{Context, Session};
use super::super::{handle, lend, with_session_of, App};
use super::Job;
use crate::buf::Payload;
use crate::conn::flag;
use crate::conn::table::ConnTable;
use crate::error::{panic_message, CloseReason};
use crate::ext::Extensions;
use crate::id::ConnId;
use crate::runtime::exec::{
    Item, Lane, Lanes, Outcome, Outgoing, Place, Queued, Target, Task, WorkFn, ITEM_COST,
};
use crate::runtime::LoopCore;
use crate::stats::Counters;

/// The most items one task carries (the rest wait for the next).
const MAX_TASK_ITEMS: usize = 64;

/// Run `work` with the session of connection `id`: at once on the loop if
/// nothing of its waits and the server runs such work on its loops, else
/// behind its queued work (on the logic thread under `Exec::Single`).
/// `false` if the connection is gone, or closing unless `while_closing`
/// (`work` is dropped). On a closing connection, work that cannot run
/// at once is dropped when its lane next moves (before `on_close`).
pub(crate) fn submit(core: &LoopCore, id: ConnId, work: WorkFn, while_closing: bool) -> bool {
    let out = {
        let mut slab = core.table.conns.borrow_mut();
        match core.table.lookup(&mut slab, id) {
            Some((_, c)) if while_closing || !c.has(flag::CLOSING) => c.has(flag::EXEC),
            _ => return false,
        }
    };
    let target = if core.runtime.config.logic_thread {
        Target::Single
    } else {
        Target::Loop
    };
    let waiting =
        out || !core.lanes.borrow().is_empty() && core.lanes.borrow_mut().get(id).is_some();
    if !waiting && target == Target::Loop {
        lend(core, id, |id, peer, profile, data| {
            core.guarded(id, "code run on a connection", || {
                work(Place::Loop(core), id, peer, profile, data)
            })
        });
        return true;
    }
    let queued = Queued {
        item: Item::Work(work),
        target,
        cost: ITEM_COST,
    };
    core.lanes.borrow_mut().defer(id, queued);
    true
}

/// Run a hook of connection `id` on its loop with its session: now, or,
/// while a worker holds its data, once the data is back (behind the work
/// queued before). Nothing if the connection is gone.
pub(crate) fn on_loop(
    core: &LoopCore,
    id: ConnId,
    f: impl FnOnce(&mut Session<'_>) + Send + 'static,
) {
    let waiting = {
        let mut slab = core.table.conns.borrow_mut();
        match core.table.lookup(&mut slab, id) {
            Some((_, c)) => c.has(flag::EXEC),
            None => return,
        }
    } || !core.lanes.borrow().is_empty() && core.lanes.borrow_mut().get(id).is_some();
    if !waiting {
        with_session_of(core, id, f);
        return;
    }
    let work: WorkFn = Box::new(move |at, id, peer, profile, data| {
        f(&mut Session {
            at,
            id,
            peer,
            profile,
            data,
        })
    });
    let queued = Queued {
        item: Item::Work(work),
        target: Target::Loop,
        cost: ITEM_COST,
    };
    core.lanes.borrow_mut().defer(id, queued);
}

/// Where the connection stands, for its lane.
enum Standing {
    Ready,
    /// Its data is out at an executor.
    Out,
    /// Closing or gone: what waits is dropped.
    Done,
}

/// What the lane gives next.
enum Next {
    Here(Item),
    Off(Target, Vec<Item>, usize),
    Empty,
}

impl App {
    /// Move the lane of `me` on: run what belongs on the loop, hand the
    /// next run of off-loop items to their executor, then apply the
    /// backlog's bound.
    pub(crate) fn pump(&self, core: &LoopCore, me: ConnId) {
        loop {
            let standing = {
                let mut slab = core.table.conns.borrow_mut();
                match core.table.lookup(&mut slab, me) {
                    Some((_, c)) if c.has(flag::EXEC) => Standing::Out,
                    Some((_, c)) if !c.has(flag::CLOSING) => Standing::Ready,
                    _ => Standing::Done,
                }
            };
            match standing {
                Standing::Out => break,
                Standing::Done => {
                    // Closing: its messages go, its other work
                    // (`ConnHandle::run`) runs now, on the loop, before
                    // `on_close`. Gone: all of it goes, unless it waits
                    // for its data to run `on_close`.
                    let closing = {
                        let mut slab = core.table.conns.borrow_mut();
                        core.table.lookup(&mut slab, me).is_some()
                    };
                    let lane = {
                        let mut lanes = core.lanes.borrow_mut();
                        match lanes.get(me) {
                            Some(l) if l.closed.is_none() => lanes.remove(me),
                            _ => None,
                        }
                    };
                    for q in lane.into_iter().flat_map(|l| l.items) {
                        if let (true, Item::Work(_)) = (closing, &q.item) {
                            self.run_here(core, me, q.item);
                        }
                    }
                    return;
                }
                Standing::Ready => {}
            }
            let step = next(&mut core.lanes.borrow_mut(), me);
            match step {
                Next::Empty => break,
                Next::Here(item) => self.run_here(core, me, item),
                Next::Off(target, items, held) => {
                    self.hand_over(core, me, target, items, held);
                    break;
                }
            }
        }
        check_backlog(core, me);
    }

    /// Move on every lane given work outside a read this turn.
    pub(crate) fn pump_deferred(&self, core: &LoopCore) {
        let ids = std::mem::take(&mut core.lanes.borrow_mut().to_pump);
        for id in ids {
            self.pump(core, id);
        }
    }

    /// Run a loop item of `me` (its route runs inline, or queued work).
    fn run_here(&self, core: &LoopCore, me: ConnId, item: Item) {
        lend(core, me, |cid, peer, profile, data| match item {
            Item::Message { id, seq, body } => {
                let Some((router, unknown_id)) = self.routing(profile) else {
                    return;
                };
                let mut ctx = Context {
                    session: Session {
                        at: Place::Loop(core),
                        id: cid,
                        peer,
                        profile,
                        data,
                    },
                    id,
                    seq,
                    body: &body,
                    source: &body,
                    source_alloc: body.len(),
                    values: Extensions::new(),
                };
                handle(router.get(id), unknown_id, &self.bad_bodies, &mut ctx);
            }
            Item::Work(work) => {
                core.guarded(cid, "code run on a connection", || {
                    work(Place::Loop(core), cid, peer, profile, data)
                });
            }
        });
    }

    /// Lend the data of `me` to `target`'s executor with `items`.
    fn hand_over(
        &self,
        core: &LoopCore,
        me: ConnId,
        target: Target,
        items: Vec<Item>,
        held: usize,
    ) {
        let taken = {
            let mut slab = core.table.conns.borrow_mut();
            core.table.lookup(&mut slab, me).map(|(_, c)| {
                c.set(flag::EXEC);
                let warned = c.flags & flag::WARNED;
                (std::mem::take(&mut c.data), c.peer, c.profile, warned)
            })
        };
        let Some((data, peer, profile, warned)) = taken else {
            return;
        };
        let task = Task {
            conn: me,
            peer,
            profile,
            data,
            items,
            held,
            warned,
        };
        let refused = match self.exec.to(target) {
            Some(tx) => tx.send(Job::Task(task)).err().map(|e| e.0),
            None => Some(Job::Task(task)),
        };
        if let Some(Job::Task(task)) = refused {
            // No executor takes it (its threads are gone): give the data
            // back and close the connection rather than hold it forever.
            log::error!("conn {me}: no {target:?} executor to run its handlers; closing");
            let outcome = Outcome {
                conn: me,
                data: Some(task.data),
                out: vec![Outgoing::Close(CloseReason::HandlerPanic, None)],
                bodies: Bytes::new(),
                held: task.held,
                warned: task.warned,
            };
            drop(task.items);
            self.outcome(core, outcome);
        }
    }

    /// A worker's (or the logic thread's) outcome for a connection of this
    /// loop: its sends, in order, then its data back, and the lane moved
    /// on (or `on_close`, if it closed meanwhile).
    pub(crate) fn outcome(&self, core: &LoopCore, outcome: Outcome) {
        let Outcome {
            conn: me,
            data,
            out,
            bodies,
            held,
            warned,
        } = outcome;
        if warned != 0 {
            let mut slab = core.table.conns.borrow_mut();
            if let Some((_, c)) = core.table.lookup(&mut slab, me) {
                c.set(warned);
            }
        }
        // A task of a session lost since (the link reconnected): what it
        // sent was for the old link.
        let stale = {
            let mut lanes = core.lanes.borrow_mut();
            let lane = lanes.get(me);
            let stale = lane.as_ref().is_some_and(|l| l.stale_out);
            if let (Some(lane), true) = (lane, data.is_some()) {
                lane.stale_out = false;
            }
            stale
        };
        if stale {
            log::debug!("conn {me}: dropped what a handler of the lost session sent");
        } else {
            for o in out {
                apply(core, me, o, &bodies);
            }
        }
        let Some(mut data) = data else {
            return;
        };
        let closed = {
            let mut lanes = core.lanes.borrow_mut();
            lanes.give_back(me, held);
            lanes.get(me).and_then(|lane| lane.closed.take())
        };
        if let Some((reason, peer, profile)) = closed {
            let lane = core.lanes.borrow_mut().remove(me);
            self.closing(core, (me, peer, profile), &mut data, lane, &reason);
            return;
        }
        let back = {
            let mut slab = core.table.conns.borrow_mut();
            core.table.lookup(&mut slab, me).map(|(_, c)| {
                c.unset(flag::EXEC);
                c.data = data;
            })
        };
        if back.is_some() {
            self.pump(core, me);
        }
    }

    /// The last of connection `me` (gone, its data here): the work still
    /// in its `lane` (`ConnHandle::run`, which runs before `on_close`
    /// even on a closing connection), then `on_close`.
    pub(crate) fn closing(
        &self,
        core: &LoopCore,
        (me, peer, profile): (ConnId, std::net::SocketAddr, u8),
        data: &mut Extensions,
        lane: Option<Lane>,
        reason: &CloseReason,
    ) {
        for q in lane.into_iter().flat_map(|l| l.items) {
            if let Item::Work(work) = q.item {
                let ran = catch_unwind(AssertUnwindSafe(|| {
                    work(Place::Loop(core), me, peer, profile, data)
                }));
                if let Err(panic) = ran {
                    log::error!(
                        "conn {me}: code run on it panicked: {}",
                        panic_message(&*panic)
                    );
                }
            }
        }
        let mut session = Session {
            at: Place::Loop(core),
            id: me,
            peer,
            profile,
            data,
        };
        self.hooks.close(&mut session, reason);
    }

    /// Connection `me` closed while its data was out: `on_close` waits for
    /// the data; the messages queued behind are dropped.
    pub(crate) fn close_when_back(
        &self,
        core: &LoopCore,
        me: ConnId,
        reason: CloseReason,
        peer: std::net::SocketAddr,
        profile: u8,
    ) {
        let dropped = {
            let mut lanes = core.lanes.borrow_mut();
            lanes.push_closed(me, (reason, peer, profile))
        };
        drop(dropped);
    }

    /// The loop exits with data still out: run those `on_close`s with
    /// what the connections have here (nothing). Returns which.
    pub(crate) fn abandon_lanes(&self, core: &LoopCore) -> Vec<ConnId> {
        let lanes = core.lanes.borrow_mut().take_all();
        let mut abandoned = Vec::new();
        for (me, lane) in lanes {
            let Some((reason, peer, profile)) = lane.closed else {
                continue;
            };
            abandoned.push(me);
            log::warn!("conn {me}: its handler was still running as the loop exited; on_close runs without its data");
            let mut data = Extensions::new();
            let mut session = Session {
                at: Place::Loop(core),
                id: me,
                peer,
                profile,
                data: &mut data,
            };
            self.hooks.close(&mut session, &reason);
        }
        abandoned
    }
}

/// Take the next item, or the next run of items for one executor.
fn next(lanes: &mut Lanes, me: ConnId) -> Next {
    let Some(lane) = lanes.get(me) else {
        return Next::Empty;
    };
    let Some(target) = lane.items.front().map(|q| q.target) else {
        if lane.closed.is_none() {
            lanes.retire(me);
        }
        return Next::Empty;
    };
    if target == Target::Loop {
        let Some(q) = lane.items.pop_front() else {
            return Next::Empty;
        };
        lane.held = lane.held.saturating_sub(q.cost);
        return Next::Here(q.item);
    }
    let run = (lane.items.iter())
        .take(MAX_TASK_ITEMS)
        .take_while(|q| q.target == target)
        .count();
    let (mut items, mut held) = (Vec::with_capacity(run), 0);
    while items.len() < MAX_TASK_ITEMS && lane.items.front().is_some_and(|q| q.target == target) {
        if let Some(q) = lane.items.pop_front() {
            held += q.cost;
            items.push(q.item);
        }
    }
    Next::Off(target, items, held)
}

/// Apply one thing a handler off the loop did to its connection.
fn apply(core: &LoopCore, me: ConnId, o: Outgoing, bodies: &Bytes) {
    match o {
        Outgoing::Send { id, seq, body } => {
            let body = body.bytes(bodies);
            // The packer is user code: a panic closes that connection.
            let sent = catch_unwind(AssertUnwindSafe(|| {
                core.table.send(me, id, seq, Payload::Shared(body))
            }));
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("conn {me}: a handler's send off the loop dropped: {e}"),
                Err(panic) => {
                    let why = panic_message(&*panic);
                    log::error!("conn {me}: packer panicked encoding a message: {why}");
                    core.table.close_with(me, CloseReason::HandlerPanic, None);
                }
            }
        }
        Outgoing::Close(reason, goodbye) => core.table.close_with(me, reason, goodbye.as_ref()),
    }
}

/// Over `Config::exec_backlog`, pause reading `me` (or close it, if its
/// reads may not pause: it waits for replies on them); back under half,
/// let the flush look at resuming it.
fn check_backlog(core: &LoopCore, me: ConnId) {
    let limit = core.runtime.config.exec_backlog;
    let held = core.lanes.borrow_mut().get(me).map_or(0, |l| l.held);
    let mut slab = core.table.conns.borrow_mut();
    let Some((key, conn)) = core.table.lookup(&mut slab, me) else {
        return;
    };
    if held > limit {
        if conn.has(flag::CLOSING) || conn.has(flag::PAUSED) {
            return;
        }
        // A UDP session cannot stop its socket: it drops what comes while
        // paused instead (`DatagramDrop::Backlog`), whatever side it is.
        if ConnTable::may_pause(conn) || conn.layer.is_udp() {
            log::debug!("conn {me}: {held} bytes of work wait for its handlers; pausing reads");
            conn.set(flag::PAUSED);
            Counters::bump(&core.table.counters().exec_pauses, 1);
        } else {
            drop(slab);
            core.table.close_with(me, CloseReason::Backlog, None);
        }
    } else if conn.has(flag::PAUSED) {
        core.table.mark_dirty(key, conn);
    }
}

/// Whether `me`'s backlog keeps its reads paused (over half the bound).
pub(crate) fn holds_reads(core: &LoopCore, me: ConnId) -> bool {
    core.lanes
        .borrow_mut()
        .get(me)
        .is_some_and(|l| l.held > core.runtime.config.exec_backlog / 2)
}

#[cfg(test)]
mod tests;
