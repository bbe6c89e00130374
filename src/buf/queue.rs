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

#[derive(Default)]
pub(crate) struct WriteQueue {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl WriteQueue {
    /// Bytes waiting to be written.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append to the coalescing buffer with `encode`. If it fails or
    /// panics, whatever it appended is discarded.
    #[inline]
    pub(crate) fn encode_with<E>(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut appending = Appending::new(&mut self.tail);
        encode(appending.tail)?;
        self.len += appending.keep();
        Ok(())
    }

    /// Queue `body` by reference between the bytes `frame` appends before
    /// and after it (`Packer::encode_around`). Returns `false`, with nothing
    /// queued, when `frame` cannot frame it so (or fails, or panics).
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
        self.push_shared(body);
        self.extend(&after);
        Ok(true)
    }

    /// Queue an already encoded, possibly shared frame without copying it.
    pub(crate) fn push_shared(&mut self, frame: Bytes) {
        if frame.is_empty() {
            return;
        }
        self.seal();
        self.len += frame.len();
        self.chunks.push_back(frame);
    }

    /// Queue a shared frame's pieces by reference.
    pub(crate) fn push_frame(&mut self, frame: &SharedFrame) {
        self.push_shared(frame.head.clone());
        self.push_shared(frame.body.clone());
        self.push_shared(frame.tail.clone());
    }

    /// Append bytes to the coalescing buffer (layer output: pong, close).
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Put `bytes` before everything queued. Only valid while nothing of
    /// the queue has been written (a WebSocket upgrade response goes before
    /// the frames sent while the upgrade was pending).
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn push_front(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.seal();
        self.len += bytes.len();
        self.chunks.push_front(bytes);
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

    fn consume(&mut self, mut n: usize) {
        self.len -= n;
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

    /// Drop everything pending (the connection is going away).
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.tail.clear();
        self.len = 0;
    }

    /// Bytes of heap this queue keeps while empty (for the pool's cap).
    pub(crate) fn retained(&self) -> usize {
        self.tail.capacity() + self.chunks.capacity() * std::mem::size_of::<Bytes>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `limit` bytes per call.
    struct Trickle {
        out: Vec<u8>,
        limit: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.limit);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn keeps_order_across_coalesced_and_shared_chunks() {
        let mut q = WriteQueue::default();
        q.encode_with(|b| {
            b.extend_from_slice(b"ab");
            Ok::<_, ()>(())
        })
        .unwrap();
        q.push_shared(Bytes::from_static(b"cde"));
        q.encode_with(|b| {
            b.extend_from_slice(b"f");
            Ok::<_, ()>(())
        })
        .unwrap();
        assert!(q
            .encode_with(|b| {
                b.extend_from_slice(b"XX");
                Err(())
            })
            .is_err());
        assert_eq!(q.len(), 6);
        let mut w = Trickle {
            out: Vec::new(),
            limit: 2,
        };
        while !q.is_empty() {
            q.write_to(&mut w).unwrap();
        }
        assert_eq!(w.out, b"abcdef");
    }

    #[test]
    fn a_panicking_encoder_leaves_nothing_behind() {
        let mut q = WriteQueue::default();
        q.extend(b"ok");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            q.encode_with(|b| -> Result<(), ()> {
                b.extend_from_slice(b"half");
                panic!("encoder bug")
            })
        }));
        assert!(panicked.is_err());
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            q.encode_around(
                Bytes::from_static(b"body"),
                |before, _| -> Result<bool, ()> {
                    before.extend_from_slice(b"head");
                    panic!("encoder bug")
                },
            )
        }));
        assert!(panicked.is_err());
        assert_eq!(q.len(), 2);
        let mut out = Vec::new();
        while !q.is_empty() {
            q.write_to(&mut out).unwrap();
        }
        assert_eq!(out, b"ok");
    }

    #[test]
    fn encode_around_queues_the_body_by_reference_in_order() {
        let mut q = WriteQueue::default();
        q.extend(b"<");
        let body = Bytes::from(vec![b'b'; 3]);
        let queued = q
            .encode_around(body.clone(), |before, after| {
                before.extend_from_slice(b"H");
                after.extend_from_slice(b"T");
                Ok::<_, ()>(true)
            })
            .unwrap();
        assert!(queued);
        // Declined or failed: nothing of it stays queued.
        let declined = q.encode_around(body.clone(), |before, _| {
            before.extend_from_slice(b"XX");
            Ok::<_, ()>(false)
        });
        assert_eq!(declined, Ok(false));
        assert!(q
            .encode_around(body, |before, _| {
                before.extend_from_slice(b"XX");
                Err(())
            })
            .is_err());
        q.extend(b">");
        assert_eq!(q.len(), 7);
        let mut w = Trickle {
            out: Vec::new(),
            limit: 3,
        };
        while !q.is_empty() {
            q.write_to(&mut w).unwrap();
        }
        assert_eq!(w.out, b"<HbbbT>");
    }
}
