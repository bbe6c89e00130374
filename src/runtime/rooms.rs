//! Rooms from any thread: [`ConnHandle::join`] / [`ConnHandle::leave`],
//! [`Hub::publish`] / [`Hub::publish_except`] and [`Hub::room_len`].
//!
//! A room's members live on the loops that own them (`conn::rooms`): a
//! publish is encoded once, then each loop queues the shared frame on its
//! own members, with no lock shared by the loops. From a loop's own thread
//! its part is done at once; other loops get it through their inboxes, in
//! order with everything else sent to them from the same thread (a join
//! handed over before a publish from one thread is in place for it).

use std::sync::Arc;

use bytes::Bytes;

use super::{with_current, Command, ConnHandle, Hub, LoopCore, Receipt, Reply, Runtime};
use crate::buf::Payload;
use crate::conn::rooms::check_name;
use crate::error::{Error, Result};
use crate::id::ConnId;

/// Join (`true`) or leave `room` for connection `id`, on its loop. From
/// the loop's own thread it is done now; else handed to the loop, which
/// answers `reply` (if any).
pub(crate) fn room_op(
    runtime: &Arc<Runtime>,
    id: ConnId,
    room: &str,
    join: bool,
    reply: Option<Reply<bool>>,
) -> Result<Option<bool>> {
    check_name(room)?;
    if id.server != runtime.tag {
        return Err(Error::Closed);
    }
    let apply = move |core: &LoopCore, room: &str| {
        if join {
            core.table.join_room(id, room)
        } else {
            core.table.leave_room(id, room)
        }
    };
    if let Some(done) = with_current(runtime, id.loop_index(), |core| apply(core, room)) {
        return done.map(Some);
    }
    if runtime.is_shut_down() {
        return Err(Error::ShutDown);
    }
    let room: Arc<str> = Arc::from(room);
    // The name is what the job holds: charged to the inbox like a body.
    let bytes = room.len();
    let job = Box::new(move |core: &LoopCore| {
        let done = apply(core, &room);
        if let Some(reply) = reply {
            reply.send(done);
        }
    });
    runtime.push(id.loop_index(), bytes, Command::Run { bytes, job })?;
    Ok(None)
}

impl ConnHandle {
    /// Make the connection a member of `room` (see [`Hub::publish`]).
    ///
    /// The room exists as long as it has members; the membership ends at
    /// [`leave`](Self::leave) or when the connection closes (before
    /// `on_close` runs). On the connection's own loop thread it is done at
    /// once; from another thread it is handed to the loop, and takes
    /// effect before anything this thread hands that loop afterwards (a
    /// publish, a send). The receipt says `true` if the connection was not
    /// a member yet, `false` if it was; drop it if you need not know.
    ///
    /// A handle whose connection closed (also one whose slot another
    /// connection took since) joins nothing: [`Error::Closed`].
    ///
    /// # Errors
    ///
    /// Through the receipt: [`Error::RoomName`] (empty, or longer than
    /// [`MAX_ROOM_NAME`](crate::MAX_ROOM_NAME)), [`Error::Closed`],
    /// [`Error::TooManyRooms`], [`Error::InboxFull`], [`Error::ShutDown`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn f(handle: netloom::ConnHandle, hub: netloom::Hub) -> netloom::Result<()> {
    /// let _ = handle.join("lobby"); // from any thread; the receipt may be dropped
    /// hub.publish("lobby", 7, b"someone joined")?;
    /// # Ok(())
    /// # }
    /// # let _ = f;
    /// ```
    pub fn join(&self, room: &str) -> Receipt<bool> {
        self.room_receipt(room, true)
    }

    /// End the connection's membership of `room`. The receipt says `true`
    /// if it was a member. A stale handle (its connection closed, its slot
    /// perhaps another's now) is a member of nothing: it never ends the
    /// memberships of the slot's next occupant.
    ///
    /// # Errors
    ///
    /// Through the receipt: [`Error::RoomName`], [`Error::InboxFull`],
    /// [`Error::ShutDown`].
    pub fn leave(&self, room: &str) -> Receipt<bool> {
        self.room_receipt(room, false)
    }

    fn room_receipt(&self, room: &str, join: bool) -> Receipt<bool> {
        let (receipt, reply) = Receipt::pending(self.runtime.clone(), self.id.loop_index());
        match room_op(&self.runtime, self.id, room, join, Some(reply)) {
            Ok(Some(done)) => Receipt::ready(Ok(done)),
            Ok(None) => receipt,
            Err(e) => Receipt::ready(Err(e)),
        }
    }
}

impl Hub {
    /// Send one message to every member of `room`, on every loop: encoded
    /// once per protocol the server speaks and shared by every member's
    /// queue, as a broadcast is. A member over its high-water mark misses
    /// it (counted in `Stats::send_errors`). A room with no member is no
    /// error: nobody gets it.
    ///
    /// Returns once every loop has it; delivery is asynchronous. From a
    /// handler, the members on the handler's own loop have it queued
    /// before this returns.
    ///
    /// # Errors
    ///
    /// [`Error::RoomName`], [`Error::Pack`] if the packer rejects the
    /// message (nothing sent), [`Error::ShutDown`], or
    /// [`Error::InboxFull`] if a loop's inbox is full (the other loops
    /// still get it).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn handler(ctx: &mut netloom::Context<'_>) -> netloom::Result<()> {
    /// ctx.join("lobby")?;
    /// ctx.hub().publish_except("lobby", ctx.id(), 20, ctx.body())?;
    /// # Ok(())
    /// # }
    /// # let _ = netloom::Server::builder().route(1, handler);
    /// ```
    pub fn publish(&self, room: &str, id: u32, body: impl AsRef<[u8]>) -> Result<()> {
        self.publish_payload(room, id, Payload::Slice(body.as_ref()), None)
    }

    /// Like [`publish`](Self::publish), for a body the application
    /// already holds as [`Bytes`]: a large one (16 KiB or more) is shared
    /// by every member without being copied, when the packer can frame
    /// it so.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub fn publish_bytes(&self, room: &str, id: u32, body: Bytes) -> Result<()> {
        self.publish_payload(room, id, Payload::Shared(body), None)
    }

    /// Like [`publish`](Self::publish), to every member but `except`
    /// (typically the sender of what is relayed; a connection that is not
    /// a member changes nothing).
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    pub fn publish_except(
        &self,
        room: &str,
        except: ConnId,
        id: u32,
        body: impl AsRef<[u8]>,
    ) -> Result<()> {
        self.publish_payload(room, id, Payload::Slice(body.as_ref()), Some(except))
    }

    fn publish_payload(
        &self,
        room: &str,
        id: u32,
        body: Payload<'_>,
        except: Option<ConnId>,
    ) -> Result<()> {
        check_name(room)?;
        let runtime = &self.runtime;
        if runtime.is_shut_down() {
            return Err(runtime.count_send_error(Error::ShutDown));
        }
        let encoded = runtime
            .wire
            .encode_all(id, 0, &body, true)
            .map_err(|e| runtime.count_send_error(Error::Pack(e)))?;
        let shared_room: Arc<str> = Arc::from(room);
        let mut result = Ok(());
        for index in 0..runtime.loops.len() {
            let local = with_current(runtime, index, |core| {
                core.table.publish_room(room, &encoded, except);
            });
            if local.is_some() {
                continue;
            }
            let (room, encoded) = (shared_room.clone(), encoded.clone());
            let bytes = encoded.len();
            let job = Box::new(move |core: &LoopCore| {
                core.table.publish_room(&room, &encoded, except);
            });
            if let Err(e) = runtime.push(index, bytes, Command::Run { bytes, job }) {
                result = Err(e);
            }
        }
        result
    }

    /// How many connections are members of `room`, summed over the loops.
    ///
    /// A snapshot: each loop's count as it last updated it, read without
    /// waiting for the loop. A join or leave handed to a loop from another
    /// thread is counted once that loop has applied it (wait for its
    /// receipt to be sure); a connection that closes is uncounted when
    /// its loop removes it, before its `on_close` runs. An invalid name
    /// has no members.
    pub fn room_len(&self, room: &str) -> usize {
        let loops = self.runtime.loops.iter();
        loops.map(|l| l.roster.rooms.get(room)).sum()
    }

    /// Every room with members on this server, with its member count
    /// summed over the loops: a snapshot, as [`room_len`](Self::room_len),
    /// in no particular order.
    ///
    /// ```
    /// # fn f(hub: netloom::Hub) {
    /// for (room, members) in hub.rooms() {
    ///     println!("{room}: {members}");
    /// }
    /// # }
    /// # let _ = f;
    /// ```
    pub fn rooms(&self) -> Vec<(String, usize)> {
        let mut all: std::collections::HashMap<Arc<str>, usize> = Default::default();
        for l in &self.runtime.loops {
            for (room, n) in l.roster.rooms.all() {
                *all.entry(room).or_default() += n;
            }
        }
        all.into_iter().map(|(r, n)| (r.to_string(), n)).collect()
    }

    /// Moves whenever a room appears on a loop or leaves it (what the
    /// cluster's subscriber watches).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn room_changes(&self) -> u64 {
        let loops = self.runtime.loops.iter();
        loops.fold(0, |sum, l| sum.wrapping_add(l.roster.rooms.changes()))
    }
}
