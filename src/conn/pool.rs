//! Per-loop buffer pool: idle connections hold no buffers; busy ones borrow
//! them here and give them back once empty.

use bytes::BytesMut;

use super::write::WriteQueue;

/// Pooled buffers larger than this are freed instead of kept.
const MAX_POOLED_BYTES: usize = 256 << 10;
/// At most this many buffers of each kind are kept.
const MAX_POOLED: usize = 1024;

#[derive(Default)]
// Boxed: connections hold queues as `Option<Box<_>>` (8 bytes while idle),
// so the pool hands the same boxes back and forth without moving them.
#[allow(clippy::vec_box)]
pub(crate) struct Pool {
    reads: Vec<BytesMut>,
    writes: Vec<Box<WriteQueue>>,
}

impl Pool {
    pub(crate) fn take_read(&mut self) -> BytesMut {
        self.reads.pop().unwrap_or_default()
    }

    pub(crate) fn put_read(&mut self, mut buf: BytesMut) {
        buf.clear();
        if self.reads.len() < MAX_POOLED && buf.capacity() <= MAX_POOLED_BYTES {
            self.reads.push(buf);
        }
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
