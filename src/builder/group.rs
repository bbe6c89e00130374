//! Routes as the builder collects them: the routing methods of
//! [`Builder`] (`middleware`, `route`, `fallback`, `group`), [`Group`]s of
//! routes sharing middleware, and the assembly of every route's chain
//! (global middleware, then its group's) into the router a server runs
//! with.

use std::fmt;
use std::sync::Arc;

use super::Builder;
use crate::dispatch::context::{Context, HandlerResult, IntoHandlerResult};
use crate::dispatch::exec::Exec;
use crate::dispatch::middleware::{handler_fn, middleware_fn, HandlerFn, MiddlewareFn, Next};
use crate::dispatch::router::{Route, Router};

/// A route declared in a group, before the chains are assembled.
struct PendingRoute {
    id: u32,
    group: Arc<[MiddlewareFn]>,
    handler: HandlerFn,
    /// Its own execution model, or its group's (else the default).
    exec: Option<Exec>,
}

/// Every route, middleware and fallback declared so far.
#[derive(Default)]
pub(super) struct Routes {
    pub(super) global: Vec<MiddlewareFn>,
    routes: Vec<PendingRoute>,
    pub(super) fallback: Option<HandlerFn>,
}

impl Routes {
    pub(super) fn len(&self) -> usize {
        self.routes.len()
    }

    pub(super) fn add(
        &mut self,
        id: u32,
        group: Arc<[MiddlewareFn]>,
        handler: HandlerFn,
        exec: Option<Exec>,
    ) {
        self.routes.push(PendingRoute {
            id,
            group,
            handler,
            exec,
        });
    }

    pub(super) fn add_group(&mut self, group: Group) {
        let chain: Arc<[MiddlewareFn]> = Arc::from(group.middleware);
        for (id, handler, exec) in group.routes {
            self.add(id, chain.clone(), handler, exec.or(group.exec));
        }
    }

    /// The frozen router: each route's chain is the global middleware, then
    /// its group's; the fallback runs after the global middleware. Routes
    /// without a model of their own (and the fallback) run on `default`;
    /// every model a route runs on is added to `used`.
    pub(super) fn build(self, default: Exec, used: &mut Vec<Exec>) -> Router {
        let mut router = Router::default();
        for r in self.routes {
            let chain = self.global.iter().chain(r.group.iter()).cloned().collect();
            let exec = r.exec.unwrap_or(default);
            used.push(exec);
            router.insert(r.id, Route::new(chain, r.handler, exec.target()));
        }
        if let Some(h) = self.fallback {
            used.push(default);
            router.set_fallback(Route::new(self.global, h, default.target()));
        }
        router
    }
}

impl Builder {
    /// Add a global middleware: it runs for every routed message, before
    /// group middleware, in the order added (wherever `route` calls are).
    ///
    /// A middleware returns a [`HandlerResult`] (what `next.run(ctx)`
    /// returns), so a closure's `Ok(())` needs no annotation:
    ///
    /// ```
    /// let builder = netloom::Server::builder().middleware(|ctx, next| {
    ///     let started = std::time::Instant::now();
    ///     next.run(ctx)?;
    ///     log::debug!("message {} took {:?}", ctx.msg_id(), started.elapsed());
    ///     Ok(())
    /// });
    /// # drop(builder);
    /// ```
    pub fn middleware<F>(mut self, f: F) -> Self
    where
        F: Fn(&mut Context<'_>, Next<'_>) -> HandlerResult + Send + Sync + 'static,
    {
        self.routes.global.push(middleware_fn(f));
        self
    }

    /// Route message id `id` to `handler`. A later route for the same id
    /// replaces the earlier one.
    ///
    /// A handler returns `()`, a `netloom::Result<()>` (what `ctx.reply`
    /// returns) or a `Result<(), E>` for any `E` convertible into
    /// [`BoxError`](crate::BoxError); an `Err` is logged and counted.
    /// These forms compile as written:
    ///
    /// ```
    /// use netloom::{Context, HandlerResult, Server};
    ///
    /// fn echo(ctx: &mut Context<'_>) -> netloom::Result<()> {
    ///     ctx.reply(ctx.msg_id(), ctx.body())
    /// }
    ///
    /// let builder = Server::builder()
    ///     .route(1, echo)
    ///     .route(2, |ctx| ctx.reply(2, ctx.body()))
    ///     .route(3, |ctx| log::debug!("{} pinged", ctx.id()))
    ///     // `?` on any error, then `Ok(())`: name the return type once.
    ///     .route(4, |ctx| -> HandlerResult {
    ///         let n: u32 = std::str::from_utf8(ctx.body())?.parse()?;
    ///         ctx.reply(4, (n + 1).to_string())?;
    ///         Ok(())
    ///     })
    ///     // Or end with the last send, whose error type is netloom's.
    ///     .route(5, |ctx| {
    ///         ctx.reply(5, b"first")?;
    ///         ctx.reply(5, ctx.body())
    ///     });
    /// # drop(builder);
    /// ```
    ///
    /// A closure ending in `Ok(())` after a `?` does **not** compile
    /// without `-> HandlerResult` (E0282/E0283): nothing in `Ok(())` or in
    /// `?` (which converts into any `From` target) fixes the error type,
    /// the handler may return several, and stable Rust has no default for
    /// an inferred type. Fixing the return type to [`HandlerResult`]
    /// instead would reject the forms above that return `()` or
    /// `netloom::Result<()>`, so the annotation stays:
    ///
    /// ```compile_fail,E0282
    /// let builder = netloom::Server::builder().route(1, |ctx| {
    ///     ctx.reply(1, ctx.body())?;
    ///     Ok(())
    /// });
    /// ```
    pub fn route<F, R>(mut self, id: u32, handler: F) -> Self
    where
        F: Fn(&mut Context<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.routes
            .add(id, Arc::from(Vec::new()), handler_fn(handler), None);
        self
    }

    /// Handler for messages whose id has no route (it runs after the global
    /// middleware). Without one, [`UnknownIdPolicy`](crate::UnknownIdPolicy) applies.
    pub fn fallback<F, R>(mut self, handler: F) -> Self
    where
        F: Fn(&mut Context<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.routes.fallback = Some(handler_fn(handler));
        self
    }

    /// Declare routes that share middleware: `middleware` (then any added
    /// with [`Group::middleware`]) runs after the global middleware and
    /// before each of the group's handlers.
    ///
    /// `middleware` is an array of middleware functions, or of closures
    /// that capture nothing (both are `fn` pointers), possibly empty. A
    /// middleware that captures something (a closure holding an `Arc`) is
    /// added with [`Group::middleware`]. All these compile as written:
    ///
    /// ```
    /// use netloom::{Context, HandlerResult, Next, Server};
    ///
    /// fn auth(ctx: &mut Context<'_>, next: Next<'_>) -> HandlerResult {
    ///     next.run(ctx) // check a login here
    /// }
    ///
    /// fn audit(ctx: &mut Context<'_>, next: Next<'_>) -> HandlerResult {
    ///     log::info!("{} calls {}", ctx.id(), ctx.msg_id());
    ///     next.run(ctx)
    /// }
    ///
    /// let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    /// let builder = Server::builder()
    ///     .group([auth], |g| g.route(1, |ctx| ctx.reply(1, ctx.body())))
    ///     .group([auth, audit], |g| g.route(2, |_ctx| ()))
    ///     .group([|ctx, next| {
    ///         if ctx.body().is_empty() {
    ///             ctx.reply(400, b"empty")?;
    ///             return Ok(());
    ///         }
    ///         next.run(ctx)
    ///     }], |g| g.route(3, |ctx| ctx.reply(3, ctx.body())))
    ///     .group([], |g| {
    ///         g.middleware(move |ctx, next| {
    ///             seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ///             next.run(ctx)
    ///         })
    ///         .route(4, |ctx| ctx.reply(4, ctx.body()))
    ///     });
    /// # drop(builder);
    /// ```
    pub fn group<const N: usize>(
        mut self,
        middleware: [fn(&mut Context<'_>, Next<'_>) -> HandlerResult; N],
        f: impl FnOnce(Group) -> Group,
    ) -> Self {
        let group = f(Group::with(
            middleware.into_iter().map(middleware_fn).collect(),
        ));
        self.routes.add_group(group);
        self
    }
}

/// Routes sharing middleware; see [`Builder::group`].
pub struct Group {
    middleware: Vec<MiddlewareFn>,
    routes: Vec<(u32, HandlerFn, Option<Exec>)>,
    exec: Option<Exec>,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("middleware", &self.middleware.len())
            .field("routes", &self.routes.len())
            .finish()
    }
}

impl Group {
    pub(super) fn with(middleware: Vec<MiddlewareFn>) -> Group {
        Group {
            middleware,
            routes: Vec::new(),
            exec: None,
        }
    }

    /// Add a middleware to this group (after those already in it). It
    /// applies to every route of the group, declared before or after.
    /// Unlike the array given to [`Builder::group`](crate::Builder::group),
    /// it may be a closure that captures something.
    pub fn middleware<F>(mut self, f: F) -> Self
    where
        F: Fn(&mut Context<'_>, Next<'_>) -> HandlerResult + Send + Sync + 'static,
    {
        self.middleware.push(middleware_fn(f));
        self
    }

    /// Route message id `id` to `handler` through this group's middleware.
    pub fn route<F, R>(mut self, id: u32, handler: F) -> Self
    where
        F: Fn(&mut Context<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.routes.push((id, handler_fn(handler), None));
        self
    }

    /// Run every route of this group (declared before or after, unless it
    /// names its own with [`route_on`](Self::route_on)) on `exec`, instead
    /// of the server's model ([`Builder::exec`](crate::Builder::exec)).
    pub fn exec(mut self, exec: Exec) -> Self {
        self.exec = Some(exec);
        self
    }

    /// [`route`](Self::route), run on `exec` (see
    /// [`Builder::route_on`](crate::Builder::route_on)).
    pub fn route_on<F, R>(mut self, id: u32, exec: Exec, handler: F) -> Self
    where
        F: Fn(&mut Context<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.routes.push((id, handler_fn(handler), Some(exec)));
        self
    }
}
