//! The loop's half of the execution models (`Exec::Pool`, `Exec::Single`):
//! what a connection's work looks like on its way to a worker and back
//! ([`Item`], [`Task`], [`Outcome`]), each connection's queue of work on
//! its loop ([`Lanes`]), and where user code runs ([`Place`]: on the loop,
//! or off it with an [`Off`] that collects what it sends). Which route
//! runs where, and the workers themselves, are the application's
//! (`dispatch::exec`).
//!
//! A connection whose work is out at a worker has lent it its user data
//! (`flag::EXEC`); everything for that connection that would need the
//! data (its next messages, `ConnHandle::run`, its timers, `on_close`)
//! waits in its lane until the worker gives the data back. So one
//! connection's work runs one item at a time, in arrival order, on
//! whichever thread, while other connections' work runs in parallel.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustc_hash::FxHashMap;

use super::{LoopCore, Runtime};
use crate::buf::Payload;
use crate::error::CloseReason;
use crate::ext::{Extensions, StateMap};
use crate::id::ConnId;
use crate::transport::Goodbye;

/// Where an item runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// On the connection's loop.
    Loop,
    /// On the server's worker pool.
    Pool,
    /// On the server's logic thread.
    Single,
}

/// Where user code runs, and what it may reach there.
#[derive(Clone, Copy)]
pub(crate) enum Place<'a> {
    /// On the connection's own loop: the table, directly.
    Loop(&'a LoopCore),
    /// On a worker or the logic thread.
    Off(&'a Off<'a>),
}

impl<'a> Place<'a> {
    pub(crate) fn runtime(self) -> &'a Arc<Runtime> {
        match self {
            Place::Loop(core) => &core.runtime,
            Place::Off(off) => off.runtime,
        }
    }

    pub(crate) fn state(self) -> &'a StateMap {
        match self {
            Place::Loop(core) => &core.state,
            Place::Off(off) => off.state,
        }
    }
}

/// What user code off the loop sent its own connection, in order: given
/// to the loop with the task's outcome (or earlier, between items).
pub(crate) enum Outgoing {
    Send { id: u32, seq: u32, body: Body },
    Close(CloseReason, Option<Goodbye>),
}

/// The body of an [`Outgoing::Send`].
pub(crate) enum Body {
    /// A range of the outcome's `bodies`.
    Copied(usize, usize),
    Shared(Bytes),
}

impl Body {
    /// The body's bytes, `bodies` being its outcome's.
    pub(crate) fn bytes(self, bodies: &Bytes) -> Bytes {
        match self {
            Body::Copied(start, end) => bodies.slice(start..end),
            Body::Shared(b) => b,
        }
    }
}

/// The context of one task off the loop: what its user code sent, in
/// order, with small bodies copied into one buffer (one allocation a
/// task, not one a reply).
pub(crate) struct Off<'a> {
    pub(crate) runtime: &'a Arc<Runtime>,
    pub(crate) state: &'a StateMap,
    out: RefCell<Vec<Outgoing>>,
    bodies: RefCell<BytesMut>,
    /// The task's connection asked to close: its remaining items are
    /// dropped, and its sends refused.
    pub(crate) closed: Cell<bool>,
    /// The connection's once-per-connection log flags (`flag::WARNED`):
    /// as they were when the task left the loop, then as its code set them.
    pub(crate) warned: Cell<u16>,
}

impl<'a> Off<'a> {
    /// For a task of `items` items, its connection's log flags `warned`.
    pub(crate) fn new(
        runtime: &'a Arc<Runtime>,
        state: &'a StateMap,
        items: usize,
        warned: u16,
    ) -> Self {
        Off {
            runtime,
            state,
            out: RefCell::new(Vec::with_capacity(items)),
            bodies: RefCell::new(BytesMut::new()),
            closed: Cell::new(false),
            warned: Cell::new(warned),
        }
    }

    /// Whether `bit` (a `flag::*_WARNED`) is set for the first time.
    pub(crate) fn first_warning(&self, bit: u16) -> bool {
        let mut warned = self.warned.get();
        let first = crate::conn::flag::first(&mut warned, bit);
        self.warned.set(warned);
        first
    }

    pub(crate) fn send(&self, id: u32, seq: u32, body: Payload<'_>) {
        let body = match body {
            Payload::Shared(b) => Body::Shared(b),
            Payload::Slice(b) => {
                let mut bodies = self.bodies.borrow_mut();
                if bodies.capacity() == 0 {
                    // Room for as many replies of this size as there are
                    // items (one allocation for the task's usual case), up
                    // to what `take` keeps without trimming.
                    let items = self.out.borrow().capacity().max(1);
                    bodies.reserve(b.len().saturating_mul(items).min(SLACK));
                }
                let start = bodies.len();
                bodies.extend_from_slice(b);
                Body::Copied(start, bodies.len())
            }
        };
        self.out.borrow_mut().push(Outgoing::Send { id, seq, body });
    }

    pub(crate) fn close(&self, reason: CloseReason, goodbye: Option<Goodbye>) {
        self.closed.set(true);
        self.out.borrow_mut().push(Outgoing::Close(reason, goodbye));
    }

    pub(crate) fn has_out(&self) -> bool {
        !self.out.borrow().is_empty()
    }

    /// What was sent so far, taken: the sends, and the buffer their copied
    /// bodies lie in.
    pub(crate) fn take(&self) -> (Vec<Outgoing>, Bytes) {
        let bodies = trimmed(std::mem::take(&mut *self.bodies.borrow_mut()));
        (std::mem::take(&mut *self.out.borrow_mut()), bodies)
    }
}

/// The most room a buffer of copied bodies may have beyond its bodies:
/// they wait in write queues (or lanes) that count only the bodies.
pub(crate) const SLACK: usize = 16 << 10;

/// `buf` frozen, copied into a buffer of its size first if it has more
/// than [`SLACK`] to spare (and more than its size): what its slices pin
/// stays within twice what they count, plus `SLACK`.
pub(crate) fn trimmed(buf: BytesMut) -> Bytes {
    let spare = buf.capacity() - buf.len();
    if spare > SLACK && spare > buf.len() {
        Bytes::copy_from_slice(&buf)
    } else {
        buf.freeze()
    }
}

/// Code that needs a connection's session (`ConnHandle::run`, a timer),
/// queued behind its messages: called with the place it runs, the
/// connection's id, peer and profile, and its data.
pub(crate) type WorkFn =
    Box<dyn for<'a> FnOnce(Place<'a>, ConnId, SocketAddr, u8, &'a mut Extensions) + Send>;

/// One unit of a connection's work.
pub(crate) enum Item {
    /// A message for its route.
    Message { id: u32, seq: u32, body: Bytes },
    /// Code run with the session.
    Work(WorkFn),
}

/// Each item's floor in the backlog's count (what it holds besides its
/// body).
pub(crate) const ITEM_COST: usize = 64;

/// A connection's work handed to a worker, with its data.
pub(crate) struct Task {
    pub(crate) conn: ConnId,
    pub(crate) peer: SocketAddr,
    pub(crate) profile: u8,
    pub(crate) data: Extensions,
    pub(crate) items: Vec<Item>,
    /// The backlog bytes the items count for (given back with the outcome).
    pub(crate) held: usize,
    /// The connection's once-per-connection log flags (`flag::WARNED`).
    pub(crate) warned: u16,
}

/// What a worker gives back: the data, and what the items sent.
pub(crate) struct Outcome {
    pub(crate) conn: ConnId,
    /// `None` for sends given early, between items.
    pub(crate) data: Option<Extensions>,
    pub(crate) out: Vec<Outgoing>,
    /// What the copied bodies of `out` lie in.
    pub(crate) bodies: Bytes,
    pub(crate) held: usize,
    /// The log flags the task's code set (merged into the connection's).
    pub(crate) warned: u16,
}

/// An item waiting in its lane: where it runs, and what it counts.
pub(crate) struct Queued {
    pub(crate) item: Item,
    pub(crate) target: Target,
    pub(crate) cost: usize,
}

/// One connection's queue on its loop.
#[derive(Default)]
pub(crate) struct Lane {
    pub(crate) items: VecDeque<Queued>,
    /// Backlog bytes: queued here and out at a worker.
    pub(crate) held: usize,
    /// The connection was closed while its data was out: `on_close` runs
    /// (with this reason, peer and profile) when the data comes back.
    pub(crate) closed: Option<(CloseReason, SocketAddr, u8)>,
    /// What the task out at an executor counted when its link was lost
    /// and reconnected: no longer in `held` (the new session starts under
    /// the bound), so not given back with the outcome.
    pub(crate) forgotten: usize,
    /// The task out at an executor is the lost session's (its link
    /// reconnected meanwhile): what it sends is dropped, not sent on the
    /// new link.
    pub(crate) stale_out: bool,
}

/// A loop's lanes, by connection.
#[derive(Default)]
pub(crate) struct Lanes {
    map: FxHashMap<ConnId, Lane>,
    /// Lanes given work from outside a read (a timer, `ConnHandle::run`):
    /// the loop moves them on at the end of its turn.
    pub(crate) to_pump: Vec<ConnId>,
    /// Empty queues of removed lanes, to reuse.
    spare: Vec<VecDeque<Queued>>,
}

/// How many spare queues a loop keeps, and the largest kept.
const SPARES: usize = 256;
const SPARE_CAPACITY: usize = 64;

impl Lanes {
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn get(&mut self, id: ConnId) -> Option<&mut Lane> {
        self.map.get_mut(&id)
    }

    /// The lane of connection `id`, made if it has none (its queue from
    /// the spares where one is left).
    pub(crate) fn lane(&mut self, id: ConnId) -> &mut Lane {
        let spare = &mut self.spare;
        self.map.entry(id).or_insert_with(|| Lane {
            items: spare.pop().unwrap_or_default(),
            ..Lane::default()
        })
    }

    /// Queue `queued` for connection `id`.
    pub(crate) fn push(&mut self, id: ConnId, queued: Queued) {
        let lane = self.lane(id);
        lane.held += queued.cost;
        lane.items.push_back(queued);
    }

    /// [`push`](Self::push), to be moved on by the loop at the end of its
    /// turn.
    pub(crate) fn defer(&mut self, id: ConnId, queued: Queued) {
        self.push(id, queued);
        self.to_pump.push(id);
    }

    /// Connection `id` closed while its data was out: note why (for its
    /// `on_close`, run when the data comes back), and give back the
    /// messages that waited behind (to be dropped outside the borrow); its
    /// other work (`ConnHandle::run`) stays, to run before `on_close`.
    pub(crate) fn push_closed(
        &mut self,
        id: ConnId,
        closed: (CloseReason, SocketAddr, u8),
    ) -> Vec<Queued> {
        self.lane(id).closed = Some(closed);
        self.drop_messages(id)
    }

    /// The messages waiting in `id`'s lane, taken out (to be dropped
    /// outside the borrow); its other work stays.
    pub(crate) fn drop_messages(&mut self, id: ConnId) -> Vec<Queued> {
        let Some(lane) = self.map.get_mut(&id) else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        for q in std::mem::take(&mut lane.items) {
            match q.item {
                Item::Message { .. } => dropped.push(q),
                Item::Work(_) => lane.items.push_back(q),
            }
        }
        let freed: usize = dropped.iter().map(|q| q.cost).sum();
        lane.held = lane.held.saturating_sub(freed);
        dropped
    }

    /// Connection `id` lost its link and reconnects: the messages of the
    /// lost session that wait are given back (to be dropped outside the
    /// borrow), as a close drops them; its other work (timers,
    /// `ConnHandle::run`) stays queued for the connection. What a task out
    /// at an executor counts is forgotten: the new session starts under
    /// the bound (the old task's items are freed when it ends).
    pub(crate) fn new_session(&mut self, id: ConnId, out: bool) -> Vec<Queued> {
        if out {
            self.lane(id).stale_out = true;
        }
        let dropped = self.drop_messages(id);
        let Some(lane) = self.map.get_mut(&id) else {
            return dropped;
        };
        let kept: usize = lane.items.iter().map(|q| q.cost).sum();
        lane.forgotten += lane.held.saturating_sub(kept);
        lane.held = kept;
        dropped
    }

    /// The task out for connection `id`, which counted `held`, is back:
    /// what it counts no longer (unless forgotten already).
    pub(crate) fn give_back(&mut self, id: ConnId, held: usize) {
        if let Some(lane) = self.map.get_mut(&id) {
            let forgotten = held.min(lane.forgotten);
            lane.forgotten -= forgotten;
            lane.held = lane.held.saturating_sub(held - forgotten);
        }
    }

    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Lane> {
        self.map.remove(&id)
    }

    /// Remove the lane of `id`, which is empty, keeping its queue's
    /// allocation for the next lane (lanes come and go with every burst
    /// of work).
    pub(crate) fn retire(&mut self, id: ConnId) {
        if let Some(lane) = self.map.remove(&id) {
            let small = lane.items.capacity() <= SPARE_CAPACITY;
            if lane.items.is_empty() && small && self.spare.len() < SPARES {
                self.spare.push(lane.items);
            }
        }
    }

    /// Connections closed whose data has not come back (the loop waits
    /// for them before it exits).
    pub(crate) fn awaiting_data(&self) -> usize {
        self.map.values().filter(|l| l.closed.is_some()).count()
    }

    /// Every lane, taken (the loop exits).
    pub(crate) fn take_all(&mut self) -> Vec<(ConnId, Lane)> {
        self.map.drain().collect()
    }
}
