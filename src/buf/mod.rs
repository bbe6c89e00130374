//! Buffers: a connection's write queue ([`queue`]), the per-loop pool that
//! lends buffers to busy connections ([`pool`]), and the one loop that
//! writes pending bytes to a non-blocking socket ([`write_until_blocked`]).

pub(crate) mod pool;
pub(crate) mod queue;

use std::cell::RefCell;
use std::io::{self, Write};

use bytes::Bytes;

use pool::Pool;
use queue::WriteQueue;

/// A message body on its way to a write queue.
#[derive(Debug, Clone)]
pub(crate) enum Payload<'a> {
    /// Borrowed: copied when it is encoded.
    Slice(&'a [u8]),
    /// Shared: a large one is queued by reference, without a copy, when
    /// the packer can frame it so (`Packer::encode_around`).
    Shared(Bytes),
}

impl Payload<'_> {
    /// The body's bytes.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Slice(s) => s,
            Payload::Shared(b) => b,
        }
    }

    /// The body, if it is shared and large enough to be queued by
    /// reference ([`queue::SHARE_MIN`]): below that, copying it is cheaper
    /// than another chunk in the queue.
    #[inline]
    pub(crate) fn shareable(&self) -> Option<&Bytes> {
        match self {
            Payload::Shared(b) if b.len() >= queue::SHARE_MIN => Some(b),
            _ => None,
        }
    }
}

/// A connection's write queue as code above the socket sees it: the queue
/// is taken from the loop's pool on first use, so an idle connection owns
/// none.
pub(crate) struct LazyQueue<'a> {
    pub(crate) queue: &'a mut Option<Box<WriteQueue>>,
    pub(crate) pool: &'a RefCell<Pool>,
    /// A dialed connection's queue: it keeps frame boundaries from its
    /// first byte (`WriteQueue::track_frames`), whoever writes it.
    pub(crate) track: bool,
}

impl LazyQueue<'_> {
    /// The queue, taken from the pool if the connection has none.
    #[inline]
    pub(crate) fn get(&mut self) -> &mut WriteQueue {
        let q = self
            .queue
            .get_or_insert_with(|| self.pool.borrow_mut().take_write());
        if self.track {
            q.track_frames();
        }
        q
    }

    /// Drop everything queued (it can never be sent), giving the queue
    /// back to the pool.
    pub(crate) fn discard(&mut self) {
        if let Some(q) = self.queue.take() {
            self.pool.borrow_mut().put_write(q);
        }
    }

    /// Give the queue back to the pool if it is empty (an idle connection
    /// holds none).
    pub(crate) fn release_if_empty(&mut self) {
        if let Some(q) = self.queue.take_if(|q| q.is_empty()) {
            self.pool.borrow_mut().put_write(q);
        }
    }
}

/// Make room in `buf` for `take` more bytes of a unit (a TLS record, a
/// WebSocket frame) that is still `missing` bytes from its end: at least
/// what arrives now, at most doubling the buffer, never past the unit's
/// end. So what a connection holds for an unfinished unit follows the
/// bytes it was sent, whatever length the unit declares, and a trickle of
/// small reads still costs amortised O(1) copies per byte.
// Only the WebSocket layer grows such buffers.
#[cfg_attr(not(feature = "ws"), allow(dead_code))]
pub(crate) fn grow_toward(buf: &mut Vec<u8>, take: usize, missing: u64) {
    if buf.capacity() - buf.len() >= take {
        return;
    }
    /// Smallest room worth an allocation.
    const MIN_ROOM: u64 = 16;
    let end = (buf.len() as u64).saturating_add(missing);
    let doubled = (buf.capacity() as u64).saturating_mul(2).max(MIN_ROOM);
    let target = doubled.min(end).max((buf.len() + take) as u64);
    buf.reserve_exact(target as usize - buf.len());
}

/// How a flush ended: bytes written, and whether the socket is full.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flushed {
    pub(crate) written: usize,
    /// The writer said `WouldBlock`: wait for it to become writable.
    pub(crate) blocked: bool,
}

impl Flushed {
    /// Two flushes one after the other.
    pub(crate) fn then(self, next: Flushed) -> Flushed {
        Flushed {
            written: self.written + next.written,
            blocked: next.blocked,
        }
    }
}

/// Write to `w` until `next` has nothing left (`None`) or `w` would block.
/// `next` makes one write to `w` and returns its result. `WouldBlock` is a
/// result (`blocked`), not an error; `Interrupted` is retried; a write of
/// zero bytes is `WriteZero`.
pub(crate) fn write_until_blocked(
    w: &mut dyn Write,
    mut next: impl FnMut(&mut dyn Write) -> Option<io::Result<usize>>,
) -> io::Result<Flushed> {
    let mut flushed = Flushed::default();
    while let Some(result) = next(w) {
        match result {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => flushed.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                flushed.blocked = true;
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(flushed)
}

/// Write `queue` (if any) to `w` as it is, until it is empty or `w` would
/// block.
pub(crate) fn write_queue(
    queue: Option<&mut WriteQueue>,
    w: &mut dyn Write,
) -> io::Result<Flushed> {
    let Some(queue) = queue else {
        return Ok(Flushed::default());
    };
    write_until_blocked(w, |w| (!queue.is_empty()).then(|| queue.write_to(w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `limit` bytes, then says `WouldBlock` once, then is interrupted
    /// once, then takes more.
    struct Moody {
        out: Vec<u8>,
        script: Vec<io::Result<usize>>,
    }

    impl Write for Moody {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            match self.script.pop() {
                Some(Ok(n)) => {
                    let n = n.min(buf.len());
                    self.out.extend_from_slice(&buf[..n]);
                    Ok(n)
                }
                Some(Err(e)) => Err(e),
                None => Err(io::ErrorKind::WouldBlock.into()),
            }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_until_would_block_and_retries_interrupts() {
        let mut q = WriteQueue::default();
        q.extend(b"abcdef");
        let mut w = Moody {
            out: Vec::new(),
            script: vec![Ok(4), Err(io::ErrorKind::Interrupted.into()), Ok(2)],
        };
        let f = write_queue(Some(&mut q), &mut w).unwrap();
        assert_eq!(
            f,
            Flushed {
                written: 6,
                blocked: false
            }
        );
        assert_eq!(w.out, b"abcdef");
        q.extend(b"gh");
        let f = write_queue(Some(&mut q), &mut w).unwrap();
        assert_eq!(
            f,
            Flushed {
                written: 0,
                blocked: true
            }
        );
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn zero_byte_write_is_an_error() {
        let mut q = WriteQueue::default();
        q.extend(b"x");
        let mut w = Moody {
            out: Vec::new(),
            script: vec![Ok(0)],
        };
        let e = write_queue(Some(&mut q), &mut w).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero);
    }
}
