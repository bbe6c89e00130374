//! Outgoing data frames, formatted straight into the write queue: a whole
//! message (message mode) or one packer frame per binary message (packer
//! mode).

use bytes::{BufMut, BytesMut};
use tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use super::{WsMode, PACKER_GUESS, TEXT};
use crate::codec::ServerPacker;
use crate::error::PackError;

/// Encode one outgoing message as a server (unmasked) data frame.
pub(super) fn encode(
    mode: WsMode,
    packer: &ServerPacker,
    id: u32,
    seq: u32,
    body: &[u8],
    out: &mut BytesMut,
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
            let header = data_header(opcode);
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
            let header = data_header(OpData::Binary);
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

fn data_header(opcode: OpData) -> FrameHeader {
    FrameHeader {
        is_final: true,
        opcode: OpCode::Data(opcode),
        ..FrameHeader::default()
    }
}
