//! MessagePack (rmp-serde) for handlers. Structs go as maps with their
//! field names (what other MessagePack peers, and hotpot's, expect).

use serde::{Deserialize, Serialize};

use super::{with_scratch, DecodeError};
use crate::dispatch::context::{Context, Session};
use crate::error::Result;

impl<'a> Context<'a> {
    /// The body decoded from MessagePack as a `T`, which may borrow from
    /// it. See [`json`](Self::json).
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the body is not MessagePack of type `T`.
    pub fn msgpack<T: Deserialize<'a>>(&self) -> std::result::Result<T, DecodeError> {
        let mut de = rmp_serde::Deserializer::from_read_ref(self.body);
        // rmp-serde's own bound (1 024 levels) overflows a loop thread's
        // stack in a debug build; serde_json's is 128.
        de.set_max_depth(MAX_DEPTH);
        T::deserialize(&mut de).map_err(|e| DecodeError::new("msgpack", self.id, e))
    }

    /// Answer this message with `value` encoded as MessagePack.
    ///
    /// # Errors
    ///
    /// As [`reply_json`](Self::reply_json).
    pub fn reply_msgpack<T: Serialize + ?Sized>(&self, id: u32, value: &T) -> Result<()> {
        with_scratch(|buf| encode(buf, value), |body| self.reply(id, body))
    }
}

impl Session<'_> {
    /// Send `value` encoded as MessagePack with message id `id`.
    ///
    /// # Errors
    ///
    /// As [`Context::reply_json`].
    pub fn send_msgpack<T: Serialize + ?Sized>(&self, id: u32, value: &T) -> Result<()> {
        with_scratch(|buf| encode(buf, value), |body| self.send(id, body))
    }
}

/// How deep a MessagePack body may nest (arrays and maps in each other).
const MAX_DEPTH: usize = 128;

fn encode<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> std::result::Result<(), String> {
    value
        .serialize(&mut rmp_serde::Serializer::new(buf).with_struct_map())
        .map_err(|e| e.to_string())
}
