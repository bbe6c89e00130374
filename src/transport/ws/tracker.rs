//! [`FrameTracker`]: follows the client's frame headers, to know when
//! tungstenite holds no partial frame or fragmented message.

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

    pub(super) fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            if self.left > 0 {
                let take = self.left.min(input.len() as u64);
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
            self.left = len;
            self.have = 0;
        }
    }

    pub(super) fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0 && !self.fragmented
    }
}
