//! [`LoopCore`]: the loop running on this thread, reachable by handles used
//! from inside it (a handler sending through a `ConnHandle` writes straight
//! into the queue instead of the inbox).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::exec::Lanes;
use super::{LoopShared, Runtime, UserTimers};
use crate::conn::table::ConnTable;
use crate::ext::StateMap;
use crate::id::ConnId;

/// A loop's connections, the runtime they belong to and the application
/// state handlers read (`Session::state`; opaque here). Built on the loop
/// thread and never leaves it (a connection's user data leaves it only
/// lent to a worker, `runtime::exec`).
pub(crate) struct LoopCore {
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) table: ConnTable,
    pub(crate) state: Arc<StateMap>,
    /// The application's timers on this loop (`Session::after`, …).
    pub(crate) timers: RefCell<UserTimers>,
    /// Connections' work waiting for, or out at, an executor.
    pub(crate) lanes: RefCell<Lanes>,
}

impl LoopCore {
    /// How other threads reach this loop.
    pub(crate) fn shared(&self) -> &LoopShared {
        &self.runtime.loops[self.table.index()]
    }

    /// Timers cancelled on this loop's own thread (by code run at the end
    /// of a turn, `on_close` say) wait for the next turn: it must not be a
    /// sleep.
    pub(crate) fn has_cancels(&self) -> bool {
        let cancels = self.shared().cancels.lock();
        !cancels
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty()
    }
}

thread_local! {
    /// The loop running on this thread, if any.
    static CURRENT: RefCell<Option<Rc<LoopCore>>> = const { RefCell::new(None) };
}

/// Makes a loop this thread's current loop until dropped.
#[derive(Debug)]
pub(crate) struct CurrentLoop(());

impl CurrentLoop {
    pub(crate) fn enter(core: Rc<LoopCore>) -> CurrentLoop {
        CURRENT.with(|c| *c.borrow_mut() = Some(core));
        CurrentLoop(())
    }
}

impl Drop for CurrentLoop {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.borrow_mut().take());
    }
}

/// Run `f` on the loop of `runtime` the calling thread runs, if any.
pub(crate) fn current<R>(runtime: &Arc<Runtime>, f: impl FnOnce(&LoopCore) -> R) -> Option<R> {
    CURRENT
        .try_with(|cur| {
            let cur = cur.borrow();
            let core = cur.as_ref()?;
            Arc::ptr_eq(&core.runtime, runtime).then(|| f(core))
        })
        .ok()
        .flatten()
}

/// Run `f` on loop `index` of `runtime` if the calling thread is that
/// loop.
pub(crate) fn with_current<R>(
    runtime: &Arc<Runtime>,
    index: usize,
    f: impl FnOnce(&LoopCore) -> R,
) -> Option<R> {
    CURRENT
        .try_with(|cur| {
            let cur = cur.borrow();
            let core = cur.as_ref()?;
            if core.table.index() == index && Arc::ptr_eq(&core.runtime, runtime) {
                Some(f(core))
            } else {
                None
            }
        })
        .ok()
        .flatten()
}

thread_local! {
    /// The connection whose data a task on this thread (a worker's, or
    /// the logic thread's) holds, with its runtime's address, and whether
    /// every connection's `run` waits for this thread (the logic thread
    /// of an `Exec::Single` server).
    static HOLDING: std::cell::Cell<Option<(usize, ConnId, bool)>> = const { std::cell::Cell::new(None) };
}

/// Marks the calling thread as running a task of a connection (holding
/// its data) until dropped.
#[derive(Debug)]
pub(crate) struct Holding(());

impl Holding {
    pub(crate) fn enter(runtime: &Arc<Runtime>, conn: ConnId, every: bool) -> Holding {
        HOLDING.with(|h| h.set(Some((Arc::as_ptr(runtime) as usize, conn, every))));
        Holding(())
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        let _ = HOLDING.try_with(|h| h.set(None));
    }
}

/// Whether work of connection `conn` of `runtime` waits for the task the
/// calling thread runs (its own connection's, or any on the logic thread
/// of an `Exec::Single` server): it cannot run before that task ends.
pub(crate) fn holds(runtime: &Arc<Runtime>, conn: ConnId) -> bool {
    let ours = Arc::as_ptr(runtime) as usize;
    HOLDING
        .try_with(|h| {
            h.get()
                .is_some_and(|(rt, held, every)| rt == ours && (every || held == conn))
        })
        .unwrap_or(false)
}
