//! Execution models: where a route's handler (and its middleware) runs.
//!
//! * [`Exec::Inline`]: on the connection's loop (the default, the fastest).
//! * [`Exec::Pool`]: on a worker pool, for handlers that block.
//! * [`Exec::Single`]: on one logic thread for the whole server.
//!
//! Off the loop, one connection's work runs one item at a time and in
//! arrival order (its lane, `runtime::exec`), while different connections'
//! work runs in parallel on the pool. The loop hands work over
//! ([`lane`]); the threads here run it ([`worker`]) and give the
//! connection's data back with what the handlers sent.

mod intake;
mod lane;
mod worker;

pub(crate) use intake::Intake;
pub(crate) use lane::{holds_reads, on_loop, submit};
pub(crate) use worker::{spawn, Workers};

use std::fmt;

use crossbeam_channel::{Receiver, Sender};

use crate::error::{Error, Result};
use crate::runtime::exec::{Target, Task};

/// Where a route's handler and its middleware run; see
/// [`Builder::exec`](crate::Builder::exec).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Exec {
    /// On the connection's event loop: the default and the fastest, for
    /// handlers that never block.
    #[default]
    Inline,
    /// On a pool of `n` worker threads, for handlers that block (a
    /// database call, a file read). One connection's messages are handled
    /// one at a time and in arrival order, and its replies leave in that
    /// order; different connections run in parallel. A server has one
    /// pool: its size is the largest `n` any route asks for.
    Pool(usize),
    /// On the server's one logic thread: every handler with this model,
    /// of every connection, runs there one at a time (the game-server
    /// model); timers of connections, `ConnHandle::run` and `Builder::every`
    /// run there too when it is the server's model.
    Single,
}

impl Exec {
    pub(crate) fn target(self) -> Target {
        match self {
            Exec::Inline => Target::Loop,
            Exec::Pool(_) => Target::Pool,
            Exec::Single => Target::Single,
        }
    }
}

/// A job for a worker or the logic thread.
pub(crate) enum Job {
    /// A connection's work.
    Task(Task),
    /// Code of the server's (a `Builder::every` tick under `Single`).
    Run(Box<dyn FnOnce() + Send>),
    /// The server has stopped: end (one per thread, behind the work
    /// queued).
    Stop,
}

/// The channels to the worker pool and the logic thread (where a server
/// has them).
#[derive(Default)]
pub(crate) struct Executors {
    pub(crate) pool: Option<Sender<Job>>,
    pub(crate) single: Option<Sender<Job>>,
}

impl fmt::Debug for Executors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executors")
            .field("pool", &self.pool.is_some())
            .field("single", &self.single.is_some())
            .finish()
    }
}

/// The other ends of [`Executors`]: what the threads take work from.
#[derive(Default)]
pub(crate) struct Receivers {
    pub(crate) pool: Option<(Receiver<Job>, usize)>,
    pub(crate) single: Option<Receiver<Job>>,
}

impl Executors {
    /// Channels for the models `used` (with the pool's size): the pool's
    /// size is the largest asked for.
    pub(crate) fn plan(used: impl IntoIterator<Item = Exec>) -> Result<(Executors, Receivers)> {
        let (mut pool, mut single) = (None::<usize>, false);
        for e in used {
            match e {
                Exec::Inline => {}
                Exec::Pool(0) => {
                    return Err(Error::Config("Exec::Pool needs 1 or more workers".into()))
                }
                Exec::Pool(n) if n > 1024 => {
                    return Err(Error::Config(
                        "Exec::Pool takes at most 1024 workers".into(),
                    ))
                }
                Exec::Pool(n) => pool = Some(pool.map_or(n, |p| p.max(n))),
                Exec::Single => single = true,
            }
        }
        let (mut exec, mut rx) = (Executors::default(), Receivers::default());
        if let Some(n) = pool {
            let (tx, r) = crossbeam_channel::unbounded();
            exec.pool = Some(tx);
            rx.pool = Some((r, n));
        }
        if single {
            let (tx, r) = crossbeam_channel::unbounded();
            exec.single = Some(tx);
            rx.single = Some(r);
        }
        Ok((exec, rx))
    }

    /// The channel of `target` (`None` for the loop, or a model the server
    /// did not plan for).
    pub(crate) fn to(&self, target: Target) -> Option<&Sender<Job>> {
        match target {
            Target::Loop => None,
            Target::Pool => self.pool.as_ref(),
            Target::Single => self.single.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool's size is checked at both ends, and the plan reads as
    /// what it holds (found by mutation testing).
    #[test]
    fn a_pool_takes_1_to_1024_workers_the_largest_asked_for() {
        let workers = |used: Vec<Exec>| Executors::plan(used).map(|(_, rx)| rx.pool.map(|p| p.1));
        assert_eq!(
            workers(vec![Exec::Pool(1024), Exec::Pool(3)]).unwrap(),
            Some(1024)
        );
        assert!(matches!(
            workers(vec![Exec::Pool(1025)]),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            workers(vec![Exec::Pool(0)]),
            Err(Error::Config(_))
        ));
        assert_eq!(workers(vec![Exec::Inline]).unwrap(), None);
        let (exec, _rx) = Executors::plan([Exec::Single]).unwrap();
        assert_eq!(
            format!("{exec:?}"),
            "Executors { pool: false, single: true }"
        );
    }
}
