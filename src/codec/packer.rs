//! The [`Packer`] trait: how a byte stream becomes [`Message`]s and
//! messages become bytes.
//!
//! A packer is pure over bytes: no sockets, no per-connection state (the
//! frame reader keeps only the unconsumed bytes of a partial frame), so one
//! packer value serves every connection on every loop.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::PackError;

/// One decoded message: routing id, correlation sequence number and body.
///
/// `seq` is 0 for formats that carry no sequence number (like the default
/// [`LengthPacker`](crate::LengthPacker)). A reply made with `Context::reply` carries the `seq`
/// of the request it answers, so a client can match responses to requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The message id; the router picks the handler by it.
    pub id: u32,
    /// Correlation number for request/response matching; 0 if unused.
    pub seq: u32,
    /// The body. Shares the receive buffer: cloning it is cheap.
    pub body: Bytes,
}

impl Message {
    /// A message with `seq` 0.
    ///
    /// ```
    /// let m = netloom::Message::new(7, "hi");
    /// assert_eq!((m.id, m.seq, &m.body[..]), (7, 0, &b"hi"[..]));
    /// ```
    pub fn new(id: u32, body: impl Into<Bytes>) -> Self {
        Message {
            id,
            seq: 0,
            body: body.into(),
        }
    }
}

/// What [`Packer::peek`] found at the front of the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peek {
    /// A whole frame of `len` bytes starts the buffer; its body is the
    /// bytes at `body` (within `0..len`).
    Frame {
        /// The message id; the router picks the handler by it.
        id: u32,
        /// Correlation number; 0 if the format has none.
        seq: u32,
        /// Where the body lies in the frame.
        body: Range<usize>,
        /// The whole frame's length: header, body and any trailer.
        len: usize,
    },
    /// More bytes are needed. `frame_len` is the whole frame's length once
    /// the header says it (already checked against your limit: the reactor
    /// reserves room for it, up to `max_body_length` plus one read), or
    /// `None` while it is unknown. A `frame_len` not beyond the bytes at
    /// hand is a protocol error.
    Incomplete {
        /// The whole frame's length, if known.
        frame_len: Option<usize>,
    },
    /// This packer does not implement `peek`; the reactor uses
    /// [`Packer::decode`].
    Unsupported,
}

/// Splits a byte stream into [`Message`]s and encodes messages into bytes.
///
/// Implement it for your wire format and pass it to `Builder::packer`.
/// Decoding comes in two shapes; implement one of them:
///
/// * [`peek`](Packer::peek), for formats whose header says where the body
///   is and how long the frame is (most binary formats): look at the bytes,
///   say where the first frame's body lies, and consume nothing. The reactor
///   then hands bodies to handlers straight from its receive buffer, with no
///   per-message allocation or reference count. `decode` is provided on
///   top of it.
/// * [`decode`](Packer::decode), for everything else (delimiters, escaping,
///   a body that must be transformed): consume one frame from a
///   [`BytesMut`] and return it as a [`Message`].
///
/// Either way, a declared length is peer-controlled: check it against your
/// limit *before* asking for room for it. An error closes the connection
/// with [`CloseReason::Protocol`](crate::CloseReason::Protocol).
///
/// A packer runs on the loop threads in the middle of the loop's own
/// bookkeeping (the connection is borrowed meanwhile): it must stay pure
/// over bytes and never call into netloom (send through a handle, dial).
///
/// # Examples
///
/// A format with a header (a `u16` body length, big-endian, then a `u8`
/// message id) implements `peek`:
///
/// ```
/// use bytes::BytesMut;
/// use netloom::{PackError, Packer, Peek};
///
/// struct Short;
///
/// impl Packer for Short {
///     fn peek(&self, buf: &[u8]) -> Result<Peek, PackError> {
///         let Some(head) = buf.get(..3) else {
///             return Ok(Peek::Incomplete { frame_len: None });
///         };
///         // At most 3 + 65535 bytes: nothing to check against a limit.
///         let len = 3 + u16::from_be_bytes([head[0], head[1]]) as usize;
///         if buf.len() < len {
///             return Ok(Peek::Incomplete { frame_len: Some(len) });
///         }
///         Ok(Peek::Frame { id: u32::from(head[2]), seq: 0, body: 3..len, len })
///     }
///
///     fn encode(&self, id: u32, _seq: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError> {
///         let len = u16::try_from(body.len())
///             .map_err(|_| PackError::TooLong { len: body.len(), max: 65535 })?;
///         let id = u8::try_from(id).map_err(|_| PackError::Malformed(format!("id {id} > 255")))?;
///         out.extend_from_slice(&len.to_be_bytes());
///         out.extend_from_slice(&[id]);
///         out.extend_from_slice(body);
///         Ok(())
///     }
/// }
///
/// // `decode` comes with `peek`:
/// let mut buf = BytesMut::from(&b"\x00\x02\x07hi\x00"[..]);
/// let msg = Short.decode(&mut buf)?.expect("a whole frame");
/// assert_eq!((msg.id, &msg.body[..]), (7, &b"hi"[..]));
/// assert_eq!(&buf[..], b"\x00");
/// # Ok::<(), PackError>(())
/// ```
///
/// A line-based packer (every message is one `\n`-terminated line, id 0)
/// implements `decode`:
///
/// ```
/// use bytes::{Buf, BytesMut};
/// use netloom::{Message, PackError, Packer};
///
/// struct Lines;
///
/// impl Packer for Lines {
///     fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, PackError> {
///         match buf.iter().position(|&b| b == b'\n') {
///             Some(end) => {
///                 let line = buf.split_to(end).freeze();
///                 buf.advance(1);
///                 Ok(Some(Message::new(0, line)))
///             }
///             None if buf.len() > 4096 => Err(PackError::TooLong { len: buf.len(), max: 4096 }),
///             None => Ok(None),
///         }
///     }
///
///     fn encode(&self, _id: u32, _seq: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError> {
///         out.extend_from_slice(body);
///         out.extend_from_slice(b"\n");
///         Ok(())
///     }
/// }
///
/// let mut buf = BytesMut::from(&b"hello\nwor"[..]);
/// assert_eq!(Lines.decode(&mut buf).unwrap().unwrap().body, "hello");
/// assert_eq!(Lines.decode(&mut buf).unwrap(), None);
/// ```
pub trait Packer: Send + Sync + 'static {
    /// Find the first frame at the front of `buf` without consuming
    /// anything: where its body lies and how long it is, or that more bytes
    /// are needed.
    ///
    /// Implement it when the frame's header tells its length; see the
    /// trait's documentation. Answer [`Peek::Unsupported`] (the default)
    /// always or never: the reactor then decodes with
    /// [`decode`](Packer::decode). A packer that peeks is never asked to
    /// `decode` by the server (a `Client` uses `decode`): if you implement
    /// both, they must agree.
    ///
    /// # Errors
    ///
    /// A [`PackError`] when the bytes cannot be a valid frame; the
    /// connection is closed with it.
    fn peek(&self, buf: &[u8]) -> Result<Peek, PackError> {
        let _ = buf;
        Ok(Peek::Unsupported)
    }

    /// Decode one message from the front of `buf`, consuming its bytes;
    /// `Ok(None)`, leaving `buf` as it was, while the frame is incomplete.
    ///
    /// Provided on top of [`peek`](Packer::peek): the frame is split off
    /// `buf` (the body shares it, no copy), and an incomplete frame of known
    /// length reserves room for its rest in bounded steps (64 KiB, or as
    /// much as `buf` holds: a declared length costs memory only as its
    /// bytes arrive). Implement it instead of `peek` when
    /// the body is not a plain slice of the frame.
    ///
    /// # Errors
    ///
    /// A [`PackError`] when the bytes cannot be a valid frame (the
    /// connection is closed with it), and [`PackError::Malformed`] when the
    /// packer implements neither `peek` nor `decode`, or `peek` answered a
    /// frame that does not fit `buf`.
    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, PackError> {
        match self.peek(buf)? {
            Peek::Frame { id, seq, body, len } => {
                check_frame(&body, len, buf.len())?;
                let mut frame = buf.split_to(len).freeze();
                frame.truncate(body.end);
                frame.advance(body.start);
                Ok(Some(Message {
                    id,
                    seq,
                    body: frame,
                }))
            }
            Peek::Incomplete { frame_len } => {
                // Room for the rest, in a bounded step: a declared length
                // costs memory only as its bytes arrive.
                if let Some(extra) = frame_len.and_then(|n| n.checked_sub(buf.len())) {
                    buf.reserve(extra.min(buf.len().max(DECODE_STEP)));
                }
                Ok(None)
            }
            Peek::Unsupported => Err(PackError::Malformed(NEITHER.into())),
        }
    }

    /// Append the encoded message to `out`.
    ///
    /// # Errors
    ///
    /// A [`PackError`] when the message cannot be represented (e.g. the body
    /// is over the limit); nothing may have been appended then.
    fn encode(&self, id: u32, seq: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError>;

    /// Frame a body of `body_len` bytes that is written as it is, without
    /// copying it: append what goes before the body to `before` and what
    /// goes after it to `after`, and return `Ok(true)`.
    ///
    /// The reactor uses it for large replies that share the received
    /// buffer (an echoed or forwarded body), so they are queued by
    /// reference instead of being copied into the write queue. The default
    /// returns `Ok(false)`: the format cannot frame a body that way, and
    /// [`encode`](Packer::encode) is used. The bytes `encode` would produce
    /// must equal `before`, the body, then `after`.
    ///
    /// # Errors
    ///
    /// As [`encode`](Packer::encode); nothing may have been appended then.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use netloom::{LengthPacker, Packer};
    ///
    /// let (mut before, mut after) = (BytesMut::new(), BytesMut::new());
    /// assert!(LengthPacker::default().encode_around(7, 0, 2, &mut before, &mut after)?);
    /// assert_eq!(&before[..], b"\x02\x00\x00\x00\x07\x00\x00\x00");
    /// assert!(after.is_empty());
    /// # Ok::<(), netloom::PackError>(())
    /// ```
    fn encode_around(
        &self,
        id: u32,
        seq: u32,
        body_len: usize,
        before: &mut BytesMut,
        after: &mut BytesMut,
    ) -> Result<bool, PackError> {
        let _ = (id, seq, body_len, before, after);
        Ok(false)
    }

    /// Whether the format carries [`Message::seq`] on the wire. Requests
    /// (`ConnHandle::request`, `request_with`) need it to find their
    /// replies: on a packer that says no, they fail at once with
    /// [`Error::NoSeq`](crate::Error::NoSeq) instead of waiting out their
    /// timeout while the reply goes to the routes. The server asks once,
    /// when it starts.
    ///
    /// The default asks the packer itself: it encodes an empty message
    /// whose sequence number uses all 32 bits, reads it back (with
    /// [`peek`](Packer::peek), else [`decode`](Packer::decode)) and
    /// answers whether the number came back whole. Override it when that
    /// probe cannot tell (say, a format that refuses empty bodies).
    ///
    /// ```
    /// use netloom::{LengthPacker, Packer, SeqPacker};
    ///
    /// assert!(SeqPacker::default().carries_seq());
    /// assert!(!LengthPacker::default().carries_seq());
    /// ```
    fn carries_seq(&self) -> bool {
        probe_seq(self)
    }
}

/// The sequence number [`Packer::carries_seq`]'s probe sends: every byte
/// distinct and non-zero, so a format that drops or truncates it shows.
const SEQ_PROBE: u32 = 0x5EC1_A7B3;

/// Encode an empty message with [`SEQ_PROBE`] and read it back: does the
/// number survive?
fn probe_seq<P: Packer + ?Sized>(packer: &P) -> bool {
    let mut buf = BytesMut::new();
    if packer.encode(1, SEQ_PROBE, &[], &mut buf).is_err() {
        return false;
    }
    match packer.peek(&buf) {
        Ok(Peek::Frame { seq, .. }) => seq == SEQ_PROBE,
        Ok(Peek::Unsupported) => {
            matches!(packer.decode(&mut buf), Ok(Some(m)) if m.seq == SEQ_PROBE)
        }
        Ok(Peek::Incomplete { .. }) | Err(_) => false,
    }
}

/// Most room the provided `decode` reserves ahead at once beyond what the
/// buffer holds (it grows with what arrives, at most doubling).
const DECODE_STEP: usize = 64 << 10;

/// What the provided `decode` says of a packer that implements neither
/// `peek` nor `decode`.
const NEITHER: &str = "the packer implements neither `peek` nor `decode`";

/// Whether `packer` implements `peek` or `decode` (asked with no input;
/// a packer that panics on that is left to the reactor's checks).
pub(crate) fn implements_decoding(packer: &dyn Packer) -> bool {
    let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match packer.peek(&[]) {
        Ok(Peek::Unsupported) => packer.decode(&mut BytesMut::new()).err(),
        _ => None,
    }));
    !matches!(probe, Ok(Some(PackError::Malformed(m))) if m == NEITHER)
}

/// Check a frame [`Packer::peek`] reported against the `available` bytes
/// it was found in: it must consume input, hold its body and fit.
pub(crate) fn check_frame(
    body: &Range<usize>,
    len: usize,
    available: usize,
) -> Result<(), PackError> {
    if len == 0 {
        return Err(PackError::Malformed(
            "packer returned a message without consuming input".into(),
        ));
    }
    if body.start > body.end || body.end > len || len > available {
        return Err(PackError::Malformed(format!(
            "packer's peek reported a frame of {len} bytes with its body at {body:?}, \
             in {available} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packer that decodes (no `peek`): `seq u32 | id u32 | body \n`,
    /// keeping the sequence number or (`keeps: false`) dropping it.
    struct Decoding {
        keeps: bool,
    }

    impl Packer for Decoding {
        fn decode(&self, buf: &mut BytesMut) -> Result<Option<Message>, PackError> {
            let Some(end) = buf.iter().skip(8).position(|&b| b == b'\n') else {
                return Ok(None);
            };
            let mut frame = buf.split_to(8 + end + 1).freeze();
            let seq = frame.get_u32_le();
            let id = frame.get_u32_le();
            frame.truncate(end);
            let seq = if self.keeps { seq } else { 0 };
            Ok(Some(Message {
                id,
                seq,
                body: frame,
            }))
        }

        fn encode(
            &self,
            id: u32,
            seq: u32,
            body: &[u8],
            out: &mut BytesMut,
        ) -> Result<(), PackError> {
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\n");
            Ok(())
        }
    }

    /// One that cannot encode anything.
    struct Refusing;

    impl Packer for Refusing {
        fn encode(&self, _: u32, _: u32, _: &[u8], _: &mut BytesMut) -> Result<(), PackError> {
            Err(PackError::Malformed("no".into()))
        }
    }

    #[test]
    fn the_probe_reads_back_through_decode_and_fails_closed() {
        assert!(Decoding { keeps: true }.carries_seq());
        assert!(!Decoding { keeps: false }.carries_seq());
        assert!(!Refusing.carries_seq());
    }
}
