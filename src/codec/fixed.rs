//! [`LeFrames`]: frames behind a fixed header of little-endian `u32`
//! fields (body length, message id, and in the 12-byte form a sequence
//! number), the one format [`LengthPacker`](super::LengthPacker) and
//! [`SeqPacker`](super::SeqPacker) share but for that third field. Both
//! hold one and forward to it; `H` is a constant, so each packer's code is
//! compiled for its own header (no branch on the hot path).

use bytes::BytesMut;

use super::Peek;
use crate::error::PackError;

/// The largest length a `u32` field can declare such that the frame's
/// length (`overhead` more) cannot overflow `usize` (which matters on
/// 32-bit targets only).
pub(super) const fn len_field_max(overhead: usize) -> usize {
    if (u32::MAX as usize) <= usize::MAX - overhead {
        u32::MAX as usize
    } else {
        usize::MAX - overhead
    }
}

/// Refuse a length over `max` (declared by a peer, or of a body to send).
#[inline]
pub(super) fn check_len(len: usize, max: usize) -> Result<(), PackError> {
    match len > max {
        true => Err(PackError::TooLong { len, max }),
        false => Ok(()),
    }
}

/// Frames of an `H`-byte header (8: length and id; 12: and the sequence
/// number), then the body.
#[derive(Debug, Clone)]
pub(super) struct LeFrames<const H: usize> {
    max_body_length: usize,
}

impl<const H: usize> LeFrames<H> {
    const WITH_SEQ: bool = H == 12;

    /// Bodies of at most `max_body_length` bytes (clamped to what the
    /// length field carries).
    pub(super) fn new(max_body_length: usize) -> Self {
        LeFrames {
            max_body_length: max_body_length.min(len_field_max(H)),
        }
    }

    pub(super) fn max_body_length(&self) -> usize {
        self.max_body_length
    }

    /// The first frame of `buf` (see [`Packer::peek`](super::Packer::peek)):
    /// the declared length is checked as soon as the header is in, before
    /// anyone reserves a byte for it.
    #[inline]
    pub(super) fn peek(&self, buf: &[u8]) -> Result<Peek, PackError> {
        let Some(head) = buf.first_chunk::<H>() else {
            return Ok(Peek::Incomplete { frame_len: None });
        };
        let field =
            |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        let len = field(0) as usize;
        let id = field(4);
        let seq = if Self::WITH_SEQ { field(8) } else { 0 };
        check_len(len, self.max_body_length)?;
        let frame_len = H + len;
        if buf.len() < frame_len {
            return Ok(Peek::Incomplete {
                frame_len: Some(frame_len),
            });
        }
        Ok(Peek::Frame {
            id,
            seq,
            body: H..frame_len,
            len: frame_len,
        })
    }

    /// Append one frame (nothing when the body is too long).
    #[inline]
    pub(super) fn encode(
        &self,
        id: u32,
        seq: u32,
        body: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), PackError> {
        check_len(body.len(), self.max_body_length)?;
        out.reserve(H + body.len());
        Self::put_header(id, seq, body.len(), out);
        out.extend_from_slice(body);
        Ok(())
    }

    /// The header alone: the body follows as it is, nothing after it.
    pub(super) fn encode_around(
        &self,
        id: u32,
        seq: u32,
        body_len: usize,
        before: &mut BytesMut,
    ) -> Result<bool, PackError> {
        check_len(body_len, self.max_body_length)?;
        Self::put_header(id, seq, body_len, before);
        Ok(true)
    }

    #[inline]
    fn put_header(id: u32, seq: u32, body_len: usize, out: &mut BytesMut) {
        // Cannot truncate: callers checked `body_len` against the limit,
        // which `new` clamps to `u32::MAX`.
        let mut header = [0u8; H];
        header[..4].copy_from_slice(&(body_len as u32).to_le_bytes());
        header[4..8].copy_from_slice(&id.to_le_bytes());
        if Self::WITH_SEQ {
            header[8..12].copy_from_slice(&seq.to_le_bytes());
        }
        // One append for the whole header instead of one per field.
        out.extend_from_slice(&header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_field_allows_all_of_u32_where_usize_has_room() {
        #[cfg(target_pointer_width = "64")]
        assert_eq!(len_field_max(12), u32::MAX as usize);
        #[cfg(target_pointer_width = "32")]
        assert_eq!(len_field_max(12), usize::MAX - 12);
    }
}
