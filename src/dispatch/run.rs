//! [`ConnHandle::run`]: code from another thread run on a connection's own
//! loop with its [`Session`]. It is defined here, not with the handle in
//! `runtime`: a `Session` belongs to the application layer, and the
//! runtime only carries the job (`Command::Run`) to the loop.

use std::mem::size_of;

use super::context::Session;
use super::exec;
use crate::error::Error;
use crate::runtime::{Command, ConnHandle, LoopCore, Receipt, Reply};

impl ConnHandle {
    /// Run `f` on the connection's own loop thread with its [`Session`],
    /// as a handler would: read or change its user data, send, close.
    /// The [`Receipt`] gives what `f` returned, or [`Error::Closed`] if
    /// the connection was gone (then `f` does not run).
    ///
    /// For work finished on another thread: a login checked by a worker
    /// stores the user in the session, and the connection's next message
    /// finds it. `f` runs between messages, never during a handler, and
    /// before `on_close` if the connection is closing (then `on_close`
    /// sees what it stored): either `f` ran and `on_close` will see its
    /// effect, or the receipt says `Closed`.
    ///
    /// `f` always goes through the loop's inbox, in order with the
    /// caller's sends, also when called on that loop (in a handler: it
    /// runs after the messages of the current read).
    ///
    /// While the connection's work is at a worker
    /// ([`Exec::Pool`](crate::Exec::Pool)), `f` waits behind it (the
    /// worker holds the connection's data) and then runs on the loop;
    /// when [`Exec::Single`](crate::Exec::Single) is the server's model,
    /// `f` runs on the logic thread, in order with the handlers. A panic in `f` closes
    /// the connection with [`CloseReason::HandlerPanic`](crate::CloseReason)
    /// and the receipt says `Closed`.
    ///
    /// ```no_run
    /// use netloom::Server;
    ///
    /// struct User(String);
    ///
    /// fn check_password(body: &[u8]) -> Option<String> {
    ///     std::str::from_utf8(body).ok().map(str::to_owned) // a slow check
    /// }
    ///
    /// fn main() -> netloom::Result<()> {
    ///     let server = Server::builder()
    ///         .route(1, |ctx| {
    ///             let (handle, body) = (ctx.handle(), ctx.body_bytes());
    ///             std::thread::spawn(move || {
    ///                 let Some(name) = check_password(&body) else { return };
    ///                 let stored = handle.run(|session| {
    ///                     session.data_mut().insert(User(name));
    ///                     session.send(1, b"welcome")
    ///                 });
    ///                 if let Err(e) = stored.wait().and_then(|sent| sent) {
    ///                     log::debug!("{}: login not stored: {e}", handle.id());
    ///                 }
    ///             });
    ///         })
    ///         .route(2, |ctx| {
    ///             let name = ctx.data().get::<User>().map_or("stranger", |u| &u.0);
    ///             ctx.reply(2, format!("hello, {name}"))
    ///         })
    ///         .bind("127.0.0.1:6565")?
    ///         .start()?;
    ///     server.join()?;
    ///     Ok(())
    /// }
    /// ```
    ///
    /// The receipt's errors: [`Error::Closed`] (the connection is gone or
    /// `f` panicked), [`Error::ShutDown`] (the loop has stopped),
    /// [`Error::InboxFull`] (the loop's inbox is over
    /// `Config::inbox_capacity`; `f` was dropped unrun).
    pub fn run<F, R>(&self, f: F) -> Receipt<R>
    where
        F: FnOnce(&mut Session<'_>) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (runtime, to) = (&self.runtime, self.id);
        let (receipt, reply) = Receipt::pending_behind(runtime.clone(), to);
        let job = Box::new(move |core: &LoopCore| {
            // Unanswered (the connection is gone, or `f` panicked): Closed.
            let answer = Answer(Some(reply));
            exec::submit(
                core,
                to,
                Box::new(move |at, id, peer, profile, data| {
                    let mut session = Session {
                        at,
                        id,
                        peer,
                        profile,
                        data,
                    };
                    let r = f(&mut session);
                    answer.send(r);
                }),
                // Until `on_close` has run, `f` may still store what it sees.
                true,
            );
        });
        // What the closure holds counts against the inbox as a message does.
        let bytes = size_of::<Command>() + size_of::<F>();
        match runtime.push(to.loop_index(), bytes, Command::Run { bytes, job }) {
            Ok(()) => receipt,
            Err(e) => Receipt::ready(Err(e)),
        }
    }
}

/// A [`Reply`] that answers [`Error::Closed`] if dropped unanswered.
struct Answer<R>(Option<Reply<R>>);

impl<R> Answer<R> {
    fn send(mut self, r: R) {
        if let Some(reply) = self.0.take() {
            reply.send(Ok(r));
        }
    }
}

impl<R> Drop for Answer<R> {
    fn drop(&mut self) {
        if let Some(reply) = self.0.take() {
            reply.send(Err(Error::Closed));
        }
    }
}
