//! The inbound frame reader: where a connection's next read lands, and how
//! the bytes it brought become frames. It owns no socket (the reactor makes
//! every read) and knows no layer (TLS and WebSocket hand it their output
//! through a closure); like tokio-util's `FramedImpl`, it stands between
//! the I/O and the [`Packer`], and is tested alone (`reader/tests.rs`).
//!
//! One reader serves every connection of a loop; what a connection keeps
//! between reads is its `partial` frame, `None` while it is between frames.
//!
//! ```text
//!  connection's partial            the read lands in            after the read
//!  ─────────────────────────────   ─────────────────────────    ─────────────────────────────────────
//!  None (between frames)           rx, the loop's buffer        whole frames split off rx in one
//!                                  (a layer: scratch, then      split_to (the batch); a trailing
//!                                  the layer's output into rx)  small partial frame is copied to a
//!                                                               pooled buffer; a large one keeps rx,
//!                                                               with room reserved for its rest
//!  Some, spare room < read size    scratch, appended to it      frames split off it; it is emptied
//!                                                               (spent) or kept with what is left
//!  Some, spare room >= read size   its spare room (plain TCP):  the rest of a large frame, read
//!                                  up to the whole rest         without a copy
//! ```
//!
//! Buffers a batch's bodies share (`spent`) go back to the pool only after
//! the batch is handled; the pool keeps those no body still shares.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::{Bytes, BytesMut};

use super::{check_frame, Message, Packer, Peek, ServerPacker};
use crate::buf::pool::Pool;
use crate::error::{panic_message, CloseReason, PackError};

/// A frame found by [`Packer::peek`]: its body lies in [`Batch::bytes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameRef {
    id: u32,
    seq: u32,
    body: Range<usize>,
}

/// The messages of one read, in order: first `msgs` (decoded with
/// [`Packer::decode`], or whole messages made by a layer), then `frames`
/// (found with [`Packer::peek`], their bodies in `bytes`).
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) msgs: Vec<Message>,
    pub(crate) frames: Vec<FrameRef>,
    pub(crate) bytes: Bytes,
    /// Bytes of the allocation `bytes` was split from (what a body kept
    /// from it pins), and the same for decoded `msgs` (0: each message
    /// is its own allocation, as a layer's are).
    pub(crate) frames_alloc: usize,
    pub(crate) msgs_alloc: usize,
}

impl Batch {
    /// Number of messages.
    pub(crate) fn len(&self) -> usize {
        self.msgs.len() + self.frames.len()
    }

    /// Every message as `(id, seq, body, what body lies in, the size of
    /// the allocation that lies in)`, in order.
    #[inline]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, u32, &[u8], &Bytes, usize)> {
        let msgs = self.msgs.iter().map(|m| {
            let alloc = self.msgs_alloc.max(m.body.len());
            (m.id, m.seq, &m.body[..], &m.body, alloc)
        });
        let frames = self.frames.iter().map(|f| {
            let body = &self.bytes[f.body.clone()];
            (f.id, f.seq, body, &self.bytes, self.frames_alloc)
        });
        msgs.chain(frames)
    }

    /// Forget every message (keeping the vectors' capacity).
    pub(crate) fn clear(&mut self) {
        self.msgs.clear();
        self.frames.clear();
        self.bytes = Bytes::new();
        self.frames_alloc = 0;
        self.msgs_alloc = 0;
    }

    /// Turn found frames into messages, before `bytes` is replaced.
    fn frames_into_msgs(&mut self) {
        if !self.frames.is_empty() {
            self.msgs_alloc = self.msgs_alloc.max(self.frames_alloc);
        }
        for f in self.frames.drain(..) {
            self.msgs.push(Message {
                id: f.id,
                seq: f.seq,
                body: self.bytes.slice(f.body),
            });
        }
    }
}

/// Where a connection's next read lands.
#[derive(Debug)]
pub(crate) enum Landing<'a> {
    /// Into the spare room of this buffer, at most `max` bytes (plain TCP:
    /// the bytes are the stream).
    Spare { buf: &'a mut BytesMut, max: usize },
    /// Into the scratch buffer; a layer then turns them into stream bytes.
    Scratch(&'a mut [u8]),
}

impl Landing<'_> {
    /// How many bytes a read is asked for (a shorter read drained the
    /// socket).
    pub(crate) fn asked(&self) -> usize {
        match self {
            Landing::Spare { buf, max } => (buf.capacity() - buf.len()).min(*max),
            Landing::Scratch(s) => s.len(),
        }
    }

    /// Whether the bytes land straight in the stream (no layer).
    pub(crate) fn is_direct(&self) -> bool {
        matches!(self, Landing::Spare { .. })
    }

    /// Land what of `input` fits, as a read from a socket would (the
    /// reader's tests and fuzz driver feed it so): how many bytes, and
    /// whether they landed straight in the stream.
    #[cfg(any(test, feature = "bench-internals"))]
    pub(crate) fn fill(self, input: &[u8]) -> (usize, bool) {
        let direct = self.is_direct();
        let n = input.len().min(self.asked());
        match self {
            Landing::Spare { buf, .. } => {
                let before = buf.capacity();
                buf.extend_from_slice(&input[..n]);
                assert_eq!(buf.capacity(), before, "a read never grows its buffer");
            }
            Landing::Scratch(s) => s[..n].copy_from_slice(&input[..n]),
        }
        assert!(n > 0, "a landing with no room");
        (n, direct)
    }
}

/// A loop's frame reader; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct FrameReader {
    /// Where a read that a layer transforms lands.
    scratch: Box<[u8]>,
    /// The stream buffer for a connection with no partial frame.
    rx: BytesMut,
    batch: Batch,
    /// Emptied partial-frame buffers, pooled once the batch is handled.
    spent: Vec<BytesMut>,
}

impl FrameReader {
    /// A reader whose reads ask for `read_size` bytes.
    pub(crate) fn new(read_size: usize) -> Self {
        FrameReader {
            scratch: vec![0; read_size].into_boxed_slice(),
            rx: BytesMut::new(),
            batch: Batch::default(),
            spent: Vec::new(),
        }
    }

    /// The scratch buffer, for reads whose bytes are thrown away.
    pub(crate) fn scratch(&mut self) -> &mut [u8] {
        &mut self.scratch
    }

    /// Where the next read of a connection with `partial` lands. `plain`:
    /// no layer transforms its bytes.
    pub(crate) fn landing<'a>(
        &'a mut self,
        partial: &'a mut Option<BytesMut>,
        plain: bool,
    ) -> Landing<'a> {
        let size = self.scratch.len();
        let direct = plain
            && partial
                .as_ref()
                .is_none_or(|p| p.capacity() - p.len() >= size);
        match partial {
            None if direct => {
                self.rx.clear();
                self.rx.reserve(size);
                Landing::Spare {
                    buf: &mut self.rx,
                    max: size,
                }
            }
            // The rest of a large frame, as much as its room (see
            // `make_room`) takes.
            Some(p) if direct => Landing::Spare {
                buf: p,
                max: usize::MAX,
            },
            _ => Landing::Scratch(&mut self.scratch),
        }
    }

    /// Turn the `n` bytes a read just brought (to the [`landing`](Self::landing)
    /// it was given; `direct` if that was [`Landing::Spare`]) into frames in
    /// the batch, keeping a trailing partial frame in `partial`. Without
    /// `direct`, `layer` first turns the scratch bytes into stream bytes or
    /// whole messages.
    ///
    /// `Err` says why the connection must close (a layer failed; the packer
    /// reported a protocol error, panicked, or returned a message without
    /// consuming input). The messages before the failure are still in the
    /// batch, to be handled before the close.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decode(
        &mut self,
        packer: &ServerPacker,
        partial: &mut Option<BytesMut>,
        pool: &RefCell<Pool>,
        n: usize,
        direct: bool,
        peer: SocketAddr,
        layer: impl FnOnce(&mut [u8], &mut BytesMut, &mut Vec<Message>) -> Result<(), CloseReason>,
    ) -> Result<(), CloseReason> {
        // Called twice before a dispatch (a WebSocket upgrade, then what
        // came behind it): `bytes` is about to be replaced.
        self.batch.frames_into_msgs();
        let buf = match partial.as_mut() {
            Some(p) => p,
            // Read straight into `rx`: the bytes are already there.
            None if direct => &mut self.rx,
            None => {
                self.rx.clear();
                &mut self.rx
            }
        };
        let mut failed = None;
        if !direct {
            if let Err(reason) = layer(&mut self.scratch[..n], buf, &mut self.batch.msgs) {
                failed = Some(reason);
            }
        }
        let spare_before = buf.capacity() - buf.len();
        let alloc_before = buf.capacity();
        let decoded_before = self.batch.len();
        let split = match packer {
            ServerPacker::Length(p) => split_frames(p, buf, &mut self.batch, peer),
            ServerPacker::Custom(p) => split_frames(&**p, buf, &mut self.batch, peer),
        };
        let (decoded, missing) = split.unwrap_or_else(|| {
            self.batch.msgs_alloc = buf.capacity();
            let msgs = &mut self.batch.msgs;
            (decode_messages(packer.as_dyn(), buf, msgs, peer), 0)
        });
        let split_off = self.batch.len() > decoded_before;
        if let Err(reason) = decoded {
            failed = Some(reason);
        }
        if let Some(reason) = failed {
            if let Some(p) = partial.take() {
                self.spent.push(p);
            }
            self.rx.clear();
            return Err(reason);
        }
        self.keep_partial(
            partial,
            pool,
            missing,
            split_off,
            (spare_before, alloc_before),
        );
        Ok(())
    }

    /// Keep what is left of the stream after the whole frames as the
    /// connection's partial frame, with room for the next read of the
    /// `missing` rest of it. Room is made only now, after the whole frames
    /// were split off: a buffer they share is not grown in place.
    /// `before`: the stream buffer's spare room and capacity before the
    /// frames were split off.
    fn keep_partial(
        &mut self,
        partial: &mut Option<BytesMut>,
        pool: &RefCell<Pool>,
        missing: usize,
        split_off: bool,
        (spare_before, alloc_before): (usize, usize),
    ) {
        let size = self.scratch.len();
        let spare_after = self.rx.capacity() - self.rx.len();
        let large = missing >= size
            // A packer's `decode` made room for a large frame itself.
            || spare_after > spare_before && spare_after >= size;
        match partial.take() {
            Some(p) if p.is_empty() => self.spent.push(p),
            // Frames were split off this buffer and a small partial frame
            // is left, or one whose frame needs far less room than the
            // buffer had: it moves to a buffer of its size, so the
            // connection does not pin (nor count) an allocation the bodies
            // share (possibly a large frame's), and this one is recycled
            // once they are dropped. The whole allocation is what counts:
            // the tail's own capacity hides it, and once the bodies are
            // gone a `reserve` on the tail takes all of it back.
            Some(p)
                if split_off
                    && (p.len() + missing < size || alloc_before > p.len() + missing + size) =>
            {
                *partial = Some(pooled_copy(pool, &p, missing, size));
                self.spent.push(p);
            }
            Some(mut p) => {
                self.make_room(&mut p, missing);
                *partial = Some(p);
            }
            // A large frame: the connection keeps this buffer, and the rest
            // of the frame is read straight into it.
            None if large => {
                let mut p = std::mem::take(&mut self.rx);
                self.make_room(&mut p, missing);
                *partial = Some(p);
            }
            None if !self.rx.is_empty() => {
                *partial = Some(pooled_copy(pool, &self.rx, missing, size));
                self.rx.clear();
            }
            None => {}
        }
    }

    /// Room for the next read of the `missing` rest of a frame (0:
    /// unknown, nothing is reserved): at least one read's worth, growing
    /// with what has arrived (at most doubling the buffer) and never past
    /// the frame's end. So a frame's memory follows the bytes that
    /// arrive, whatever length its header declares, and a completed
    /// frame's buffer is no larger than the frame (a reply sharing its
    /// body pins about what it counts). Growing copies into an exact new
    /// buffer (the old one goes back to the pool once no body shares it).
    fn make_room(&mut self, p: &mut BytesMut, missing: usize) {
        let size = self.scratch.len();
        if missing == 0 || p.capacity() - p.len() >= missing.min(size) {
            return;
        }
        let step = missing.min(p.len().max(4 * size));
        let mut bigger = BytesMut::with_capacity(p.len() + step);
        bigger.extend_from_slice(p);
        self.spent.push(std::mem::replace(p, bigger));
    }

    /// The messages decoded so far, to be handled; give the batch back
    /// with [`finish`](Self::finish).
    pub(crate) fn take_batch(&mut self) -> Batch {
        std::mem::take(&mut self.batch)
    }

    /// The batch is handled: keep its vectors, and give the buffers its
    /// bodies shared back to the pool (it keeps those no body still
    /// shares).
    pub(crate) fn finish(&mut self, mut batch: Batch, pool: &RefCell<Pool>) {
        batch.clear();
        self.batch = batch;
        if !self.spent.is_empty() {
            let mut pool = pool.borrow_mut();
            for p in self.spent.drain(..) {
                pool.put_read(p);
            }
        }
    }
}

/// A partial frame's bytes copied into a buffer from the pool (at most
/// `slack` larger than the frame), with room for the `missing` rest of it.
fn pooled_copy(pool: &RefCell<Pool>, bytes: &[u8], missing: usize, slack: usize) -> BytesMut {
    let mut p = pool.borrow_mut().take_read(bytes.len() + missing, slack);
    p.reserve(bytes.len() + missing);
    p.extend_from_slice(bytes);
    p
}

/// The `peek` path: note every whole frame at the front of `buf` in the
/// batch and split them off into its `bytes` (one split for all of them).
/// `None` when the packer does not peek; else whether the connection must
/// close (`Err` says why; the frames before the bad one are kept) and how
/// many bytes the incomplete frame after them still misses (0 if unknown).
pub(crate) fn split_frames<P: Packer + ?Sized>(
    packer: &P,
    buf: &mut BytesMut,
    batch: &mut Batch,
    peer: SocketAddr,
) -> Option<(Result<(), CloseReason>, usize)> {
    let mut offset = 0;
    let mut result = Ok(());
    let mut missing = 0;
    loop {
        let rest = &buf[offset..];
        match catch_unwind(AssertUnwindSafe(|| packer.peek(rest))) {
            Ok(Ok(Peek::Frame { id, seq, body, len })) => {
                if let Err(e) = check_frame(&body, len, rest.len()) {
                    result = Err(CloseReason::Protocol(e));
                    break;
                }
                batch.frames.push(FrameRef {
                    id,
                    seq,
                    body: offset + body.start..offset + body.end,
                });
                offset += len;
            }
            Ok(Ok(Peek::Incomplete { frame_len })) => {
                match frame_len {
                    Some(f) if f <= rest.len() => {
                        result = Err(CloseReason::Protocol(PackError::Malformed(format!(
                            "packer's peek reported an incomplete frame of {f} bytes \
                             with {} bytes at hand",
                            rest.len()
                        ))));
                    }
                    Some(f) => missing = f - rest.len(),
                    None => {}
                }
                break;
            }
            Ok(Ok(Peek::Unsupported)) if offset == 0 => return None,
            Ok(Ok(Peek::Unsupported)) => {
                result = Err(CloseReason::Protocol(PackError::Malformed(
                    "packer's peek answered Unsupported after a frame".into(),
                )));
                break;
            }
            Ok(Err(e)) => {
                result = Err(CloseReason::Protocol(e));
                break;
            }
            Err(panic) => {
                log::error!(
                    "{peer}: packer panicked in peek: {}",
                    panic_message(&*panic)
                );
                result = Err(CloseReason::HandlerPanic);
                break;
            }
        }
    }
    if offset > 0 {
        batch.frames_alloc = buf.capacity();
        batch.bytes = buf.split_to(offset).freeze();
    }
    Some((result, missing))
}

/// The `decode` path: decode every whole frame at the front of `buf` into
/// `msgs`. `Err` says why the connection must close (the messages before
/// the bad frame are kept).
pub(crate) fn decode_messages(
    packer: &dyn Packer,
    buf: &mut BytesMut,
    msgs: &mut Vec<Message>,
    peer: SocketAddr,
) -> Result<(), CloseReason> {
    loop {
        let before = buf.len();
        match catch_unwind(AssertUnwindSafe(|| packer.decode(buf))) {
            Ok(Ok(Some(m))) if buf.len() < before => msgs.push(m),
            Ok(Ok(Some(_))) => {
                return Err(CloseReason::Protocol(PackError::Malformed(
                    "packer returned a message without consuming input".into(),
                )))
            }
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(CloseReason::Protocol(e)),
            Err(panic) => {
                log::error!(
                    "{peer}: packer panicked in decode: {}",
                    panic_message(&*panic)
                );
                return Err(CloseReason::HandlerPanic);
            }
        }
    }
}

#[cfg(test)]
mod tests;
