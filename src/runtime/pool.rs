//! [`Pool`]: outbound connections to one address (or a list, in turn),
//! handed out one holder at a time ([`Pool::get`]) or shared by many
//! requests at once ([`Pool::request`]). It sits above the handles: each
//! member is a dial on the server's loops ([`Hub::dial`]), and what the
//! pool learns of it (opened, closed for good) its loop tells it through
//! the dial's watch. It never owns a socket.

mod keep;
mod members;
mod wait;

use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{ConnHandle, Hub, ShutdownWatch};
use crate::codec::Message;
use crate::config::{PoolConfig, FOREVER};
use crate::conn::dial::Dial;
use crate::error::{Error, Result};
use members::State;

/// What a pool did, and holds now ([`Pool::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Connections now: open, connecting, or handed out.
    pub size: usize,
    /// Open connections not handed out.
    pub idle: usize,
    /// Connections handed out by `get` and not given back yet.
    pub in_use: usize,
    /// Connections made (dialed) so far.
    pub created: u64,
    /// Connections closed by the pool or lost: broken, too old, idle too
    /// long, or failing the health check.
    pub discarded: u64,
    /// Connects that failed (each delays the next by the backoff).
    pub connect_failures: u64,
    /// `get` and `request` calls that found no connection ready and waited.
    pub waits: u64,
    /// Those that waited until their timeout ([`Error::Timeout`]).
    pub wait_timeouts: u64,
}

/// A pool of outbound connections on the server's loops: see
/// [`Hub::pool`]. Clone it freely; the last clone dropped (or
/// [`close`](Self::close)) closes its connections.
#[derive(Clone)]
pub struct Pool {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Closes the pool when the last `Pool` goes (a `Pooled` still out keeps
/// `Inner` alive, not the pool).
struct Owner(Arc<Inner>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.close();
    }
}

struct Inner {
    hub: Hub,
    targets: Vec<Dial>,
    config: PoolConfig,
    state: Mutex<State>,
}

impl Hub {
    /// A pool of connections to `targets` (one [`Dial`], or several,
    /// dialed in turn as connections are made), on this server's loops.
    /// Each member is dialed with its target's settings (profile, TLS,
    /// timeouts) but without reconnect: a member lost is closed and
    /// replaced, and connects that fail in a row wait by
    /// [`PoolConfig::backoff`]. With `min_idle`, `idle_timeout` or
    /// `max_lifetime` set (the defaults set the last two), one thread per
    /// pool ("netloom-pool") retires and replaces members in the
    /// background; it ends with the pool.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use netloom::{Dial, PoolConfig, SeqPacker, Server};
    ///
    /// let server = Server::builder().packer(SeqPacker::default()).start()?;
    /// let pool = server.hub().pool(
    ///     [Dial::new("127.0.0.1:6568".parse().unwrap())],
    ///     PoolConfig::default(),
    /// )?;
    /// let reply = pool.request(1, b"ping", Duration::from_secs(1))?;
    /// println!("{:?}", reply.body);
    /// let conn = pool.get(Duration::from_secs(1))?; // exclusive until dropped
    /// conn.send(2, b"mine alone")?;
    /// # Ok::<(), netloom::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for no target, settings that make no sense
    /// ([`PoolConfig`]), or a target `Hub::dial` would refuse (an unknown
    /// profile); [`Error::NoSeq`] for a health check where a target's
    /// packer carries no sequence numbers; [`Error::ShutDown`].
    pub fn pool(
        &self,
        targets: impl IntoIterator<Item = Dial>,
        config: PoolConfig,
    ) -> Result<Pool> {
        let config = config.settle()?;
        let runtime = &self.runtime;
        if runtime.is_shut_down() {
            return Err(Error::ShutDown);
        }
        let mut prepared = Vec::new();
        for mut dial in targets {
            dial.reconnect = None;
            let profile = match &dial.profile_name {
                None => 0,
                Some(name) => runtime.config.profile_index(name).ok_or_else(|| {
                    Error::Config(format!("Dial::profile: the server has no profile {name:?}"))
                })?,
            };
            // A WebSocket dial in message mode carries no sequence number.
            let ws_messages = dial.ws.as_ref().is_some_and(|(ws, _)| !ws.carries_seq());
            let seq = runtime.wire.packer_carries_seq(profile) && !ws_messages;
            if config.health_check.is_some() && !seq {
                return Err(Error::NoSeq);
            }
            if seq {
                dial.timeouts_to_drop = config.close_after_timeouts.or(dial.timeouts_to_drop);
            }
            prepared.push(dial);
        }
        if prepared.is_empty() {
            return Err(Error::Config("Hub::pool: no target to dial".into()));
        }
        let inner = Arc::new(Inner {
            hub: self.clone(),
            targets: prepared,
            config,
            state: Mutex::new(State::default()),
        });
        let weak = Arc::downgrade(&inner);
        let watcher: std::sync::Weak<dyn ShutdownWatch> = weak;
        runtime.watch_shutdown(watcher);
        let c = &inner.config;
        if c.min_idle > 0 || c.idle_timeout.is_some() || c.max_lifetime.is_some() {
            let keeper = inner.clone();
            let thread = std::thread::Builder::new()
                .name("netloom-pool".into())
                .spawn(move || keeper.maintain())
                .map_err(Error::Io)?;
            inner.lock().keeper = Some(thread.thread().clone());
        }
        Ok(Pool {
            owner: Arc::new(Owner(inner)),
        })
    }
}

impl Pool {
    /// A connection for the caller alone until the returned guard is
    /// dropped (which gives it back). Callers are served first come,
    /// first served. An idle open connection is handed out at once (after
    /// the health check, if it sat idle that long); else one is made if
    /// the pool is below `max_size`, and the caller waits for it or for
    /// one given back. Blocks: call it from your own threads, never from
    /// a handler (the loop would wait for itself); a handler uses
    /// [`try_get`](Self::try_get) or [`pick`](Self::pick).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if none is ready within `timeout` (counted in
    /// `PoolStats::wait_timeouts`); [`Error::ShutDown`] once the pool or
    /// its server is closed.
    pub fn get(&self, timeout: Duration) -> Result<Pooled> {
        self.owner.0.get(deadline(timeout))
    }

    /// A connection for the caller alone if one is ready now, without
    /// waiting (and without a health check); `None` otherwise (a
    /// connection is made in the background if the pool is below
    /// `max_size`). Fine on a loop thread.
    pub fn try_get(&self) -> Option<Pooled> {
        self.owner.0.try_get()
    }

    /// A ready connection to multiplex requests over (not handed out:
    /// others use it too), taken in turn; `None` if none is ready now (one
    /// is made in the background if the pool is below `max_size`). Fine
    /// on a loop thread: `pool.pick()?.request_with(...)`.
    pub fn pick(&self) -> Option<ConnHandle> {
        self.owner.0.pick()
    }

    /// A request on a ready connection, taken in turn and shared with
    /// other requests (many requests multiplexed over a few connections),
    /// waiting for one to be ready (and for the reply) within `timeout`
    /// in all. A connection whose requests time out is closed and
    /// replaced (`PoolConfig::close_after_timeouts`). Blocks: see
    /// [`get`](Self::get).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] (no connection ready, or no reply, in time),
    /// [`Error::Disconnected`] (the connection was lost first),
    /// [`Error::NoSeq`], [`Error::ShutDown`], and those of
    /// [`ConnHandle::request`].
    pub fn request(&self, id: u32, body: impl AsRef<[u8]>, timeout: Duration) -> Result<Message> {
        let until = deadline(timeout);
        let conn = self.owner.0.wait_shared(until)?;
        let left = until.saturating_duration_since(Instant::now());
        conn.request(id, body, left.max(Duration::from_millis(1)))?
            .wait()
    }

    /// What the pool did, and holds now.
    pub fn stats(&self) -> PoolStats {
        self.owner.0.lock().stats()
    }

    /// Close every connection and refuse every later call with
    /// [`Error::ShutDown`] (connections handed out close when given back).
    pub fn close(&self) {
        self.owner.0.close();
    }
}

/// `timeout` from now (`FOREVER` at most).
fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout.min(FOREVER))
        .unwrap_or(now + Duration::from_secs(86_400 * 365))
}

/// A connection handed out by [`Pool::get`]: use it as a [`ConnHandle`];
/// dropped, it goes back to the pool (closed instead if it broke, or has
/// outlived `max_lifetime`).
pub struct Pooled {
    handle: ConnHandle,
    pool: Arc<Inner>,
    discard: bool,
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("id", &self.handle.id())
            .finish()
    }
}

impl Deref for Pooled {
    type Target = ConnHandle;

    fn deref(&self) -> &ConnHandle {
        &self.handle
    }
}

impl Pooled {
    /// Close the connection instead of giving it back (say, after a
    /// protocol error of your own); the pool replaces it.
    pub fn discard(mut self) {
        self.discard = true;
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(&self.handle, self.discard);
    }
}

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wake everyone waiting on the pool.
    pub(super) fn notify(&self) {
        self.lock().wake();
    }
}

impl ShutdownWatch for Inner {
    /// The server's shutdown closes the members; the callers waiting
    /// (in a connect backoff, say) and the keeper are told now.
    fn shutting_down(&self) {
        let mut st = self.lock();
        st.closed = true;
        st.wake();
    }
}
