//! [`LengthPacker`], the default packer: an 8-byte header, then the body.

use bytes::BytesMut;

use super::fixed::LeFrames;
use super::{Packer, Peek};
use crate::error::PackError;

/// The default packer: an 8-byte header, then the body.
///
/// Wire-compatible with Go netman's `DataPacker`:
///
/// ```text
///  0                   4                   8
///  +-------------------+-------------------+---------------------+
///  | body length       | message id        | body                |
///  | u32 little-endian | u32 little-endian | `body length` bytes |
///  +-------------------+-------------------+---------------------+
/// ```
///
/// The format carries no sequence number: decoded messages have `seq` 0 and
/// `encode` ignores its `seq` argument. An empty body is valid.
///
/// A declared length above [`max_body_length`](LengthPacker::max_body_length)
/// is rejected with [`PackError::TooLong`] as soon as the header has arrived,
/// before any memory is reserved for the body. Decoded bodies share the
/// receive buffer (no copy).
///
/// # Examples
///
/// ```
/// use bytes::BytesMut;
/// use netloom::{LengthPacker, Packer};
///
/// let packer = LengthPacker::default();
///
/// let mut buf = BytesMut::from(&b"\x02\x00\x00\x00\x07\x00\x00\x00hi"[..]);
/// let msg = packer.decode(&mut buf)?.expect("a whole frame");
/// assert_eq!((msg.id, msg.seq, &msg.body[..]), (7, 0, &b"hi"[..]));
/// assert!(buf.is_empty());
///
/// let mut out = BytesMut::new();
/// packer.encode(7, 0, b"hi", &mut out)?;
/// assert_eq!(&out[..], b"\x02\x00\x00\x00\x07\x00\x00\x00hi");
/// # Ok::<(), netloom::PackError>(())
/// ```
#[derive(Debug, Clone)]
pub struct LengthPacker {
    frames: LeFrames<{ LengthPacker::HEADER_LEN }>,
}

impl LengthPacker {
    /// Length of the header in bytes: body length and message id.
    pub const HEADER_LEN: usize = 8;

    /// The default body limit: 1 MiB.
    ///
    /// A safe default: large enough for ordinary game and RPC messages,
    /// small enough that a peer cannot make the server reserve much memory
    /// for one connection by declaring a huge length.
    pub const DEFAULT_MAX_BODY_LENGTH: usize = 1 << 20;

    /// A packer that accepts and produces bodies of at most
    /// `max_body_length` bytes.
    ///
    /// Values above `u32::MAX` (the largest length the header can carry) are
    /// clamped to it.
    ///
    /// ```
    /// let packer = netloom::LengthPacker::new(64 * 1024);
    /// assert_eq!(packer.max_body_length(), 64 * 1024);
    /// ```
    pub fn new(max_body_length: usize) -> Self {
        LengthPacker {
            frames: LeFrames::new(max_body_length),
        }
    }

    /// The largest body, in bytes, this packer decodes or encodes.
    pub fn max_body_length(&self) -> usize {
        self.frames.max_body_length()
    }
}

impl Default for LengthPacker {
    /// A packer with [`Self::DEFAULT_MAX_BODY_LENGTH`] (1 MiB).
    fn default() -> Self {
        LengthPacker::new(Self::DEFAULT_MAX_BODY_LENGTH)
    }
}

impl Packer for LengthPacker {
    /// Find the first frame: its body follows the 8-byte header.
    ///
    /// While the header or the body is incomplete, answers
    /// [`Peek::Incomplete`], with the whole frame's length once the header
    /// is there (the length has been checked against the limit).
    ///
    /// # Errors
    ///
    /// [`PackError::TooLong`] when the header declares a body longer than
    /// [`max_body_length`](LengthPacker::max_body_length).
    #[inline]
    fn peek(&self, buf: &[u8]) -> Result<Peek, PackError> {
        self.frames.peek(buf)
    }

    /// Append `id` and `body` as one frame to `out`; `seq` is ignored (the
    /// format has no room for it).
    ///
    /// # Errors
    ///
    /// [`PackError::TooLong`] when `body` is longer than
    /// [`max_body_length`](LengthPacker::max_body_length); nothing is
    /// appended then.
    #[inline]
    fn encode(&self, id: u32, _seq: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError> {
        self.frames.encode(id, 0, body, out)
    }

    /// The header alone: the body follows as it is and nothing comes after.
    ///
    /// # Errors
    ///
    /// As [`encode`](Packer::encode).
    fn encode_around(
        &self,
        id: u32,
        _seq: u32,
        body_len: usize,
        before: &mut BytesMut,
        _after: &mut BytesMut,
    ) -> Result<bool, PackError> {
        self.frames.encode_around(id, 0, body_len, before)
    }

    /// No: the format has no room for a sequence number (use
    /// [`SeqPacker`](crate::SeqPacker) for requests).
    fn carries_seq(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Message;
    use bytes::BufMut;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn decode_all(packer: &LengthPacker, buf: &mut BytesMut) -> Vec<Message> {
        let mut out = Vec::new();
        while let Some(msg) = packer.decode(buf).expect("valid frames") {
            out.push(msg);
        }
        out
    }

    #[test]
    fn encode_writes_exact_bytes() {
        let mut out = BytesMut::new();
        LengthPacker::default()
            .encode(0x0102_0304, 99, b"abc", &mut out)
            .unwrap();
        assert_eq!(&out[..], b"\x03\x00\x00\x00\x04\x03\x02\x01abc");
    }

    #[test]
    fn encode_appends_after_existing_bytes() {
        let mut out = BytesMut::from(&b"xy"[..]);
        LengthPacker::default().encode(1, 0, b"", &mut out).unwrap();
        assert_eq!(&out[..], b"xy\x00\x00\x00\x00\x01\x00\x00\x00");
    }

    #[test]
    fn decode_handcrafted_frame() {
        let mut buf = BytesMut::from(&b"\x05\x00\x00\x00\x2a\x00\x00\x00hellotail"[..]);
        let msg = LengthPacker::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(msg, Message::new(42, "hello"));
        assert_eq!(&buf[..], b"tail");
    }

    #[test]
    fn decode_empty_body() {
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x00\x09\x00\x00\x00"[..]);
        let msg = LengthPacker::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(msg, Message::new(9, Bytes::new()));
        assert!(buf.is_empty());
    }

    #[test]
    fn decode_max_id() {
        let mut buf = BytesMut::from(&b"\x01\x00\x00\x00\xff\xff\xff\xffz"[..]);
        let msg = LengthPacker::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!((msg.id, msg.seq, &msg.body[..]), (u32::MAX, 0, &b"z"[..]));
    }

    #[test]
    fn decode_body_shares_the_buffer() {
        let mut buf = BytesMut::from(&b"\x02\x00\x00\x00\x07\x00\x00\x00hi"[..]);
        let start = buf.as_ptr() as usize;
        let msg = LengthPacker::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(msg.body.as_ptr() as usize, start + LengthPacker::HEADER_LEN);
    }

    #[test]
    fn decode_rejects_u32_max_length_without_allocating() {
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(b"\xff\xff\xff\xff\x01\x00\x00\x00");
        let capacity = buf.capacity();
        let err = LengthPacker::default().decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            PackError::TooLong {
                len: u32::MAX as usize,
                max: LengthPacker::DEFAULT_MAX_BODY_LENGTH
            }
        );
        assert_eq!(buf.capacity(), capacity);
    }

    #[test]
    fn decode_limit_is_inclusive() {
        let packer = LengthPacker::new(4);
        let mut buf = BytesMut::from(&b"\x04\x00\x00\x00\x00\x00\x00\x00abcd"[..]);
        assert_eq!(packer.decode(&mut buf).unwrap().unwrap().body, "abcd");
        let mut buf = BytesMut::from(&b"\x05\x00\x00\x00\x00\x00\x00\x00"[..]);
        assert_eq!(
            packer.decode(&mut buf),
            Err(PackError::TooLong { len: 5, max: 4 })
        );
    }

    #[test]
    fn decode_incomplete_body_reserves_the_frame_and_consumes_nothing() {
        let mut buf = BytesMut::from(&b"\x64\x00\x00\x00\x01\x00\x00\x00partial"[..]);
        assert_eq!(LengthPacker::default().decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], b"\x64\x00\x00\x00\x01\x00\x00\x00partial");
        assert!(buf.capacity() >= LengthPacker::HEADER_LEN + 100);
    }

    #[test]
    fn encode_around_matches_encode() {
        let packer = LengthPacker::new(16);
        for body in [&b""[..], b"x", &[7u8; 16]] {
            let mut whole = BytesMut::new();
            packer.encode(9, 0, body, &mut whole).unwrap();
            let (mut before, mut after) = (BytesMut::new(), BytesMut::new());
            assert!(packer
                .encode_around(9, 0, body.len(), &mut before, &mut after)
                .unwrap());
            before.extend_from_slice(body);
            before.extend_from_slice(&after);
            assert_eq!(before, whole);
        }
        let (mut before, mut after) = (BytesMut::new(), BytesMut::new());
        assert!(packer
            .encode_around(9, 0, 17, &mut before, &mut after)
            .is_err());
        assert!(before.is_empty() && after.is_empty());
    }

    #[test]
    fn encode_over_limit_appends_nothing() {
        let packer = LengthPacker::new(4);
        let mut out = BytesMut::from(&b"keep"[..]);
        assert_eq!(
            packer.encode(1, 0, b"12345", &mut out),
            Err(PackError::TooLong { len: 5, max: 4 })
        );
        assert_eq!(&out[..], b"keep");
        packer.encode(1, 0, b"1234", &mut out).unwrap();
        assert_eq!(out.len(), 4 + LengthPacker::HEADER_LEN + 4);
    }

    #[test]
    fn encoding_reserves_about_the_frame_not_more() {
        let mut out = BytesMut::new();
        LengthPacker::default()
            .encode(1, 0, &[0; 1000], &mut out)
            .unwrap();
        assert_eq!(out.len(), LengthPacker::HEADER_LEN + 1000);
        assert!(
            out.capacity() < 2 * out.len(),
            "{} reserved",
            out.capacity()
        );
    }

    #[test]
    fn the_length_packer_carries_no_sequence_number() {
        // Requests on it fail at once (`Error::NoSeq`), not after a timeout.
        assert!(!LengthPacker::default().carries_seq());
        assert!(crate::codec::SeqPacker::default().carries_seq());
    }

    #[test]
    fn new_clamps_to_the_length_field() {
        assert_eq!(
            LengthPacker::new(usize::MAX).max_body_length(),
            crate::codec::fixed::len_field_max(LengthPacker::HEADER_LEN)
        );
        assert_eq!(
            LengthPacker::default().max_body_length(),
            LengthPacker::DEFAULT_MAX_BODY_LENGTH
        );
    }

    #[test]
    fn byte_by_byte_feeding() {
        let packer = LengthPacker::default();
        let mut wire = BytesMut::new();
        packer.encode(3, 0, b"slowly", &mut wire).unwrap();
        let mut buf = BytesMut::new();
        for (i, &byte) in wire.iter().enumerate() {
            buf.put_u8(byte);
            let got = packer.decode(&mut buf).unwrap();
            if i + 1 < wire.len() {
                assert_eq!(got, None, "decoded early at byte {i}");
                assert_eq!(buf.len(), i + 1, "consumed bytes of a partial frame");
            } else {
                assert_eq!(got, Some(Message::new(3, "slowly")));
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn many_frames_in_one_buffer() {
        let packer = LengthPacker::default();
        let sent: Vec<Message> = (0..100u32)
            .map(|i| Message::new(i, vec![i as u8; i as usize % 7]))
            .collect();
        let mut buf = BytesMut::new();
        for m in &sent {
            packer.encode(m.id, 0, &m.body, &mut buf).unwrap();
        }
        buf.extend_from_slice(b"\x01\x00"); // the start of one more header
        assert_eq!(decode_all(&packer, &mut buf), sent);
        assert_eq!(&buf[..], b"\x01\x00");
    }

    proptest! {
        #[test]
        fn chunked_stream_round_trips(
            msgs in prop::collection::vec(
                (any::<u32>(), prop::collection::vec(any::<u8>(), 0..=4096)),
                0..16,
            ),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..32),
        ) {
            let packer = LengthPacker::default();
            let mut wire = BytesMut::new();
            for (id, body) in &msgs {
                packer.encode(*id, 0, body, &mut wire).unwrap();
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            points.push(wire.len());
            points.sort_unstable();

            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut from = 0;
            for to in points {
                buf.extend_from_slice(&wire[from..to]);
                from = to;
                got.extend(decode_all(&packer, &mut buf));
            }
            prop_assert!(buf.is_empty());
            let want: Vec<Message> = msgs.into_iter().map(|(id, body)| Message::new(id, body)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
