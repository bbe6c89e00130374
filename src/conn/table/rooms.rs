//! Rooms on the loop's table: join and leave for a connection the loop
//! owns (checked by its whole id), a message encoded once for a room's
//! members here, and the end of a closed connection's memberships.

use super::ConnTable;
use crate::conn::rooms::check_name;
use crate::error::{Error, Result};
use crate::id::ConnId;
use crate::transport::Encoded;

impl ConnTable {
    /// Make connection `id` a member of `room`; true if it was not yet.
    ///
    /// # Errors
    ///
    /// [`Error::RoomName`] for a bad name, [`Error::Closed`] if `id` is
    /// not an open connection of this loop (closing, gone, stale, another
    /// loop's or server's), [`Error::TooManyRooms`].
    pub(crate) fn join_room(&self, id: ConnId, room: &str) -> Result<bool> {
        check_name(room)?;
        if self.is_closing(id) {
            return Err(Error::Closed);
        }
        self.rooms.borrow_mut().join(id, room, &self.roster.rooms)
    }

    /// End connection `id`'s membership of `room`; true if it was a
    /// member. A stale id is a member of nothing: the slot's next
    /// occupant keeps its rooms.
    ///
    /// # Errors
    ///
    /// [`Error::RoomName`] for a bad name.
    pub(crate) fn leave_room(&self, id: ConnId, room: &str) -> Result<bool> {
        check_name(room)?;
        Ok(self.rooms.borrow_mut().leave(id, room, &self.roster.rooms))
    }

    /// Queue `encoded` on every member of `room` on this loop but
    /// `except`; returns how many members it was queued for (or missed,
    /// counted: closing, over the high-water mark). The members are
    /// copied out first: no borrow of the rooms is held while the
    /// message is queued (a dial profile's packer is user code).
    pub(crate) fn publish_room(
        &self,
        room: &str,
        encoded: &Encoded,
        except: Option<ConnId>,
    ) -> usize {
        let members = self.rooms.borrow().members(room, except);
        if !members.is_empty() {
            self.send_encoded(&members, encoded);
        }
        members.len()
    }

    /// A connection is removed for good: it leaves every room.
    pub(super) fn leave_all_rooms(&self, id: ConnId) {
        self.rooms.borrow_mut().remove_conn(id, &self.roster.rooms);
    }
}
