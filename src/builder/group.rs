//! Routes as the builder collects them: [`Group`]s of routes sharing
//! middleware, and the assembly of every route's chain (global middleware,
//! then its group's) into the router a server runs with.

use std::fmt;
use std::sync::Arc;

use crate::dispatch::context::{Context, HandlerResult, IntoHandlerResult};
use crate::dispatch::middleware::{handler_fn, middleware_fn, HandlerFn, MiddlewareFn, Next};
use crate::dispatch::router::{Route, Router};

/// A route declared in a group, before the chains are assembled.
struct PendingRoute {
    id: u32,
    group: Arc<[MiddlewareFn]>,
    handler: HandlerFn,
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

    pub(super) fn add(&mut self, id: u32, group: Arc<[MiddlewareFn]>, handler: HandlerFn) {
        self.routes.push(PendingRoute { id, group, handler });
    }

    pub(super) fn add_group(&mut self, group: Group) {
        let chain: Arc<[MiddlewareFn]> = Arc::from(group.middleware);
        for (id, handler) in group.routes {
            self.add(id, chain.clone(), handler);
        }
    }

    /// The frozen router: each route's chain is the global middleware, then
    /// its group's; the fallback runs after the global middleware.
    pub(super) fn build(self) -> Router {
        let mut router = Router::default();
        for r in self.routes {
            let chain = self.global.iter().chain(r.group.iter()).cloned().collect();
            router.insert(r.id, Route::new(chain, r.handler));
        }
        if let Some(h) = self.fallback {
            router.set_fallback(Route::new(self.global, h));
        }
        router
    }
}

/// Routes sharing middleware; see [`Builder::group`](crate::Builder::group).
pub struct Group {
    middleware: Vec<MiddlewareFn>,
    routes: Vec<(u32, HandlerFn)>,
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
        self.routes.push((id, handler_fn(handler)));
        self
    }
}
