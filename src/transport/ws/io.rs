//! [`Io`]: the in-memory stream tungstenite runs over.

use std::io::{self, Read, Write};

use crate::buf::LazyQueue;

/// Reads the bytes of this batch, then says `WouldBlock`; writes append
/// to the connection's write queue.
pub(super) struct Io<'a, 'b> {
    pub(super) input: &'a [u8],
    pub(super) out: &'a mut LazyQueue<'b>,
    pub(super) wrote: bool,
}

impl Read for Io<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Io<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            self.out.get().extend(buf);
            self.wrote = true;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
