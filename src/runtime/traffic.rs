//! [`ConnHandle::traffic`] (the `metrics` feature): one connection's
//! counts, read on its loop, which alone writes them.

use super::{with_current, Command, ConnHandle, LoopCore, Receipt};
use crate::conn::metered::Traffic;
use crate::error::Error;

impl ConnHandle {
    /// The connection's traffic so far: bytes and messages each way (see
    /// [`Traffic`](crate::Traffic)).
    ///
    /// The counts live in the connection, written by its loop without a
    /// lock or an atomic. On that loop's thread (a handler or hook) the
    /// receipt is ready at once; from another thread the loop is asked
    /// through its inbox and answers when it gets there (a few
    /// microseconds on a loop that is not stuck in a handler).
    ///
    /// # Errors
    ///
    /// In the receipt: [`Error::Closed`] if the connection is gone (its
    /// counts went with it; while its `on_close` runs on its loop, the
    /// handle still gives its totals there), [`Error::ShutDown`],
    /// [`Error::InboxFull`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// # fn report(handle: netloom::ConnHandle) {
    /// if let Some(Ok(t)) = handle.traffic().wait_timeout(Duration::from_secs(1)) {
    ///     println!("{}: {} B in, {} B out", handle.id(), t.bytes_in, t.bytes_out);
    /// }
    /// # }
    /// # let _ = report;
    /// ```
    pub fn traffic(&self) -> Receipt<Traffic> {
        let (runtime, id) = (&self.runtime, self.id);
        if let Some(now) = with_current(runtime, id.loop_index(), |core| core.table.traffic(id)) {
            return Receipt::ready(now);
        }
        if runtime.is_shut_down() {
            return Receipt::ready(Err(Error::ShutDown));
        }
        let (receipt, reply) = Receipt::pending(runtime.clone(), id.loop_index());
        let job = Box::new(move |core: &LoopCore| reply.send(core.table.traffic(id)));
        match runtime.push(id.loop_index(), 0, Command::Run { bytes: 0, job }) {
            Ok(()) => receipt,
            Err(e) => Receipt::ready(Err(e)),
        }
    }
}
