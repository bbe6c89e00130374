//! Per-loop buffer pool: idle connections hold no buffers; busy ones borrow
//! them here and give them back once empty.

use bytes::BytesMut;

use super::queue::WriteQueue;

/// Pooled buffers larger than this are freed instead of kept.
const MAX_POOLED_BYTES: usize = 256 << 10;
/// A pooled read buffer up to this size serves any small need.
const SMALL: usize = 512;
/// At most this many buffers of each kind are kept.
const MAX_POOLED: usize = 1024;
/// At most this many bytes of read buffers are kept in all. A frame
/// that grew over several reads gives back each buffer it outgrew, and
/// only one is taken again per partial frame: without this bound the pool
/// filled to `MAX_POOLED` buffers of up to `MAX_POOLED_BYTES` (256 MiB a
/// loop) under honest traffic of mixed sizes, kept after every connection
/// was gone (found by `examples/soak`; `tests/pool_retention.rs`).
const MAX_POOLED_READ_BYTES: usize = 1 << 20;

#[derive(Default)]
// Boxed: connections hold queues as `Option<Box<_>>` (8 bytes while idle),
// so the pool hands the same boxes back and forth without moving them.
#[allow(clippy::vec_box)]
pub(crate) struct Pool {
    reads: Vec<BytesMut>,
    /// The capacity of `reads`, in all.
    read_bytes: usize,
    writes: Vec<Box<WriteQueue>>,
}

impl Pool {
    /// A read buffer for `need` bytes: the pool's latest if it holds them
    /// and is not much larger (at most twice, or [`SMALL`], and at most
    /// `slack` more), else a new one of exactly `need`. A connection's
    /// partial frame thus never holds, and is never counted against the
    /// partial-frame budget for, a pooled buffer far larger than itself.
    pub(crate) fn take_read(&mut self, need: usize, slack: usize) -> BytesMut {
        let most = need
            .saturating_mul(2)
            .max(SMALL)
            .min(need.saturating_add(slack));
        let fits = self
            .reads
            .last()
            .is_some_and(|b| (need..=most).contains(&b.capacity()));
        match self.reads.pop() {
            Some(buf) if fits => {
                self.read_bytes -= buf.capacity();
                buf
            }
            Some(buf) => {
                self.reads.push(buf);
                BytesMut::with_capacity(need)
            }
            None => BytesMut::with_capacity(need),
        }
    }

    /// Keep `buf` for another connection if its whole allocation is this
    /// loop's alone and small; otherwise free it.
    ///
    /// A read buffer is usually what is left after frames were split off
    /// its front, and their bodies (handlers may keep them; large replies
    /// are queued by reference) share its allocation. Reclaiming the whole
    /// allocation proves nothing else shares it and shows its real size;
    /// pooling an unproven one would either pin a body's memory or let a
    /// later `reserve` grow one ever larger allocation (bytes doubles a
    /// uniquely owned buffer it cannot reclaim).
    pub(crate) fn put_read(&mut self, mut buf: BytesMut) {
        buf.clear();
        if self.reads.len() < MAX_POOLED
            && buf.try_reclaim(buf.capacity() + 1)
            && buf.capacity() <= MAX_POOLED_BYTES
            && self.read_bytes + buf.capacity() <= MAX_POOLED_READ_BYTES
        {
            self.read_bytes += buf.capacity();
            self.reads.push(buf);
        }
    }

    /// How many read buffers the pool keeps.
    #[cfg(test)]
    pub(crate) fn pooled_reads(&self) -> usize {
        self.reads.len()
    }

    pub(crate) fn take_write(&mut self) -> Box<WriteQueue> {
        self.writes.pop().unwrap_or_default()
    }

    pub(crate) fn put_write(&mut self, mut q: Box<WriteQueue>) {
        q.clear();
        if self.writes.len() < MAX_POOLED && q.retained() <= MAX_POOLED_BYTES {
            self.writes.push(q);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_buffers_shared_with_a_body_or_large_are_freed() {
        let mut pool = Pool::default();
        // Its frame's body still alive: not pooled.
        let mut buf = BytesMut::with_capacity(4096);
        buf.extend_from_slice(&[1; 100]);
        let body = buf.split_to(100).freeze();
        pool.put_read(buf);
        assert!(pool.reads.is_empty());
        // The body gone: the whole allocation comes back.
        let mut buf = BytesMut::with_capacity(4096);
        buf.extend_from_slice(&[1; 100]);
        drop(buf.split_to(100));
        pool.put_read(buf);
        assert!(
            pool.take_read(100, 1 << 16).capacity() < 4096,
            "too large for 100"
        );
        assert!(
            pool.take_read(2048, 1024).capacity() < 4096,
            "more than 1024 over"
        );
        assert_eq!(pool.take_read(2048, 1 << 16).capacity(), 4096);
        // Large: freed.
        let mut buf = BytesMut::with_capacity(MAX_POOLED_BYTES * 2);
        buf.extend_from_slice(&[1; 100]);
        drop(buf.split_to(100));
        pool.put_read(buf);
        assert!(pool.reads.is_empty());
        drop(body);
    }
}
