//! The builder's execution-model settings: where routes run
//! ([`Builder::exec`], [`Builder::route_on`]; groups have
//! [`Group::exec`](crate::Group::exec)) and how much work a connection may
//! have waiting ([`Builder::exec_backlog`]).

use std::sync::Arc;

use super::Builder;
use crate::dispatch::context::{Context, IntoHandlerResult};
use crate::dispatch::exec::Exec;
use crate::dispatch::middleware::handler_fn;

impl Builder {
    /// Where the server's routes run, unless a group or route says
    /// otherwise (default [`Exec::Inline`]: on the loop).
    ///
    /// Under [`Exec::Pool`] and [`Exec::Single`] a connection's messages
    /// are handled one at a time, in arrival order, and their replies
    /// leave in order; its middleware runs where its route runs. Under
    /// [`Exec::Single`] the connections' timers
    /// ([`Session::after`](crate::Session::after), `every`, `cron`),
    /// [`ConnHandle::run`](crate::ConnHandle::run) and
    /// [`every`](Self::every) also run on the logic thread; `on_open` and
    /// `on_close` always run on the loop. What differs for a handler off
    /// the loop is in the guide (docs/GUIDE.md, "Execution models").
    ///
    /// ```no_run
    /// use netloom::{Exec, Server};
    ///
    /// fn lookup(key: &[u8]) -> Vec<u8> {
    ///     key.to_vec() // a blocking database call
    /// }
    ///
    /// let server = Server::builder()
    ///     .exec(Exec::Pool(8))
    ///     .route(1, |ctx| ctx.reply(1, lookup(ctx.body())))
    ///     // A route that never blocks stays on the loop.
    ///     .route_on(2, Exec::Inline, |ctx| ctx.reply(2, ctx.body()))
    ///     .bind("127.0.0.1:6565")?
    ///     .start()?;
    /// # drop(server);
    /// # Ok::<(), netloom::Error>(())
    /// ```
    pub fn exec(mut self, exec: Exec) -> Self {
        self.exec = exec;
        self
    }

    /// [`route`](Self::route), run on `exec` whatever the server's model.
    pub fn route_on<F, R>(mut self, id: u32, exec: Exec, handler: F) -> Self
    where
        F: Fn(&mut Context<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.routes
            .add(id, Arc::from(Vec::new()), handler_fn(handler), Some(exec));
        self
    }

    /// Bytes of work a connection may have waiting for its worker pool or
    /// logic thread (message bodies, at least 64 bytes an item) before its
    /// reads pause; they resume once it is back under half. A connection
    /// whose reads may not pause (a dialed link, or one with requests
    /// waiting for replies) is closed with
    /// [`CloseReason::Backlog`](crate::CloseReason::Backlog) instead.
    /// Default: 1 MiB.
    pub fn exec_backlog(mut self, bytes: usize) -> Self {
        self.config.exec_backlog = bytes;
        self
    }
}
