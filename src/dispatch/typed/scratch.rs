//! The buffer typed replies are encoded into, one per thread: no
//! allocation per message once it has grown to the largest reply.

use std::cell::RefCell;

thread_local! {
    /// Where replies are encoded before they go into the write queue.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Encode with `f` into this thread's scratch buffer, then hand the bytes
/// to `send` (which copies them into the write queue). A scratch buffer
/// already in use (an encoder that sends, re-entering) falls back to a
/// fresh one.
pub(super) fn with_scratch<R>(
    f: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
    send: impl FnOnce(&[u8]) -> crate::Result<R>,
) -> crate::Result<R> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            buf.clear();
            let r = f(&mut buf).map_err(encode_error).and_then(|()| send(&buf));
            // A rare huge reply (sent or failed half-way) does not keep its
            // memory for good.
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
            r
        }
        Err(_) => {
            let mut buf = Vec::new();
            f(&mut buf).map_err(encode_error)?;
            send(&buf)
        }
    })
}

/// The most a thread's scratch buffer keeps between replies.
const SCRATCH_KEEP: usize = 1 << 20;

fn encode_error(message: String) -> crate::Error {
    crate::Error::Encode(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> usize {
        SCRATCH.with(|cell| cell.borrow().capacity())
    }

    /// The buffer keeps up to `SCRATCH_KEEP` between replies, and not
    /// more (found by mutation testing: the bound could go, or keep
    /// nothing, with every test passing).
    #[test]
    fn the_scratch_buffer_keeps_up_to_its_bound() {
        let reply = |len: usize| {
            with_scratch(
                |buf| {
                    buf.reserve_exact(len);
                    buf.resize(len, 0);
                    Ok(())
                },
                |bytes| Ok(bytes.len()),
            )
        };
        assert_eq!(reply(100).unwrap(), 100);
        assert!(kept() >= 100, "a small reply's buffer is kept");
        assert_eq!(reply(SCRATCH_KEEP).unwrap(), SCRATCH_KEEP);
        assert_eq!(kept(), SCRATCH_KEEP, "as large as the bound: kept");
        assert_eq!(reply(SCRATCH_KEEP + 1).unwrap(), SCRATCH_KEEP + 1);
        assert_eq!(kept(), 0, "over the bound: given back");
    }
}
