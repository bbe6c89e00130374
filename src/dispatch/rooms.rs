//! Rooms from a handler or hook: [`Session::join`] and [`Session::leave`]
//! (the runtime's room operations, for the session's own connection).

use crate::error::Result;
use crate::runtime::exec::Place;
use crate::runtime::room_op;

use super::context::Session;

impl Session<'_> {
    /// Make this connection a member of `room`, for
    /// [`Hub::publish`](crate::Hub::publish). The membership ends at
    /// [`leave`](Self::leave) or when the connection closes (before
    /// `on_close` runs); joining a room twice is one membership.
    ///
    /// On the loop (the default) it is done before this returns. In a
    /// handler on a worker or the logic thread it is handed to the loop
    /// and done there shortly (use [`ConnHandle::join`](crate::ConnHandle::join)'s
    /// receipt to wait for it).
    ///
    /// # Errors
    ///
    /// [`Error::RoomName`](crate::Error::RoomName) (empty, or longer than
    /// [`MAX_ROOM_NAME`](crate::MAX_ROOM_NAME)),
    /// [`Error::TooManyRooms`](crate::Error::TooManyRooms),
    /// [`Error::Closed`](crate::Error::Closed) if the connection is closing;
    /// off the loop also [`Error::InboxFull`](crate::Error::InboxFull) and
    /// [`Error::ShutDown`](crate::Error::ShutDown).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn handler(ctx: &mut netloom::Context<'_>) -> netloom::Result<()> {
    /// let room = std::str::from_utf8(ctx.body()).unwrap_or("");
    /// ctx.join(room)?;
    /// # Ok(())
    /// # }
    /// # let _ = netloom::Server::builder().route(1, handler);
    /// ```
    pub fn join(&self, room: &str) -> Result<()> {
        self.room_op(room, true)
    }

    /// End this connection's membership of `room` (nothing if it was not
    /// a member). Done at once on the loop, handed to it elsewhere, as
    /// [`join`](Self::join).
    ///
    /// # Errors
    ///
    /// [`Error::RoomName`](crate::Error::RoomName); off the loop also
    /// [`Error::InboxFull`](crate::Error::InboxFull) and
    /// [`Error::ShutDown`](crate::Error::ShutDown).
    pub fn leave(&self, room: &str) -> Result<()> {
        self.room_op(room, false)
    }

    fn room_op(&self, room: &str, join: bool) -> Result<()> {
        let runtime = match self.at {
            Place::Loop(core) if join => return core.table.join_room(self.id, room).map(drop),
            Place::Loop(core) => return core.table.leave_room(self.id, room).map(drop),
            Place::Off(off) => off.runtime,
        };
        room_op(runtime, self.id, room, join, None).map(drop)
    }
}
