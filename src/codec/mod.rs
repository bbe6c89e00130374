//! Framing: the [`Packer`] trait, the packers netloom ships
//! ([`LengthPacker`], the default; [`SeqPacker`], the same with a sequence
//! number; [`TlvPacker`], another format with one),
//! and the [`reader`] that turns a connection's received bytes into frames
//! (partial frames, many frames per read, large frames).

mod fixed;
mod length;
mod packer;
pub(crate) mod reader;
mod seq;
mod tlv;

pub use length::LengthPacker;
pub(crate) use packer::{check_frame, implements_decoding};
pub use packer::{Message, Packer, Peek};
pub use seq::SeqPacker;
pub use tlv::TlvPacker;

use bytes::BytesMut;

use crate::error::PackError;

/// The packer a server runs with. The default [`LengthPacker`] is called
/// directly (inlined on the hot paths); any other through its vtable.
pub(crate) enum ServerPacker {
    /// The default packer.
    Length(LengthPacker),
    /// The application's packer.
    Custom(Box<dyn Packer>),
}

impl ServerPacker {
    /// Encode one message (see [`Packer::encode`]).
    #[inline]
    pub(crate) fn encode(
        &self,
        id: u32,
        seq: u32,
        body: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), PackError> {
        match self {
            ServerPacker::Length(p) => p.encode(id, seq, body, out),
            ServerPacker::Custom(p) => p.encode(id, seq, body, out),
        }
    }

    /// Frame a body written as it is (see [`Packer::encode_around`]).
    pub(crate) fn encode_around(
        &self,
        id: u32,
        seq: u32,
        body_len: usize,
        before: &mut BytesMut,
        after: &mut BytesMut,
    ) -> Result<bool, PackError> {
        self.as_dyn()
            .encode_around(id, seq, body_len, before, after)
    }

    /// The packer as a trait object.
    pub(crate) fn as_dyn(&self) -> &dyn Packer {
        match self {
            ServerPacker::Length(p) => p,
            ServerPacker::Custom(p) => &**p,
        }
    }
}
