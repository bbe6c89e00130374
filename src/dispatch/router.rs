//! Routing by message id: each id maps to a handler and the middleware
//! chain (global, then its group's) that runs before it.

use std::fmt;

use rustc_hash::FxHashMap;

use super::context::{Context, HandlerResult};
use super::middleware::{HandlerFn, MiddlewareFn, Next};
use crate::runtime::exec::Target;

/// Ids below this live in a vector (one index per message); larger ids in a
/// hash map.
const DENSE_IDS: usize = 1024;

/// One route: the full middleware chain, the handler, and where they run.
#[derive(Clone)]
pub(crate) struct Route {
    chain: Vec<MiddlewareFn>,
    handler: HandlerFn,
    target: Target,
}

impl Route {
    pub(crate) fn new(chain: Vec<MiddlewareFn>, handler: HandlerFn, target: Target) -> Self {
        Route {
            chain,
            handler,
            target,
        }
    }

    /// Where the route runs (its execution model).
    #[inline]
    pub(crate) fn target(&self) -> Target {
        self.target
    }

    pub(crate) fn call(&self, ctx: &mut Context<'_>) -> HandlerResult {
        Next {
            chain: &self.chain,
            handler: &self.handler,
        }
        .run(ctx)
    }
}

/// The frozen routing table a server runs with.
#[derive(Default)]
pub(crate) struct Router {
    dense: Vec<Option<Route>>,
    /// Routes of ids past `DENSE_IDS`. FxHash: the keys are the
    /// application's, fixed at start; a peer only looks them up, so it
    /// cannot build a collision chain (and SipHash cost ~15 instructions
    /// per message with sparse ids).
    sparse: FxHashMap<u32, Route>,
    fallback: Option<Route>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.len())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Router {
    /// Add or replace the route for `id`.
    pub(crate) fn insert(&mut self, id: u32, route: Route) {
        let i = id as usize;
        if i < DENSE_IDS {
            if self.dense.len() <= i {
                self.dense.resize(i + 1, None);
            }
            self.dense[i] = Some(route);
        } else {
            self.sparse.insert(id, route);
        }
    }

    pub(crate) fn set_fallback(&mut self, route: Route) {
        self.fallback = Some(route);
    }

    /// The route for `id`, else the fallback, else `None`.
    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<&Route> {
        let i = id as usize;
        let found = if i < DENSE_IDS {
            self.dense.get(i).and_then(Option::as_ref)
        } else {
            self.sparse.get(&id)
        };
        found.or(self.fallback.as_ref())
    }

    fn len(&self) -> usize {
        self.dense.iter().flatten().count() + self.sparse.len()
    }
}
