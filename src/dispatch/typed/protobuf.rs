//! Protocol Buffers (prost) for handlers.

use super::{with_scratch, DecodeError};
use crate::dispatch::context::{Context, Session};
use crate::error::Result;

impl Context<'_> {
    /// The body decoded as the protobuf message `T`.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the body is not an encoded `T`.
    pub fn protobuf<T: prost::Message + Default>(&self) -> std::result::Result<T, DecodeError> {
        T::decode(self.body).map_err(|e| DecodeError::new("protobuf", self.id, e))
    }

    /// Answer this message with the protobuf message `value`.
    ///
    /// # Errors
    ///
    /// As [`Session::send`].
    pub fn reply_protobuf<T: prost::Message>(&self, id: u32, value: &T) -> Result<()> {
        with_scratch(|buf| encode(buf, value), |body| self.reply(id, body))
    }
}

impl Session<'_> {
    /// Send the protobuf message `value` with message id `id`.
    ///
    /// # Errors
    ///
    /// As [`Session::send`].
    pub fn send_protobuf<T: prost::Message>(&self, id: u32, value: &T) -> Result<()> {
        with_scratch(|buf| encode(buf, value), |body| self.send(id, body))
    }
}

fn encode<T: prost::Message>(buf: &mut Vec<u8>, value: &T) -> std::result::Result<(), String> {
    value.encode(buf).map_err(|e| e.to_string())
}
