//! A connection's write queue: encoded frames waiting for the socket.
//!
//! Small frames are encoded back to back into `tail` (coalescing many
//! replies into one write); shared frames (broadcast, cross-thread sends)
//! are queued as they are, without copying. A flush writes every pending
//! chunk with one vectored write.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes, BytesMut};

/// A body of at least this many bytes that is shared (a slice of the
/// receive buffer, or `Bytes` the application gave) is queued by reference; below it, copying into the coalescing buffer is
/// cheaper than another chunk (an iovec, a reference count, and a receive
/// buffer kept alive until written).
pub(crate) const SHARE_MIN: usize = 16 << 10;

/// Most chunks handed to one `writev` (Linux's IOV_MAX is 1024; a few dozen
/// already amortise the syscall).
const MAX_IOVECS: usize = 64;

/// One encoded message shared by every queue it goes to (a broadcast): the
/// packer's bytes before and after a body sent as it is, or the whole frame
/// in `head`. Cloning it costs a reference count per non-empty piece.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedFrame {
    pub(crate) head: Bytes,
    pub(crate) body: Bytes,
    pub(crate) tail: Bytes,
}

impl SharedFrame {
    /// Bytes in all.
    pub(crate) fn len(&self) -> usize {
        self.head.len() + self.body.len() + self.tail.len()
    }
}

/// Bytes being appended to a buffer by code that may fail or panic (a
/// packer): unless kept, they are cut off again when this is dropped, also
/// while unwinding, so a queue never holds half a frame it did not count.
struct Appending<'a> {
    tail: &'a mut BytesMut,
    before: usize,
}

impl<'a> Appending<'a> {
    #[inline]
    fn new(tail: &'a mut BytesMut) -> Self {
        let before = tail.len();
        Appending { tail, before }
    }

    /// Keep what was appended; returns how many bytes that is.
    #[inline]
    fn keep(&mut self) -> usize {
        let added = self.tail.len() - self.before;
        self.before = self.tail.len();
        added
    }
}

impl Drop for Appending<'_> {
    #[inline]
    fn drop(&mut self) {
        self.tail.truncate(self.before);
    }
}

/// One frame in the queue (or one unit of layer output): its length, and
/// whether it only makes sense on the connection it was queued for.
#[derive(Debug, Clone, Copy)]
struct Frame {
    len: usize,
    /// Carries a sequence number (a request, or a reply to the peer's
    /// request): on a new connection (a reconnect) nobody waits for it.
    bound: bool,
}

/// Frames queued, front first, and how far the front one is written:
/// `frames` covers exactly the `len` bytes pending, plus the `front_done`
/// bytes of the front frame already written (or handed to TLS). With it a
/// dialed connection that lost its socket can tell the frames that never
/// started (sent on the next connection) from the one cut in the middle.
/// Only a dialed connection's queue keeps them (`track_frames`): an
/// accepted connection never gets another socket, and the bookkeeping
/// would cost every message it sends (about 20 instructions).
#[derive(Default)]
pub(crate) struct WriteQueue {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
    frames: VecDeque<Frame>,
    front_done: usize,
    /// `frames` is kept (see [`track_frames`](Self::track_frames)).
    tracking: bool,
    /// Layer output (pongs: what the peer made the connection answer)
    /// queued while the queue was over its high-water mark, since it was
    /// last seen at or under it (`ConnTable::check_layer_output`).
    pub(crate) answered_over_mark: usize,
}

impl WriteQueue {
    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A frame of `len` bytes was just appended.
    #[inline]
    fn end_frame(&mut self, len: usize) {
        if self.tracking && len > 0 {
            self.frames.push_back(Frame { len, bound: false });
        }
    }

    /// Append to the coalescing buffer with `encode` (one frame). If it
    /// fails or panics, whatever it appended is discarded.
    #[inline]
    pub(crate) fn encode_with<E>(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), E> {
        let added = {
            let mut appending = Appending::new(&mut self.tail);
            encode(appending.tail)?;
            appending.keep()
        };
        self.len += added;
        self.end_frame(added);
        Ok(())
    }

    /// Queue `body` by reference between the bytes `frame` appends before
    /// and after it (`Packer::encode_around`), as one frame. Returns
    /// `false`, with nothing queued, when `frame` cannot frame it so (or
    /// fails, or panics).
    pub(crate) fn encode_around<E>(
        &mut self,
        body: Bytes,
        frame: impl FnOnce(&mut BytesMut, &mut BytesMut) -> Result<bool, E>,
    ) -> Result<bool, E> {
        let mut after = BytesMut::new();
        let mut appending = Appending::new(&mut self.tail);
        if !frame(appending.tail, &mut after)? {
            return Ok(false);
        }
        let added = appending.keep();
        drop(appending);
        self.len += added;
        let len = added + body.len() + after.len();
        self.push_chunk(body);
        self.append(&after);
        self.end_frame(len);
        Ok(true)
    }

    /// The frame queued last carries a sequence number (a request, or a
    /// reply to one): it is dropped rather than sent on another connection
    /// ([`keep_unstarted`](Self::keep_unstarted)).
    pub(crate) fn bind_last(&mut self) {
        if let Some(last) = self.frames.back_mut() {
            last.bound = true;
        }
    }

    /// Queue an already encoded piece of a frame without copying it.
    fn push_chunk(&mut self, piece: Bytes) {
        if piece.is_empty() {
            return;
        }
        self.seal();
        self.len += piece.len();
        self.chunks.push_back(piece);
    }

    /// Queue a shared frame's pieces by reference, as one frame.
    pub(crate) fn push_frame(&mut self, frame: &SharedFrame) {
        self.push_chunk(frame.head.clone());
        self.push_chunk(frame.body.clone());
        self.push_chunk(frame.tail.clone());
        self.end_frame(frame.len());
    }

    /// Append bytes of a frame to the coalescing buffer.
    fn append(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Append layer output (a pong, a ping, a close frame) to the
    /// coalescing buffer, as one unit bound to this connection: a dial
    /// that reconnects never sends the old session's on the new one.
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.append(bytes);
        self.end_frame(bytes.len());
        self.bind_last();
    }

    /// Put `bytes` before everything queued. Only valid while nothing of
    /// the queue has been written (a WebSocket upgrade response goes before
    /// the frames sent while the upgrade was pending).
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn push_front(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        debug_assert_eq!(self.front_done, 0, "push_front after a write");
        self.seal();
        self.len += bytes.len();
        let len = bytes.len();
        self.chunks.push_front(bytes);
        if self.tracking {
            self.frames.push_front(Frame { len, bound: false });
        }
    }

    /// Move the coalescing buffer's bytes into the chunk list.
    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
    }

    /// One vectored write of as much as is pending. Returns bytes written.
    pub(crate) fn write_to(&mut self, w: &mut (impl Write + ?Sized)) -> io::Result<usize> {
        // The common case, replies coalesced in `tail` and nothing shared:
        // write straight from it (no freeze into a chunk, no refcounting).
        if self.chunks.is_empty() {
            let n = w.write(&self.tail)?;
            self.tail.advance(n);
            self.len -= n;
            self.frames_done(n);
            return Ok(n);
        }
        self.seal();
        let n = if self.chunks.len() == 1 {
            w.write(&self.chunks[0])?
        } else {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                *slot = IoSlice::new(chunk);
                count += 1;
            }
            w.write_vectored(&slices[..count])?
        };
        self.consume(n);
        Ok(n)
    }

    /// Offer up to `max` pending bytes, front first, to `take`, which
    /// returns how many it accepted; stops at the first partial take.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn drain_into(&mut self, max: usize, mut take: impl FnMut(&[u8]) -> usize) {
        self.seal();
        let mut budget = max;
        while budget > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let offer = &front[..front.len().min(budget)];
            let taken = take(offer).min(offer.len());
            let partial = taken < offer.len();
            self.consume(taken);
            budget -= taken;
            if partial || taken == 0 {
                break;
            }
        }
    }

    /// Hand the front frame, whole, to `send` (a UDP session's datagram;
    /// the queue tracks its frames): from the queue's own bytes where it
    /// lies in one piece, else copied into `scratch`. Returns `None` when
    /// nothing is queued, else what `send` returned; the frame stays
    /// queued until [`pop_frame`](Self::pop_frame).
    pub(crate) fn with_front_frame<R>(
        &mut self,
        scratch: &mut Vec<u8>,
        send: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        debug_assert!(self.tracking || self.is_empty(), "untracked frames");
        let len = self.frames.front()?.len - self.front_done;
        if self.chunks.is_empty() {
            return Some(send(&self.tail[..len]));
        }
        self.seal();
        if self.chunks[0].len() >= len {
            return Some(send(&self.chunks[0][..len]));
        }
        scratch.clear();
        for chunk in &self.chunks {
            let take = (len - scratch.len()).min(chunk.len());
            scratch.extend_from_slice(&chunk[..take]);
            if scratch.len() == len {
                break;
            }
        }
        Some(send(scratch))
    }

    /// Drop the front frame (sent, or dropped for good); returns its
    /// length.
    pub(crate) fn pop_frame(&mut self) -> usize {
        let Some(front) = self.frames.front() else {
            return 0;
        };
        let len = front.len - self.front_done;
        if self.chunks.is_empty() {
            self.tail.advance(len);
            self.len -= len;
            self.frames_done(len);
        } else {
            self.consume(len);
        }
        len
    }

    /// `n` more bytes of the front frames are written.
    fn frames_done(&mut self, n: usize) {
        if !self.tracking {
            return;
        }
        let mut done = self.front_done + n;
        while let Some(front) = self.frames.front() {
            if done < front.len {
                break;
            }
            done -= front.len;
            self.frames.pop_front();
        }
        self.front_done = if self.frames.is_empty() { 0 } else { done };
    }

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        self.frames_done(n);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// The socket is gone and the queue waits for another connection (a
    /// dialed connection's reconnect): keep the frames that never started,
    /// in order; drop the front frame if part of it was written (the rest
    /// would be garbage on a new connection) and every frame bound to this
    /// connection ([`bind_last`](Self::bind_last)). Returns the bytes
    /// dropped.
    pub(crate) fn keep_unstarted(&mut self) -> usize {
        debug_assert!(
            self.tracking || self.is_empty(),
            "a queue not tracking its frames"
        );
        let cut = self.front_done > 0;
        if !cut && !self.frames.iter().any(|f| f.bound) {
            return 0;
        }
        self.seal();
        let before = self.len;
        let mut chunks = std::mem::take(&mut self.chunks).into_iter();
        let frames = std::mem::take(&mut self.frames);
        let mut rest = std::mem::replace(&mut self.front_done, 0);
        self.len = 0;
        let mut current = Bytes::new();
        for (i, frame) in frames.into_iter().enumerate() {
            let started = cut && i == 0;
            let keep = !(frame.bound || started);
            let mut left = frame.len - std::mem::take(&mut rest);
            while left > 0 {
                if current.is_empty() {
                    match chunks.next() {
                        Some(chunk) => current = chunk,
                        None => break,
                    }
                }
                let piece = current.split_to(left.min(current.len()));
                left -= piece.len();
                if !keep {
                    continue;
                }
                if piece.len() >= SHARE_MIN {
                    self.push_chunk(piece);
                } else {
                    self.append(&piece);
                }
            }
            if keep {
                self.end_frame(frame.len);
            }
        }
        before - self.len
    }

    /// Drop everything pending (the connection is going away).
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.tail.clear();
        self.len = 0;
        self.frames.clear();
        self.front_done = 0;
        self.answered_over_mark = 0;
        self.tracking = false;
    }

    /// Keep frame boundaries from now on (a dialed connection's queue: see
    /// [`keep_unstarted`](Self::keep_unstarted)). Starts only while the
    /// queue is empty, so the boundaries cover every byte pending; the
    /// queue stops when it is cleared (given back to the pool).
    #[inline]
    pub(crate) fn track_frames(&mut self) {
        if !self.tracking && self.is_empty() {
            self.tracking = true;
        }
    }

    /// Bytes of heap this queue keeps while empty (for the pool's cap).
    pub(crate) fn retained(&self) -> usize {
        self.tail.capacity()
            + self.chunks.capacity() * std::mem::size_of::<Bytes>()
            + self.frames.capacity() * std::mem::size_of::<Frame>()
    }
}

#[cfg(test)]
mod tests;
