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

#[cfg(test)]
mod tests {
    use super::*;

    /// A packer that frames only by copying (the trait's default).
    struct CopyOnly;

    impl Packer for CopyOnly {
        fn decode(&self, _: &mut BytesMut) -> Result<Option<Message>, PackError> {
            Ok(None)
        }

        fn encode(&self, _: u32, _: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError> {
            out.extend_from_slice(body);
            Ok(())
        }
    }

    #[test]
    fn encode_around_says_whether_the_packer_frames_a_body_in_place() {
        let (mut before, mut after) = (BytesMut::new(), BytesMut::new());
        let length = ServerPacker::Length(LengthPacker::default());
        assert_eq!(
            length.encode_around(7, 0, 2, &mut before, &mut after),
            Ok(true)
        );
        assert_eq!(&before[..], b"\x02\x00\x00\x00\x07\x00\x00\x00");
        before.clear();
        let custom = ServerPacker::Custom(Box::new(CopyOnly));
        assert_eq!(
            custom.encode_around(7, 0, 2, &mut before, &mut after),
            Ok(false)
        );
        assert!(before.is_empty() && after.is_empty());
    }
}
