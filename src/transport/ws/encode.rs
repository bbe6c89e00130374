//! Outgoing data frames, formatted straight into the write queue: a whole
//! message (message mode) or one packer frame per binary message (packer
//! mode). A dial's frames are masked (RFC 6455 §5.3) with a fresh key
//! each, from `rand`'s thread-local CSPRNG (the one tungstenite masks its
//! own frames with).

use bytes::{BufMut, BytesMut};
use tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::{WsMode, PACKER_GUESS, TEXT};
use crate::codec::ServerPacker;
use crate::error::PackError;

/// Encode one outgoing message as a data frame: a server's (unmasked),
/// or with `masked` a client's.
pub(super) fn encode(
    mode: WsMode,
    packer: &ServerPacker,
    (id, seq): (u32, u32),
    body: &[u8],
    out: &mut BytesMut,
    masked: bool,
) -> std::result::Result<(), PackError> {
    let start = out.len();
    let mask = masked.then(rand::random::<[u8; 4]>);
    encode_frame(mode, packer, id, seq, body, out, mask)?;
    if let Some(mask) = mask {
        // The payload is what follows the header (whose last 4 bytes are
        // the key).
        let frame = &mut out[start..];
        let payload_at = header_len(frame);
        for (i, b) in frame[payload_at..].iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
    }
    Ok(())
}

/// The length of the frame header at the front of `frame` (one this
/// module wrote: whole, masked or not).
fn header_len(frame: &[u8]) -> usize {
    let second = frame.get(1).copied().unwrap_or(0);
    let extra = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + extra + if second & 0x80 != 0 { 4 } else { 0 }
}

fn encode_frame(
    mode: WsMode,
    packer: &ServerPacker,
    id: u32,
    seq: u32,
    body: &[u8],
    out: &mut BytesMut,
    mask: Option<[u8; 4]>,
) -> std::result::Result<(), PackError> {
    match mode {
        WsMode::Messages => {
            let opcode = if id == TEXT {
                if std::str::from_utf8(body).is_err() {
                    return Err(PackError::Malformed(
                        "text message is not valid UTF-8".into(),
                    ));
                }
                OpData::Text
            } else {
                OpData::Binary
            };
            let header = data_header(opcode, mask);
            header
                .format(body.len() as u64, &mut out.writer())
                .map_err(|e| PackError::Malformed(e.to_string()))?;
            out.extend_from_slice(body);
            Ok(())
        }
        WsMode::Packer => {
            // Reserve the header, let the packer write the payload after
            // it, then fill the header in (moving the payload only if the
            // guess of the header's size was wrong).
            let header = data_header(OpData::Binary, mask);
            let start = out.len();
            let guess = header.len((body.len() + PACKER_GUESS) as u64);
            out.put_bytes(0, guess);
            packer.encode(id, seq, body, out)?;
            let len = out.len() - start - guess;
            let need = header.len(len as u64);
            if need > guess {
                out.put_bytes(0, need - guess);
                out.copy_within(start + guess..start + guess + len, start + need);
            } else if need < guess {
                out.copy_within(start + guess..start + guess + len, start + need);
                out.truncate(start + need + len);
            }
            let mut slot: &mut [u8] = &mut out[start..start + need];
            header
                .format(len as u64, &mut slot)
                .map_err(|e| PackError::Malformed(e.to_string()))
        }
    }
}

fn data_header(opcode: OpData, mask: Option<[u8; 4]>) -> FrameHeader {
    FrameHeader {
        is_final: true,
        opcode: OpCode::Data(opcode),
        mask,
        ..FrameHeader::default()
    }
}
