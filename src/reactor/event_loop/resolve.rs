//! Host dials (`Dial::host`): the name is resolved on a short-lived
//! thread, never on the loop, before every attempt; the answer comes back
//! through the loop's inbox as a job (`ConnTable::resolved`), which
//! queues the connection to go on (`start_connect`). Each address is
//! tried in turn: a failed connect with addresses left moves to the next.

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::timers::TimerKind;
use super::EventLoop;
use crate::conn::dial::Resolve;
use crate::conn::flag;
use crate::error::{panic_message, CloseReason};
use crate::runtime::{Command, LoopCore};

impl EventLoop {
    /// Resolve the host dial at `key` for its current try (set by
    /// `DialState::next_step`), bounded by its `connect_timeout`.
    pub(super) fn start_resolve(&mut self, key: usize) {
        let core = self.core.clone();
        let table = &core.table;
        let Some((host, port, resolver, tries, timeout)) =
            table.dials.borrow().get(&key).and_then(|d| {
                let (host, port) = d.spec.host.clone()?;
                let resolver = d.spec.resolver.clone();
                Some((host, port, resolver, d.tries, d.spec.connect_timeout))
            })
        else {
            return;
        };
        let Some(generation) = table.conns.borrow().get(key).map(|c| c.generation) else {
            return;
        };
        let id = table.id(key, generation);
        self.schedule(key, generation, timeout, TimerKind::Connect);
        let runtime = core.runtime.clone();
        let index = table.index();
        let spawned = std::thread::Builder::new()
            .name("netloom-resolve".into())
            .spawn(move || {
                let result = catch_unwind(AssertUnwindSafe(|| (resolver.0)(&host, port)))
                    .unwrap_or_else(|panic| {
                        let why = panic_message(&*panic);
                        Err(io::Error::other(format!("the resolver panicked: {why}")))
                    });
                let job = Box::new(move |core: &LoopCore| core.table.resolved(id, tries, result));
                // Fails only once the loop is gone: nothing left to dial.
                let _ = runtime.push(index, 0, Command::Run { bytes: 0, job });
            });
        if let Err(e) = spawned {
            table.resolved(id, tries, Err(e));
        }
    }

    /// A connect of a host dial failed for `reason`: with addresses of
    /// this attempt left, drop the socket and dial the next one (returns
    /// true); the attempt fails only when none is left.
    pub(super) fn next_address(
        &mut self,
        key: usize,
        generation: u32,
        reason: &CloseReason,
    ) -> bool {
        if !matches!(
            reason,
            CloseReason::ConnectFailed(_) | CloseReason::ConnectTimeout
        ) {
            return false;
        }
        let table = &self.core.table;
        let more = (table.dials.borrow())
            .get(&key)
            .is_some_and(|d| !d.addrs.is_empty());
        if !more {
            return false;
        }
        {
            let mut slab = table.conns.borrow_mut();
            let Some(conn) = slab
                .get_mut(key)
                .filter(|c| c.generation == generation && !c.has(flag::CLOSING))
            else {
                return false;
            };
            if let Some(mut stream) = conn.stream.take() {
                let _ = self.poll.registry().deregister(&mut stream);
            }
            conn.unset(flag::CONNECTING | flag::WRITABLE);
        }
        log::debug!(
            "conn {}: {reason}; trying the next address",
            table.id(key, generation)
        );
        self.start_connect(key);
        true
    }

    /// The connect deadline of a try that is still resolving passed: the
    /// attempt fails with `ResolveFailed` (returns true). A deadline of
    /// another generation (the slot's previous occupant) leaves the
    /// resolution alone.
    pub(super) fn resolve_expired(&mut self, key: usize, generation: u32) -> bool {
        let table = &self.core.table;
        let ours = (table.conns.borrow())
            .get(key)
            .is_some_and(|c| c.generation == generation);
        if !ours {
            return false;
        }
        let waiting = (table.dials.borrow_mut())
            .get_mut(&key)
            .filter(|d| matches!(d.resolve, Resolve::Pending(_)))
            .map(|d| d.resolve = Resolve::Idle)
            .is_some();
        if waiting {
            let why = "no answer within the connect timeout".to_string();
            self.connect_failed(key, generation, CloseReason::ResolveFailed(why));
        }
        waiting
    }
}
