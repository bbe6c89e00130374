//! [`FrameTracker`]: splits the client's byte stream into whole frames for
//! tungstenite, keeping a frame that spans reads itself.
//!
//! tungstenite reserves a frame's whole declared length as soon as it has
//! parsed the header, so a peer that sends a header declaring a megabyte
//! and nothing else would make it commit that megabyte. Here tungstenite is
//! only ever handed whole frames: a frame cut off by the end of a read is
//! kept in our own buffer, whose room grows with the bytes that arrive (at
//! most doubling, never past the frame's end), the same rule as the
//! packer's frame reader. So what a connection holds for an unfinished
//! frame is what it was sent, and is known exactly.
//!
//! Header checks that decide a frame's fate before its payload arrives (a
//! length over the limits, an unmasked client frame, an oversized control
//! frame) are made here, on the header, so a frame that will be refused is
//! never buffered; everything else is tungstenite's to check.
//!
//! While the server waits for the peer's close frame, data frames are
//! dropped as they arrive (nothing after our close frame is delivered) and
//! only control frames reach tungstenite.

use tungstenite::protocol::frame::coding::CloseCode;

use super::SHRINK_AFTER;
use crate::buf::grow_toward;

/// Longest frame header: 2 bytes, an 8-byte length, a 4-byte mask key.
const MAX_HEADER: usize = 14;

/// What tungstenite's read buffer starts with (`READ_BUFFER`); what it
/// keeps after a large frame is that frame plus this.
const CODEC_SLACK: u64 = 64;

/// A frame header, parsed.
#[derive(Debug, Clone, Copy)]
struct Head {
    fin: bool,
    opcode: u8,
    masked: bool,
    /// Bytes of the header itself.
    len: usize,
    /// Payload bytes it declares.
    payload: u64,
}

impl Head {
    /// Parse a header from the front of `b`; `None` while incomplete.
    fn parse(b: &[u8]) -> Option<Head> {
        let (&first, &second) = (b.first()?, b.get(1)?);
        let masked = second & 0x80 != 0;
        let extra = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let len = 2 + extra + if masked { 4 } else { 0 };
        let h = b.get(..len)?;
        let payload = match second & 0x7f {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]),
            n => u64::from(n),
        };
        Some(Head {
            fin: first & 0x80 != 0,
            opcode: first & 0x0f,
            masked,
            len,
            payload,
        })
    }

    fn is_control(&self) -> bool {
        self.opcode & 0x08 != 0
    }

    /// Header and payload.
    fn total(&self) -> u64 {
        self.len as u64 + self.payload
    }
}

/// The limits a frame's header is checked against.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) max_frame: u64,
    pub(super) max_message: u64,
    /// We sent our close frame: data frames are dropped.
    pub(super) closing: bool,
    /// This end is a dial's: the server's frames come unmasked.
    pub(super) client: bool,
}

/// A frame refused on its header: the close code and why.
pub(super) type Refusal = (CloseCode, String);

/// Follows the client's byte stream frame by frame; see the module docs.
#[derive(Debug, Default)]
pub(super) struct FrameTracker {
    /// The bytes so far of a frame that spans reads (its header, and its
    /// payload unless it is being dropped). Empty, with no allocation,
    /// between frames.
    kept: Vec<u8>,
    /// Payload bytes of a dropped frame still to come.
    dropping: u64,
    /// Bytes received before the upgrade completed, not walked yet.
    pending: Vec<u8>,
    /// Inside a fragmented data message (its first frame was handed on).
    fragmented: bool,
    /// Payload bytes handed on of the fragmented message so far, and the
    /// room tungstenite's message buffer has for them (a `Vec` that grows
    /// by doubling: followed exactly, rather than guessed).
    message: u64,
    message_room: u64,
    /// What tungstenite's read buffer may keep of the largest frame handed
    /// on since it was last replaced (0: nothing beyond its start).
    pub(super) retained: u64,
    /// The code of the first close frame the peer sent, if it carried one
    /// (tungstenite acts on the first; `None` until then).
    close_code: Option<Option<u16>>,
}

impl FrameTracker {
    /// A tracker that first walks `pending`: what the client sent right
    /// behind its upgrade request.
    pub(super) fn with_pending(pending: Vec<u8>) -> Self {
        FrameTracker {
            pending,
            ..FrameTracker::default()
        }
    }

    /// What the client sent behind its upgrade request, to walk before
    /// the next read's bytes.
    pub(super) fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// Walk `input`: hand every whole frame to `feed` in order (runs of
    /// whole frames that lie in `input` as they are, a frame completed
    /// from earlier reads from `kept`), and keep a trailing partial frame.
    /// `feed` returns false when tungstenite stopped (a close, an error):
    /// the walk stops too.
    ///
    /// # Errors
    ///
    /// A frame refused on its header (what came before it was handed on).
    pub(super) fn walk(
        &mut self,
        mut input: &[u8],
        limits: Limits,
        feed: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<(), Refusal> {
        // A dropped frame's payload.
        let drop = self.dropping.min(input.len() as u64);
        self.dropping -= drop;
        input = &input[drop as usize..];
        // The frame kept from earlier reads.
        if !self.kept.is_empty() {
            let used = self.complete_kept(input, limits)?;
            input = &input[used..];
            if let Some(whole) = self.take_whole() {
                if !feed(&whole) {
                    return Ok(());
                }
            }
            if !self.kept.is_empty() || self.dropping > 0 {
                return Ok(()); // still partial (or dropped): `input` is used up
            }
        }
        // Whole frames straight from `input`.
        let mut run = 0;
        let mut at = 0;
        while at < input.len() {
            let Some(head) = Head::parse(&input[at..]) else {
                self.keep(&input[at..], None);
                break;
            };
            if let Err(refusal) = self.check(&head, limits) {
                // What came before goes first; if tungstenite stops on it,
                // its verdict stands.
                return match feed_run(feed, &input[run..at]) {
                    true => Err(refusal),
                    false => Ok(()),
                };
            }
            let total = head.total();
            let rest = (input.len() - at) as u64;
            if limits.closing && !head.is_control() {
                // Dropped: not handed on, not kept.
                if !feed_run(feed, &input[run..at]) {
                    return Ok(());
                }
                at += total.min(rest) as usize;
                self.dropping = total.saturating_sub(rest);
                run = at;
                continue;
            }
            if total > rest {
                self.keep(&input[at..], Some(total));
                break;
            }
            let end = at + total as usize;
            self.note(&head, &input[at..end]);
            at = end;
        }
        feed_run(feed, &input[run..at]);
        Ok(())
    }

    /// Add to the kept frame from `input` up to its end (or, for a frame
    /// being dropped, drop its payload); returns how many bytes were used.
    fn complete_kept(&mut self, input: &[u8], limits: Limits) -> Result<usize, Refusal> {
        let mut used = 0;
        let head = match Head::parse(&self.kept) {
            Some(head) => head,
            None => {
                // The header first: at most what a header can be.
                let take = (MAX_HEADER - self.kept.len()).min(input.len());
                let mut probe = self.kept.clone();
                probe.extend_from_slice(&input[..take]);
                let Some(head) = Head::parse(&probe) else {
                    self.kept.extend_from_slice(&input[..take]);
                    return Ok(take);
                };
                used = head.len - self.kept.len();
                self.kept.extend_from_slice(&input[..used]);
                self.check(&head, limits)?;
                head
            }
        };
        if limits.closing && !head.is_control() {
            // Our close frame went out meanwhile: drop the rest.
            let missing = head.total() - self.kept.len() as u64;
            self.kept = Vec::new();
            let drop = missing.min((input.len() - used) as u64);
            self.dropping = missing - drop;
            return Ok(used + drop as usize);
        }
        let missing = head.total() - self.kept.len() as u64;
        let take = missing.min((input.len() - used) as u64) as usize;
        grow_toward(&mut self.kept, take, missing);
        self.kept.extend_from_slice(&input[used..used + take]);
        Ok(used + take)
    }

    /// The kept frame, if it is whole now (noted as handed on).
    fn take_whole(&mut self) -> Option<Vec<u8>> {
        let head = Head::parse(&self.kept)?;
        if (self.kept.len() as u64) < head.total() {
            return None;
        }
        let whole = std::mem::take(&mut self.kept);
        self.note(&head, &whole);
        Some(whole)
    }

    /// Keep the start of a frame that the read cut off: `bytes`, with room
    /// for the rest once the frame's `total` is known.
    fn keep(&mut self, bytes: &[u8], total: Option<u64>) {
        let missing = total.map_or(MAX_HEADER as u64, |t| t);
        self.kept.clear();
        grow_toward(&mut self.kept, bytes.len(), missing);
        self.kept.extend_from_slice(bytes);
    }

    /// Refuse a frame on its header: what tungstenite would refuse only
    /// once the whole frame was buffered.
    fn check(&self, head: &Head, limits: Limits) -> Result<(), Refusal> {
        let protocol = |why: &str| Err((CloseCode::Protocol, why.to_owned()));
        if head.payload >> 63 != 0 {
            return protocol("frame length with its most significant bit set");
        }
        if !head.masked && !limits.client {
            return protocol("unmasked frame from the client");
        }
        if head.masked && limits.client {
            return protocol("masked frame from the server");
        }
        if head.is_control() {
            if head.payload > 125 {
                return protocol("control frame longer than 125 bytes");
            }
            return Ok(());
        }
        if limits.closing {
            return Ok(()); // dropped whatever its size
        }
        let size = |size: u64, max: u64| {
            Err((
                CloseCode::Size,
                format!("Space limit exceeded: Message too long: {size} > {max}"),
            ))
        };
        if head.payload > limits.max_frame {
            return size(head.payload, limits.max_frame);
        }
        let so_far = if head.opcode == 0 { self.message } else { 0 };
        let message = so_far.saturating_add(head.payload);
        if message > limits.max_message {
            return size(message, limits.max_message);
        }
        Ok(())
    }

    /// A whole frame is handed on: follow the message it belongs to, what
    /// tungstenite keeps for it, and the first close frame's code.
    fn note(&mut self, head: &Head, frame: &[u8]) {
        if head.payload >= SHRINK_AFTER {
            self.retained = self.retained.max(head.total() + CODEC_SLACK);
        }
        if head.opcode == 0x8 {
            if self.close_code.is_none() {
                self.close_code = Some(close_code(head, frame));
            }
            return;
        }
        if head.is_control() {
            return;
        }
        if head.opcode != 0 {
            self.message = 0;
            self.message_room = 0;
        }
        if head.fin {
            self.fragmented = false;
            self.message = 0;
            self.message_room = 0;
            return;
        }
        // A fragment: tungstenite appends it to its message buffer.
        self.fragmented = true;
        self.message = self.message.saturating_add(head.payload);
        if self.message > self.message_room {
            self.message_room = (self.message_room * 2).max(self.message).max(8);
        }
    }

    /// The code of the first close frame the peer sent, if it carried one.
    pub(super) fn close_code(&self) -> Option<u16> {
        self.close_code.flatten()
    }

    /// Inside a frame or a fragmented message.
    pub(super) fn in_unit(&self) -> bool {
        !self.kept.is_empty() || self.dropping > 0 || self.fragmented || !self.pending.is_empty()
    }

    /// Between messages, with nothing kept: tungstenite holds no frame or
    /// message either.
    #[cfg(test)]
    pub(super) fn at_boundary(&self) -> bool {
        !self.in_unit()
    }

    /// tungstenite holds no message in progress, nor (being handed only
    /// whole frames) any frame, whatever partial frame is kept here.
    pub(super) fn tungstenite_idle(&self) -> bool {
        !self.fragmented
    }

    /// Bytes held for unfinished units: the kept frame's buffer, bytes
    /// waiting from the upgrade, tungstenite's message buffer for a
    /// fragmented message, and what its read buffer keeps of a large
    /// frame until it is replaced.
    pub(super) fn held(&self) -> usize {
        let tungstenite = self.message_room.saturating_add(self.retained);
        (self.kept.capacity() + self.pending.capacity())
            .saturating_add(usize::try_from(tungstenite).unwrap_or(usize::MAX))
    }
}

/// Hand a run of whole frames on (nothing for an empty run); false if the
/// walk must stop.
fn feed_run(feed: &mut dyn FnMut(&[u8]) -> bool, run: &[u8]) -> bool {
    run.is_empty() || feed(run)
}

/// The code a whole close frame carries, unmasked.
fn close_code(head: &Head, frame: &[u8]) -> Option<u16> {
    let payload = frame.get(head.len..head.len + 2)?;
    let mask = match head.masked {
        true => frame.get(head.len.checked_sub(4)?..head.len),
        false => None,
    };
    let byte = |i: usize| payload[i] ^ mask.map_or(0, |m| m[i]);
    Some(u16::from_be_bytes([byte(0), byte(1)]))
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
