//! Middleware: code that runs around handlers, globally or per group.
//!
//! A middleware gets the [`Context`] and a [`Next`]. It can act before
//! calling `next.run(ctx)`, after it, or instead of it (short-circuit:
//! reply, close, and return without calling `next`). Values it stores with
//! [`Context::values_mut`] reach the handler through [`Context::values`].
//!
//! ```
//! use netloom::{Context, HandlerResult, Next};
//!
//! struct UserId(u64);
//!
//! fn auth(ctx: &mut Context<'_>, next: Next<'_>) -> HandlerResult {
//!     match ctx.data().get::<UserId>().map(|u| u.0) {
//!         Some(uid) => {
//!             ctx.values_mut().insert(UserId(uid));
//!             next.run(ctx)
//!         }
//!         None => {
//!             ctx.reply(401, b"login first")?;
//!             ctx.close();
//!             Ok(())
//!         }
//!     }
//! }
//! # let _ = netloom::Server::builder().group([auth], |g| g.route(1, |_ctx| ()));
//! ```

use std::fmt;
use std::sync::Arc;

use super::context::{Context, HandlerResult, IntoHandlerResult};

/// A stored middleware.
pub(crate) type MiddlewareFn =
    Arc<dyn Fn(&mut Context<'_>, Next<'_>) -> HandlerResult + Send + Sync>;

/// A stored handler.
pub(crate) type HandlerFn = Arc<dyn Fn(&mut Context<'_>) -> HandlerResult + Send + Sync>;

/// Box a user middleware closure.
pub(crate) fn middleware_fn<F>(f: F) -> MiddlewareFn
where
    F: Fn(&mut Context<'_>, Next<'_>) -> HandlerResult + Send + Sync + 'static,
{
    Arc::new(f)
}

/// Box a user handler closure.
pub(crate) fn handler_fn<F, R>(f: F) -> HandlerFn
where
    F: Fn(&mut Context<'_>) -> R + Send + Sync + 'static,
    R: IntoHandlerResult,
{
    Arc::new(move |ctx: &mut Context<'_>| f(ctx).into_handler_result())
}

/// The rest of the chain: the remaining middleware, then the handler.
pub struct Next<'a> {
    pub(crate) chain: &'a [MiddlewareFn],
    pub(crate) handler: &'a HandlerFn,
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("remaining_middleware", &self.chain.len())
            .finish()
    }
}

impl Next<'_> {
    /// Run the rest of the chain and return its result.
    ///
    /// # Errors
    ///
    /// Whatever the rest of the chain returns.
    pub fn run(self, ctx: &mut Context<'_>) -> HandlerResult {
        match self.chain.split_first() {
            Some((first, rest)) => first(
                ctx,
                Next {
                    chain: rest,
                    handler: self.handler,
                },
            ),
            None => (self.handler)(ctx),
        }
    }
}
