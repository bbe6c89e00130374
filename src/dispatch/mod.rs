//! The application, kept out of the plumbing: routes ([`router`]),
//! middleware ([`middleware`]), what handlers see ([`context`]), hooks
//! ([`hooks`]), and [`App::dispatch`], which runs a read's messages
//! through them.

pub(crate) mod context;
mod deprecated;
pub(crate) mod exec;
pub(crate) mod hooks;
pub(crate) mod middleware;
mod rooms;
pub(crate) mod router;
mod run;
pub(crate) mod timers;
pub(crate) mod typed;
#[cfg(feature = "ws")]
mod ws;

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use bytes::Bytes;

use crate::codec::reader::Batch;
use crate::codec::Message;
use crate::config::UnknownIdPolicy;
use crate::conn::flag;
use crate::conn::requests::Matched;
use crate::error::{panic_message, CloseReason, Error};
use crate::ext::{Extensions, StateMap};
use crate::id::ConnId;
use crate::runtime::exec::{Place, Target};
use crate::runtime::LoopCore;
use crate::stats::Counters;
use context::{Context, Session};
use hooks::Hooks;
use router::{Route, Router};

/// The application a server runs: routes with their unknown-id policy
/// (the server's, then each dial profile's), hooks, and the shared state
/// (each loop's `LoopCore` holds it too, so that a `Session` reaches it
/// through the loop it already points to).
pub(crate) struct App {
    /// The server's own routes (profile 0).
    pub(crate) router: Router,
    pub(crate) unknown_id: UnknownIdPolicy,
    /// Each dial profile's routes: index `i` is profile `i + 1`.
    pub(crate) profiles: Vec<Routing>,
    pub(crate) hooks: Hooks,
    /// `Builder::every` and `Builder::cron`.
    pub(crate) timers: timers::AppTimers,
    pub(crate) state: Arc<StateMap>,
    /// The worker pool and logic thread, where routes run off the loop.
    pub(crate) exec: exec::Executors,
    /// What becomes of a body that does not decode as its route's type.
    pub(crate) bad_bodies: typed::BadBodies,
}

/// A dial profile's routes and unknown-id policy. Its middleware is in
/// its routes' chains; the server's global middleware and groups are not.
#[derive(Default)]
pub(crate) struct Routing {
    pub(crate) router: Router,
    pub(crate) unknown_id: UnknownIdPolicy,
}

impl App {
    /// Run each message of `batch` through its route, in order, catching
    /// panics. Stops at the first message after the connection starts
    /// closing.
    pub(crate) fn dispatch(&self, core: &LoopCore, key: usize, generation: u32, batch: &Batch) {
        let me = core.table.id(key, generation);
        let Some((awaiting, profile)) = core.table.batch_state(me) else {
            return;
        };
        let Some((router, unknown_id)) = self.routing(profile) else {
            return;
        };
        // Work of this connection already waits for (or is at) an
        // executor: every message goes behind it.
        let mut queued =
            !core.lanes.borrow().is_empty() && core.lanes.borrow_mut().get(me).is_some();
        let mut intake = exec::Intake::default();
        lend(core, me, |id, peer, _, data| {
            // One `Context` for the whole batch: per message only its id,
            // seq and body change.
            let empty = Bytes::new();
            let mut ctx = Context {
                session: Session {
                    at: Place::Loop(core),
                    id,
                    peer,
                    profile,
                    data,
                },
                id: 0,
                seq: 0,
                body: &[],
                source: &empty,
                source_alloc: 0,
                values: Extensions::new(),
            };
            let mut closings = core.table.closings();
            for (i, (msg_id, seq, body, source, alloc)) in batch.iter().enumerate() {
                // Something started closing since the last look: is it
                // this one?
                if core.table.closings() != closings {
                    closings = core.table.closings();
                    if core.table.is_closing(me) {
                        break;
                    }
                }
                if awaiting && seq != 0 && reply(core, key, generation, msg_id, seq, body, source) {
                    continue;
                }
                let route = router.get(msg_id);
                let target = route.map_or(Target::Loop, Route::target);
                if queued || target != Target::Loop {
                    queued = true;
                    let left = batch.len() - i;
                    intake.take((msg_id, seq), body, (source, alloc), target, left);
                    continue;
                }
                ctx.id = msg_id;
                ctx.seq = seq;
                ctx.body = body;
                ctx.source = source;
                ctx.source_alloc = alloc;
                if !ctx.values.is_empty() {
                    ctx.values.clear();
                }
                handle(route, unknown_id, &self.bad_bodies, &mut ctx);
            }
        });
        if queued {
            intake.queue(core, me);
            self.pump(core, me);
        }
    }

    /// The routes and unknown-id policy of profile `profile`.
    /// A batch for a connection whose handlers are behind (a UDP session
    /// over its backlog): only the replies to its requests are taken (they
    /// need no handler); returns how many other messages were dropped.
    pub(crate) fn replies_only(
        &self,
        core: &LoopCore,
        key: usize,
        generation: u32,
        batch: &Batch,
    ) -> usize {
        let mut dropped = 0;
        for (msg_id, seq, body, source, _) in batch.iter() {
            if seq == 0 || !reply(core, key, generation, msg_id, seq, body, source) {
                dropped += 1;
            }
        }
        dropped
    }

    pub(crate) fn routing(&self, profile: u8) -> Option<(&Router, UnknownIdPolicy)> {
        match (profile as usize).checked_sub(1) {
            None => Some((&self.router, self.unknown_id)),
            Some(i) => self.profiles.get(i).map(|p| (&p.router, p.unknown_id)),
        }
    }
}

/// Run the message in `ctx` through `route` (its route, if it has one),
/// wherever `ctx` runs.
#[inline]
fn handle(
    route: Option<&Route>,
    unknown_id: UnknownIdPolicy,
    bad_bodies: &typed::BadBodies,
    ctx: &mut Context<'_>,
) {
    let msg_id = ctx.id;
    let Some(route) = route else {
        Counters::add(&ctx.session.counters().unknown_ids, 1);
        match unknown_id {
            UnknownIdPolicy::Drop => {
                let (id, peer) = (ctx.session.id, ctx.session.peer);
                log::debug!("conn {id} ({peer}): no route for message id {msg_id}; dropped")
            }
            UnknownIdPolicy::Close => {
                let reason = CloseReason::UnknownId(msg_id);
                ctx.session.close_for(reason, None)
            }
        }
        return;
    };
    let result = catch_unwind(AssertUnwindSafe(|| route.call(ctx)));
    let (id, peer) = (&ctx.session.id, &ctx.session.peer);
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is::<typed::DecodeError>() => {
            if let Some(e) = e.downcast_ref::<typed::DecodeError>() {
                bad_bodies.handle(ctx, e);
            }
        }
        Ok(Err(e)) => {
            Counters::add(&ctx.session.counters().handler_errors, 1);
            // A peer that does not read makes every reply fail: say so
            // once per connection, not once per message.
            let refused = matches!(e.downcast_ref::<Error>(), Some(Error::BufferFull));
            if refused && !ctx.session.first_warning(flag::SEND_WARNED) {
                log::debug!("conn {id} ({peer}): handler for message {msg_id} failed: {e}");
            } else if refused {
                log::warn!(
                    "conn {id} ({peer}): handler for message {msg_id} failed: {e} \
                     (further refused sends on this connection are logged at debug)"
                );
            } else {
                log::warn!("conn {id} ({peer}): handler for message {msg_id} failed: {e}");
            }
        }
        Err(panic) => {
            log::error!(
                "conn {id} ({peer}): handler for message {msg_id} panicked: {}",
                panic_message(&*panic)
            );
            ctx.session.close_for(CloseReason::HandlerPanic, None);
        }
    }
}

/// A message that answers one of the connection's requests goes to that
/// request (not through the routes); a late one is counted and dropped.
/// Returns whether the message was consumed.
fn reply(
    core: &LoopCore,
    key: usize,
    generation: u32,
    id: u32,
    seq: u32,
    body: &[u8],
    source: &Bytes,
) -> bool {
    let matched = core
        .table
        .requests
        .borrow_mut()
        .matched(key, generation, seq);
    match matched {
        Matched::Reply(sink) => {
            let body = source.slice_ref(body);
            core.table.deliver(sink, Ok(Message { id, seq, body }));
            true
        }
        Matched::Late => {
            Counters::add(&core.table.counters().late_replies, 1);
            log::debug!(
                "conn {}: reply {seq} came after its request timed out; dropped",
                core.table.id(key, generation)
            );
            true
        }
        Matched::Unmatched => false,
    }
}

/// Run `f` with a [`Session`] for the connection at `key` of `generation`
/// (`None` if it is gone).
pub(crate) fn with_session<R>(
    core: &LoopCore,
    key: usize,
    generation: u32,
    f: impl FnOnce(&mut Session<'_>) -> R,
) -> Option<R> {
    with_session_of(core, core.table.id(key, generation), f)
}

/// Run `f` with a [`Session`] for the connection `id` names (`None` if it
/// is gone, or `id` is stale or another loop's).
pub(crate) fn with_session_of<R>(
    core: &LoopCore,
    id: ConnId,
    f: impl FnOnce(&mut Session<'_>) -> R,
) -> Option<R> {
    lend(core, id, |id, peer, profile, data| {
        f(&mut Session {
            at: Place::Loop(core),
            id,
            peer,
            profile,
            data,
        })
    })
}

/// Lend the connection's user data to `f`: it is taken out of the table
/// meanwhile, so `f` (user code) may call back into the loop, and put back
/// after, unless the connection was removed meanwhile.
fn lend<R>(
    core: &LoopCore,
    id: ConnId,
    f: impl FnOnce(ConnId, SocketAddr, u8, &mut Extensions) -> R,
) -> Option<R> {
    let table = &core.table;
    let (mut data, peer, profile) = {
        let mut slab = table.conns.borrow_mut();
        let (_, conn) = table.lookup(&mut slab, id)?;
        (std::mem::take(&mut conn.data), conn.peer, conn.profile)
    };
    table.debug_assert_unborrowed("a handler or hook");
    let r = f(id, peer, profile, &mut data);
    if let Some((_, conn)) = table.lookup(&mut table.conns.borrow_mut(), id) {
        conn.data = data;
    }
    Some(r)
}
