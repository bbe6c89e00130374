//! [`TlvPacker`]: a TLV format that carries a sequence number, so clients
//! can match responses to requests.
//!
//! # Wire format
//!
//! Every integer is a `u32` in **little-endian** byte order (as in netloom's
//! default packer; on x86 and ARM hosts no byte swapping happens):
//!
//! ```text
//!  0          4          8          12              12+len      14+len
//!  +----------+----------+----------+---------------+-----------+
//!  | seq      | kind     | len      | data          | "\r\n"    |
//!  | u32 LE   | u32 LE   | u32 LE   | `len` bytes   | 0x0d 0x0a |
//!  +----------+----------+----------+---------------+-----------+
//! ```
//!
//! * `seq` becomes `Message::seq`. `Context::reply` copies it into the
//!   answer, so the client gets its request's `seq` back.
//! * `kind` becomes `Message::id`: the router picks the handler by it.
//! * `len` is the length of `data` alone (header and trailer excluded). It
//!   is checked against the packer's limit as soon as the header is in,
//!   before a byte is reserved for the data.
//! * The `"\r\n"` trailer catches a stream that lost its framing. Anything
//!   else there is [`PackError::Malformed`], reported as soon as the first
//!   wrong trailer byte arrives.
//!
//! For example, `seq` 7, `kind` 1, data `hi`:
//!
//! ```text
//! 07 00 00 00  01 00 00 00  02 00 00 00  68 69  0d 0a
//! ```

use super::fixed::{check_len, len_field_max};
use super::{Packer, Peek};
use crate::error::PackError;
use bytes::{Buf, BufMut, BytesMut};

/// Bytes a frame adds around its data.
const OVERHEAD: usize = TlvPacker::HEADER_LEN + TlvPacker::TRAILER.len();

/// The largest `len` the header can carry whose frame length cannot
/// overflow `usize` (which matters on 32-bit targets only).
const LEN_FIELD_MAX: usize = len_field_max(OVERHEAD);

/// The TLV packer: `seq | kind | len | data | "\r\n"` (see the module docs).
///
/// Stateless, like every netloom packer: one value serves all connections;
/// a partial frame is simply decoded again when more bytes arrive.
#[derive(Debug, Clone)]
pub struct TlvPacker {
    max_data_len: usize,
}

impl TlvPacker {
    /// Bytes before the data: `seq`, `kind` and `len`.
    pub const HEADER_LEN: usize = 12;

    /// The two bytes that end every frame.
    pub const TRAILER: &'static [u8; 2] = b"\r\n";

    /// Default limit on `len`: 64 KiB.
    pub const DEFAULT_MAX_DATA_LEN: usize = 64 * 1024;

    /// A packer that accepts and produces at most `max_data_len` bytes of
    /// data per frame (clamped to what the `len` field can carry).
    pub fn new(max_data_len: usize) -> Self {
        TlvPacker {
            max_data_len: max_data_len.min(LEN_FIELD_MAX),
        }
    }

    /// The largest `len` this packer decodes or encodes.
    pub fn max_data_len(&self) -> usize {
        self.max_data_len
    }
}

impl Default for TlvPacker {
    /// A packer with [`Self::DEFAULT_MAX_DATA_LEN`].
    fn default() -> Self {
        TlvPacker::new(TlvPacker::DEFAULT_MAX_DATA_LEN)
    }
}

impl Packer for TlvPacker {
    /// Find the first frame: its data lies between the header and the
    /// trailer. `decode` (provided by `Packer`) splits frames off with it;
    /// the server uses it to hand handlers the data without a copy or a
    /// reference count per frame.
    fn peek(&self, buf: &[u8]) -> Result<Peek, PackError> {
        let Some(mut head) = buf.get(..TlvPacker::HEADER_LEN) else {
            return Ok(Peek::Incomplete { frame_len: None });
        };
        let seq = head.get_u32_le();
        let kind = head.get_u32_le();
        let len = head.get_u32_le() as usize;
        // Peer-controlled: check it before anything is reserved for it.
        check_len(len, self.max_data_len)?;
        let data_end = TlvPacker::HEADER_LEN + len;
        let frame_len = data_end + TlvPacker::TRAILER.len();

        // Whatever part of the trailer has arrived must already be right.
        let trailer = buf.get(data_end..).unwrap_or_default();
        let trailer = &trailer[..trailer.len().min(TlvPacker::TRAILER.len())];
        if trailer != &TlvPacker::TRAILER[..trailer.len()] {
            return Err(PackError::Malformed(format!(
                "frame seq={seq} kind={kind} len={len}: expected \"\\r\\n\" after the data, \
                 got {trailer:02x?}"
            )));
        }
        if buf.len() < frame_len {
            // Bounded by the limit checked above.
            return Ok(Peek::Incomplete {
                frame_len: Some(frame_len),
            });
        }
        Ok(Peek::Frame {
            id: kind,
            seq,
            body: TlvPacker::HEADER_LEN..data_end,
            len: frame_len,
        })
    }

    /// Append one frame; `id` is written as `kind`.
    fn encode(&self, id: u32, seq: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError> {
        let len = body.len();
        check_len(len, self.max_data_len)?;
        out.reserve(OVERHEAD + len);
        put_header(seq, id, len, out);
        out.extend_from_slice(body);
        out.extend_from_slice(TlvPacker::TRAILER);
        Ok(())
    }

    /// The header before the data and the trailer after it, so large
    /// replies that share the request's buffer are not copied.
    fn encode_around(
        &self,
        id: u32,
        seq: u32,
        data_len: usize,
        before: &mut BytesMut,
        after: &mut BytesMut,
    ) -> Result<bool, PackError> {
        check_len(data_len, self.max_data_len)?;
        put_header(seq, id, data_len, before);
        after.extend_from_slice(TlvPacker::TRAILER);
        Ok(true)
    }

    /// Yes: the header's first field.
    fn carries_seq(&self) -> bool {
        true
    }
}

fn put_header(seq: u32, kind: u32, len: usize, out: &mut BytesMut) {
    out.put_u32_le(seq);
    out.put_u32_le(kind);
    // Cannot truncate: callers checked `len` against the limit, which
    // `new` clamps to the field's range.
    out.put_u32_le(len as u32);
}
