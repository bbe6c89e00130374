//! [`Receipt`]: what a connection's loop did with a request from another
//! thread, for the caller to wait on; and the sends that return one
//! ([`ConnHandle::send_confirmed`]).
//!
//! A plain cross-thread send returns once the loop's inbox has it: if the
//! loop then finds the connection closed or over its high-water mark, the
//! message is counted and dropped, and the caller never learns it. Where
//! that matters (a login answer, a payment confirmation), a receipt tells:
//! a one-shot channel the loop answers on, paid for only by those calls.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use super::local::holds;
use super::{with_current, Command, ConnHandle, LoopCore, Runtime};
use crate::buf::Payload;
use crate::error::{panic_message, CloseReason, Error, Result};
use crate::id::ConnId;

/// The outcome of a request handed to a connection's loop
/// ([`ConnHandle::send_confirmed`], [`ConnHandle::run`]): wait for it, or
/// drop it (the request is carried out all the same).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use netloom::Error;
///
/// # fn answer(handle: netloom::ConnHandle) {
/// match handle.send_confirmed(7, b"done").wait_timeout(Duration::from_secs(1)) {
///     Some(Ok(())) => {}                          // in the connection's queue
///     Some(Err(Error::Closed)) => {}              // the peer is gone
///     Some(Err(Error::BufferFull)) => {}          // the peer reads too slowly
///     Some(Err(e)) => log::warn!("not sent: {e}"),
///     None => log::warn!("the loop has not got to it yet"),
/// }
/// # }
/// # let _ = answer;
/// ```
pub struct Receipt<T> {
    outcome: Outcome<T>,
    /// The loop that answers, to refuse a `wait` on that loop's thread,
    /// and the connection whose queued work answers (to refuse a `wait` in
    /// a task holding its data).
    owner: Option<(Arc<Runtime>, usize, Option<ConnId>)>,
}

enum Outcome<T> {
    Ready(Result<T>),
    Pending(Receiver<Result<T>>),
    Taken,
}

/// The loop's end of a [`Receipt`].
pub(crate) struct Reply<T>(Sender<Result<T>>);

impl<T> Reply<T> {
    /// Report the outcome (nobody may be waiting any more: that is fine).
    pub(crate) fn send(self, outcome: Result<T>) {
        let _ = self.0.send(outcome);
    }
}

impl<T> fmt::Debug for Receipt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.outcome {
            Outcome::Ready(_) => "ready",
            Outcome::Pending(_) => "pending",
            Outcome::Taken => "taken",
        };
        f.debug_struct("Receipt").field("state", &state).finish()
    }
}

impl<T> Receipt<T> {
    /// A receipt whose outcome is known now.
    pub(crate) fn ready(outcome: Result<T>) -> Self {
        Receipt {
            outcome: Outcome::Ready(outcome),
            owner: None,
        }
    }

    /// A receipt that loop `index` of `runtime` answers through the
    /// returned [`Reply`].
    pub(crate) fn pending(runtime: Arc<Runtime>, index: usize) -> (Self, Reply<T>) {
        let (tx, rx) = bounded(1);
        let receipt = Receipt {
            outcome: Outcome::Pending(rx),
            owner: Some((runtime, index, None)),
        };
        (receipt, Reply(tx))
    }

    /// A receipt that work queued behind connection `conn`'s answers.
    pub(crate) fn pending_behind(runtime: Arc<Runtime>, conn: ConnId) -> (Self, Reply<T>) {
        let (mut receipt, reply) = Self::pending(runtime, conn.loop_index());
        if let Some(owner) = &mut receipt.owner {
            owner.2 = Some(conn);
        }
        (receipt, reply)
    }

    /// Wait until the loop has acted, and return its outcome.
    ///
    /// It comes as soon as the loop reaches the request (unless a handler
    /// blocks that loop); a loop that stops first answers
    /// [`Error::ShutDown`].
    ///
    /// # Errors
    ///
    /// The request's own (see the call that returned the receipt), or
    /// [`Error::ShutDown`] if the loop stopped before acting.
    ///
    /// # Panics
    ///
    /// On the thread of the loop that must answer (a handler or hook of
    /// that loop), and for [`ConnHandle::run`] in a handler of the same
    /// connection on a worker or the logic thread (the handler holds the
    /// connection's data the work waits for), or of any connection on the
    /// logic thread of an [`Exec::Single`](crate::Exec::Single) server
    /// (where every `run` goes): it would wait for itself forever. Use [`wait_timeout`](Self::wait_timeout) with a zero
    /// timeout there to look without waiting.
    pub fn wait(self) -> Result<T> {
        if let Outcome::Pending(_) = self.outcome {
            if let Some((runtime, index, conn)) = &self.owner {
                let on_owner = with_current(runtime, *index, |_| ()).is_some();
                assert!(
                    !on_owner,
                    "Receipt::wait on the loop thread that must answer it would never return"
                );
                let behind_me = conn.is_some_and(|conn| holds(runtime, conn));
                assert!(
                    !behind_me,
                    "Receipt::wait for ConnHandle::run would never return here: the work \
                     waits for this handler (its own connection's, or any on the logic \
                     thread of an Exec::Single server)"
                );
            }
        }
        match self.outcome {
            Outcome::Ready(outcome) => outcome,
            Outcome::Pending(rx) => rx.recv().unwrap_or(Err(Error::ShutDown)),
            Outcome::Taken => Err(Error::ShutDown),
        }
    }

    /// Wait at most `timeout` for the loop's outcome: `Some` once the loop
    /// has acted, `None` if it has not yet (wait again later; the request
    /// stands). The outcome is given once: after a `Some`, this returns
    /// `None`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<T>> {
        let outcome = match std::mem::replace(&mut self.outcome, Outcome::Taken) {
            Outcome::Ready(outcome) => outcome,
            Outcome::Pending(rx) => match rx.recv_timeout(timeout) {
                Ok(outcome) => outcome,
                Err(RecvTimeoutError::Disconnected) => Err(Error::ShutDown),
                Err(RecvTimeoutError::Timeout) => {
                    self.outcome = Outcome::Pending(rx);
                    return None;
                }
            },
            Outcome::Taken => return None,
        };
        Some(outcome)
    }
}

impl LoopCore {
    /// Run user code (a packer, a closure from another thread) for
    /// connection `to`, catching a panic: it is logged, and closes that
    /// connection only (`HandlerPanic`), as in a handler.
    pub(crate) fn guarded<R>(&self, to: ConnId, what: &str, f: impl FnOnce() -> R) -> Option<R> {
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => Some(r),
            Err(panic) => {
                log::error!("conn {to}: {what} panicked: {}", panic_message(&*panic));
                let reason = CloseReason::HandlerPanic;
                self.table.close_with(to, reason, None);
                None
            }
        }
    }
}

impl ConnHandle {
    /// Like [`send`](Self::send), returning a [`Receipt`] that says what
    /// became of the message: `Ok(())` once it is in the connection's
    /// write queue (not: read by the peer), [`Error::Closed`] if the
    /// connection was gone, [`Error::BufferFull`] if it was over its
    /// high-water mark, [`Error::Pack`] if the packer refused it.
    ///
    /// A plain `send` from another thread cannot say: it returns when the
    /// loop's inbox has the message, and what the loop finds later is only
    /// counted in `Stats::send_errors`. On the connection's own loop
    /// thread the receipt is ready at once (the same outcome `send`
    /// returns). A receipt costs a one-shot channel; `send` stays the
    /// cheap path.
    ///
    /// Errors before the loop is reached ([`Error::ShutDown`],
    /// [`Error::InboxFull`]) are in the receipt too.
    pub fn send_confirmed(&self, id: u32, body: impl AsRef<[u8]>) -> Receipt<()> {
        self.send_seq_confirmed(id, 0, body)
    }

    /// [`send_confirmed`](Self::send_confirmed) with a sequence number, as
    /// [`send_seq`](Self::send_seq): the answer to an offloaded request.
    pub fn send_seq_confirmed(&self, id: u32, seq: u32, body: impl AsRef<[u8]>) -> Receipt<()> {
        let runtime = &self.runtime;
        if runtime.is_shut_down() {
            return Receipt::ready(Err(runtime.count_send_error(Error::ShutDown)));
        }
        let (to, body) = (self.id, body.as_ref());
        if let Some(sent) = with_current(runtime, to.loop_index(), |core| {
            let body = Payload::Slice(body);
            core.table.send(to, id, seq, body)
        }) {
            return Receipt::ready(sent);
        }
        let body = Bytes::copy_from_slice(body);
        let bytes = body.len();
        let (receipt, reply) = Receipt::pending(runtime.clone(), to.loop_index());
        let job = Box::new(move |core: &LoopCore| {
            let sent = core.guarded(to, "the packer", || {
                let body = Payload::Shared(body);
                core.table.send(to, id, seq, body)
            });
            reply.send(sent.unwrap_or(Err(Error::Closed)));
        });
        match runtime.push(to.loop_index(), bytes, Command::Run { bytes, job }) {
            Ok(()) => receipt,
            Err(e) => Receipt::ready(Err(e)),
        }
    }
}
