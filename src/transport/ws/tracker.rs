//! [`FrameTracker`]: follows the client's frame headers, to know when
//! tungstenite holds no partial frame or fragmented message, and what the
//! peer really put in a close frame and a frame length.

use super::SHRINK_AFTER;

/// Follows the client's byte stream frame by frame (headers only), to know
/// when tungstenite holds no partial frame or fragmented message.
#[derive(Default)]
pub(super) struct FrameTracker {
    /// Payload bytes of the current frame still to come.
    pub(super) left: u64,
    /// The current frame header, as far as received.
    head: [u8; 14],
    pub(super) have: u8,
    /// Inside a fragmented data message.
    fragmented: bool,
    /// A frame of at least `SHRINK_AFTER` bytes was seen.
    pub(super) big: bool,
    /// A 64-bit length with its most significant bit set was seen (RFC
    /// 6455 5.2: a protocol error, not a size one).
    pub(super) bad_length: bool,
    /// Inside a close frame's payload: its mask and how far in.
    close: Option<([u8; 4], u64)>,
    /// The first two payload bytes of the last close frame, unmasked.
    close_code: [u8; 2],
    close_have: u8,
    /// Bytes fed since the stream was last at a message boundary.
    pub(super) unfinished: u64,
}

impl FrameTracker {
    /// Header length announced by its second byte (mask and length bits).
    fn header_len(second: u8) -> usize {
        let extra = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + extra + if second & 0x80 != 0 { 4 } else { 0 }
    }

    pub(super) fn feed(&mut self, input: &[u8]) {
        self.unfinished += input.len() as u64;
        self.feed_frames(input);
        if self.at_boundary() {
            self.unfinished = 0;
        }
    }

    fn feed_frames(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            if self.left > 0 {
                let take = self.left.min(input.len() as u64);
                if let Some((mask, at)) = &mut self.close {
                    for &b in &input[..take as usize] {
                        if *at < 2 {
                            self.close_code[*at as usize] = b ^ mask[*at as usize];
                            self.close_have += 1;
                        }
                        *at += 1;
                    }
                }
                self.left -= take;
                input = &input[take as usize..];
                continue;
            }
            let have = usize::from(self.have);
            let need = if have < 2 {
                2
            } else {
                Self::header_len(self.head[1])
            };
            let take = (need - have).min(input.len());
            self.head[have..have + take].copy_from_slice(&input[..take]);
            self.have += take as u8;
            input = &input[take..];
            let have = usize::from(self.have);
            if have < 2 || have < Self::header_len(self.head[1]) {
                continue;
            }
            let h = &self.head;
            let len = match h[1] & 0x7f {
                126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
                127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
                n => u64::from(n),
            };
            // Data frames (opcodes 0-7) open or close a fragmented message;
            // control frames may come between fragments.
            if h[0] & 0x08 == 0 {
                self.fragmented = h[0] & 0x80 == 0;
            }
            self.big |= len >= SHRINK_AFTER;
            self.bad_length |= h[1] & 0x7f == 127 && h[2] & 0x80 != 0;
            self.close = None;
            if h[0] & 0x0f == 0x8 {
                let end = usize::from(self.have);
                let mask = match h[1] & 0x80 {
                    0 => [0; 4],
                    _ => [h[end - 4], h[end - 3], h[end - 2], h[end - 1]],
                };
                self.close = Some((mask, 0));
                self.close_have = 0;
            }
            self.left = len;
            self.have = 0;
        }
    }

    /// The code of the last close frame the peer sent, if it carried one.
    pub(super) fn close_code(&self) -> Option<u16> {
        (self.close_have >= 2).then(|| u16::from_be_bytes(self.close_code))
    }

    pub(super) fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0 && !self.fragmented
    }
}
