//! [`SeqPacker`]: the default packer's frame with a sequence number, so
//! requests and their replies can be matched.

use bytes::BytesMut;

use super::fixed::LeFrames;
use super::{Packer, Peek};
use crate::error::PackError;

/// A 12-byte header, then the body:
///
/// ```text
///  0                   4                   8                   12
///  +-------------------+-------------------+-------------------+---------------------+
///  | body length       | message id        | sequence number   | body                |
///  | u32 little-endian | u32 little-endian | u32 little-endian | `body length` bytes |
///  +-------------------+-------------------+-------------------+---------------------+
/// ```
///
/// The sequence number becomes [`Message::seq`](crate::Message::seq):
/// `Context::reply` answers with the request's, and
/// `ConnHandle::request` matches replies to requests by it (0 means "no
/// request": a message sent with `send`). A declared length above
/// [`max_body_length`](SeqPacker::max_body_length) is rejected as soon as
/// the header is in, before a byte is reserved for it.
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use netloom::{Packer, SeqPacker};
///
/// let mut out = BytesMut::new();
/// SeqPacker::default().encode(7, 42, b"hi", &mut out)?;
/// assert_eq!(&out[..], b"\x02\x00\x00\x00\x07\x00\x00\x00\x2a\x00\x00\x00hi");
/// let msg = SeqPacker::default().decode(&mut out)?.expect("a whole frame");
/// assert_eq!((msg.id, msg.seq, &msg.body[..]), (7, 42, &b"hi"[..]));
/// # Ok::<(), netloom::PackError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SeqPacker {
    frames: LeFrames<{ SeqPacker::HEADER_LEN }>,
}

impl SeqPacker {
    /// Bytes before the body: length, id, sequence number.
    pub const HEADER_LEN: usize = 12;

    /// The default body limit: 1 MiB.
    pub const DEFAULT_MAX_BODY_LENGTH: usize = 1 << 20;

    /// A packer for bodies of at most `max_body_length` bytes (clamped to
    /// what the length field carries).
    pub fn new(max_body_length: usize) -> Self {
        SeqPacker {
            frames: LeFrames::new(max_body_length),
        }
    }

    /// The largest body this packer decodes or encodes.
    pub fn max_body_length(&self) -> usize {
        self.frames.max_body_length()
    }
}

impl Default for SeqPacker {
    /// A packer with [`SeqPacker::DEFAULT_MAX_BODY_LENGTH`].
    fn default() -> Self {
        SeqPacker::new(Self::DEFAULT_MAX_BODY_LENGTH)
    }
}

impl Packer for SeqPacker {
    /// The first frame: its body follows the 12-byte header.
    ///
    /// # Errors
    ///
    /// [`PackError::TooLong`] for a declared length over the limit.
    #[inline]
    fn peek(&self, buf: &[u8]) -> Result<Peek, PackError> {
        self.frames.peek(buf)
    }

    /// Append one frame.
    ///
    /// # Errors
    ///
    /// [`PackError::TooLong`] for a body over the limit (nothing appended).
    #[inline]
    fn encode(&self, id: u32, seq: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError> {
        self.frames.encode(id, seq, body, out)
    }

    /// The header alone: the body follows as it is.
    ///
    /// # Errors
    ///
    /// As [`encode`](Packer::encode).
    fn encode_around(
        &self,
        id: u32,
        seq: u32,
        body_len: usize,
        before: &mut BytesMut,
        _after: &mut BytesMut,
    ) -> Result<bool, PackError> {
        self.frames.encode_around(id, seq, body_len, before)
    }

    /// Yes: the header's third field.
    fn carries_seq(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Message;

    #[test]
    fn literal_bytes_both_ways() {
        let wire = b"\x03\x00\x00\x00\x09\x00\x00\x00\xff\xff\xff\xffabc";
        let mut buf = BytesMut::from(&wire[..]);
        let m = SeqPacker::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            m,
            Message {
                id: 9,
                seq: u32::MAX,
                body: "abc".into()
            }
        );
        let mut out = BytesMut::new();
        SeqPacker::default()
            .encode(9, u32::MAX, b"abc", &mut out)
            .unwrap();
        assert_eq!(&out[..], &wire[..]);
    }

    #[test]
    fn over_the_limit_before_any_reservation() {
        let p = SeqPacker::new(4);
        let mut buf = BytesMut::from(&b"\x05\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00"[..]);
        let cap = buf.capacity();
        assert_eq!(
            p.decode(&mut buf),
            Err(PackError::TooLong { len: 5, max: 4 })
        );
        assert_eq!(buf.capacity(), cap);
        let mut out = BytesMut::new();
        assert!(p.encode(1, 1, b"12345", &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn its_limit_is_the_one_it_was_made_with() {
        assert_eq!(SeqPacker::new(1234).max_body_length(), 1234);
        assert_eq!(
            SeqPacker::default().max_body_length(),
            crate::codec::LengthPacker::DEFAULT_MAX_BODY_LENGTH
        );
    }

    #[test]
    fn encode_around_writes_the_header_encode_writes() {
        let p = SeqPacker::default();
        let (mut before, mut after) = (BytesMut::new(), BytesMut::new());
        assert!(p.encode_around(9, 77, 3, &mut before, &mut after).unwrap());
        before.extend_from_slice(b"abc");
        before.extend_from_slice(&after);
        let mut whole = BytesMut::new();
        p.encode(9, 77, b"abc", &mut whole).unwrap();
        assert_eq!(before, whole);
    }

    #[test]
    fn byte_by_byte() {
        let p = SeqPacker::default();
        let mut wire = BytesMut::new();
        p.encode(3, 77, b"slow", &mut wire).unwrap();
        let mut buf = BytesMut::new();
        for (i, b) in wire.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let got = p.decode(&mut buf).unwrap();
            assert_eq!(got.is_some(), i + 1 == wire.len());
        }
    }
}
