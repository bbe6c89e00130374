//! [`oneshot`]: where a thread blocked in `PendingReply::wait` gets its
//! reply. The waiter sleeps in the kernel at once: a channel's receive
//! spins and yields before it sleeps, which, with dozens of threads
//! waiting on a few cores (a pool's callers), cost more CPU than the
//! requests themselves.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Reply;

enum Slot {
    Empty,
    Full(Reply),
    /// The sender went without a reply (the loop exited with it).
    Dropped,
    Taken,
}

struct Shared {
    slot: Mutex<Slot>,
    filled: Condvar,
}

/// The loop's end: fills the slot once; dropped unfilled, the waiter
/// learns that no reply will come.
pub(crate) struct ReplyTx(Arc<Shared>);

/// The waiting thread's end.
pub(crate) struct ReplyRx(Arc<Shared>);

/// Why [`ReplyRx`] has no reply.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoReply {
    /// Not yet (the wait ran out).
    Empty,
    /// Never: the sender is gone.
    Gone,
}

/// A reply slot and its two ends.
pub(crate) fn oneshot() -> (ReplyTx, ReplyRx) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot::Empty),
        filled: Condvar::new(),
    });
    (ReplyTx(shared.clone()), ReplyRx(shared))
}

impl Shared {
    fn put(&self, slot: Slot) {
        let mut s = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*s, Slot::Empty) {
            *s = slot;
            self.filled.notify_one();
        }
    }
}

impl ReplyTx {
    pub(crate) fn send(self, reply: Reply) {
        self.0.put(Slot::Full(reply));
    }
}

impl Drop for ReplyTx {
    fn drop(&mut self) {
        self.0.put(Slot::Dropped);
    }
}

impl ReplyRx {
    /// Wait for the reply at most `timeout`.
    pub(crate) fn recv_timeout(&self, timeout: Duration) -> Result<Reply, NoReply> {
        let deadline = Instant::now().checked_add(timeout);
        let mut s = self.0.slot.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match std::mem::replace(&mut *s, Slot::Taken) {
                Slot::Full(reply) => return Ok(reply),
                Slot::Dropped => return Err(NoReply::Gone),
                Slot::Taken => return Err(NoReply::Gone),
                Slot::Empty => *s = Slot::Empty,
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                return Err(NoReply::Empty);
            }
            s = self
                .0
                .filled
                .wait_timeout(s, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The reply if it came.
    pub(crate) fn try_recv(&self) -> Result<Reply, NoReply> {
        self.recv_timeout(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn a_reply_reaches_a_waiter_once_and_a_dropped_sender_says_so() {
        let (tx, rx) = oneshot();
        assert_eq!(rx.try_recv().err(), Some(NoReply::Empty));
        let waiter = std::thread::spawn(move || rx.recv_timeout(Duration::from_secs(10)));
        tx.send(Err(Error::Timeout));
        assert!(matches!(waiter.join().unwrap(), Ok(Err(Error::Timeout))));
        let (tx, rx) = oneshot();
        drop(tx);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).err(),
            Some(NoReply::Gone)
        );
        let (_tx, rx) = oneshot();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(10)).err(),
            Some(NoReply::Empty)
        );
    }
}
