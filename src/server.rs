//! Building and running a server: [`Server::builder`], [`Builder`],
//! [`Group`] and the running [`ServerHandle`].

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Balance, Config, Heartbeat, SlowPeerPolicy, UnknownIdPolicy};
use crate::context::{Context, IntoHandlerResult, Session};
use crate::error::{CloseReason, Error, Result};
use crate::handle::Hub;
use crate::middleware::{handler_fn, middleware_fn, HandlerFn, MiddlewareFn, Next};
use crate::packer::{LengthPacker, Packer};
use crate::reactor::acceptor::{self, Acceptor};
use crate::reactor::event_loop::{self, EventLoop};
use crate::reactor::{CloseHook, Command, LoopCore, LoopShared, OpenHook, ServerShared};
use crate::router::{Route, Router};
use crate::stats::{Counters, Stats};
use crate::transport::{LayerConfig, Protocol};

/// Entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Start configuring a server. See [`Builder`].
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// What `on_open` may return: `()` or `true` accept the connection;
/// `false` or `Err(reason)` reject it (it is closed with
/// [`CloseReason::Rejected`] and `on_close` still runs).
pub trait IntoOpenResult {
    /// `Err(reason)` rejects the connection.
    fn into_open_result(self) -> std::result::Result<(), String>;
}

impl IntoOpenResult for () {
    fn into_open_result(self) -> std::result::Result<(), String> {
        Ok(())
    }
}

impl IntoOpenResult for bool {
    fn into_open_result(self) -> std::result::Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("rejected by on_open".into())
        }
    }
}

impl<E: fmt::Display> IntoOpenResult for std::result::Result<(), E> {
    fn into_open_result(self) -> std::result::Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// A route declared in a group, before the chains are assembled.
struct PendingRoute {
    id: u32,
    group: Arc<[MiddlewareFn]>,
    handler: HandlerFn,
}

/// Configures and starts a server.
///
/// Every setting has a documented default (see [`Config`]); values are
/// checked by [`start`](Builder::start), which returns
/// [`Error::Config`] rather than panicking.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use netloom::Server;
///
/// let server = Server::builder()
///     .event_loops(2)
///     .heartbeat(Duration::from_secs(10), Duration::from_secs(30))
///     .route(0, |ctx| ctx.reply(0, ctx.body()))
///     .bind("127.0.0.1:6565")?
///     .start()?;
/// server.join();
/// # Ok::<(), netloom::Error>(())
/// ```
#[derive(Default)]
pub struct Builder {
    /// TLS and WebSocket settings (set by their modules' builder methods).
    pub(crate) layers: LayerConfig,
    config: Config,
    ping: Option<(Duration, u32)>,
    packer: Option<Box<dyn Packer>>,
    addrs: Vec<(SocketAddr, Protocol)>,
    global: Vec<MiddlewareFn>,
    routes: Vec<PendingRoute>,
    fallback: Option<HandlerFn>,
    on_open: Option<OpenHook>,
    on_close: Option<CloseHook>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("addrs", &self.addrs)
            .field("routes", &self.routes.len())
            .field("custom_packer", &self.packer.is_some())
            .finish()
    }
}

impl Builder {
    /// Replace the whole configuration (settings made before are lost).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Number of event-loop threads. Default: available parallelism.
    pub fn event_loops(mut self, n: usize) -> Self {
        self.config.event_loops = n;
        self
    }

    /// How accepted sockets are spread over loops. Default: round-robin.
    pub fn balance(mut self, balance: Balance) -> Self {
        self.config.balance = balance;
        self
    }

    /// Largest body the default packer accepts or sends (checked against
    /// the header before any allocation). Default: 1 MiB.
    pub fn max_body_length(mut self, bytes: usize) -> Self {
        self.config.max_body_length = bytes;
        self
    }

    /// Most open connections; over it, new connections are accepted and
    /// closed at once (counted in `Stats::rejected`). Default: unlimited.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// Per-connection write-queue high-water mark. Default: 4 MiB.
    pub fn write_high_water(mut self, bytes: usize) -> Self {
        self.config.write_high_water = bytes;
        self
    }

    /// What a send over the high-water mark does. Default: backpressure.
    pub fn slow_peer(mut self, policy: SlowPeerPolicy) -> Self {
        self.config.slow_peer = policy;
        self
    }

    /// Most bytes of cross-thread sends waiting in one loop's inbox; over it
    /// sends fail with [`Error::InboxFull`]. Default: 64 MiB.
    pub fn inbox_capacity(mut self, bytes: usize) -> Self {
        self.config.inbox_capacity = bytes;
        self
    }

    /// Most bytes read from one connection per loop turn before the loop
    /// serves the others. Default: 256 KiB.
    pub fn read_budget(mut self, bytes: usize) -> Self {
        self.config.read_budget = bytes;
        self
    }

    /// Size of each loop's shared read buffer. Default: 64 KiB.
    pub fn read_buffer(mut self, bytes: usize) -> Self {
        self.config.read_buffer = bytes;
        self
    }

    /// Before a loop sleeps, keep polling for up to `spin` without
    /// sleeping. Default: zero (off); at most 10 ms, else `start` fails
    /// with [`Error::Config`].
    ///
    /// A loop that sleeps and is woken by the next packet pays a thread
    /// wake-up, tens of microseconds on a VM, on every round trip. With a
    /// few busy connections (a game room, a gateway's upstream links) that
    /// wake-up is most of the latency: with `busy_poll` a little longer
    /// than the gap between packets, the loop never sleeps while traffic
    /// flows, and each round trip skips it. The price is CPU: a loop
    /// spends up to `spin` polling after each burst of packets (not after
    /// turns that only fired timers), so a loop with sparse traffic shows
    /// as busy that much more often. A loop with many connections rarely
    /// waits anyway and gains little. docs/BENCHMARKS.md measures both
    /// cases.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// let server = netloom::Server::builder()
    ///     .busy_poll(Duration::from_micros(50))
    ///     .route(1, |ctx| ctx.reply(1, ctx.body()))
    ///     .bind("127.0.0.1:6565")?
    ///     .start()?;
    /// server.join();
    /// # Ok::<(), netloom::Error>(())
    /// ```
    pub fn busy_poll(mut self, spin: Duration) -> Self {
        self.config.busy_poll = spin;
        self
    }

    /// How long a connection closed with unsent data may linger to flush
    /// it. Default: 5 s.
    pub fn close_linger(mut self, linger: Duration) -> Self {
        self.config.close_linger = linger;
        self
    }

    /// Close connections whose handshake (TLS, and the WebSocket upgrade on
    /// `bind_ws` listeners) has not finished this long
    /// after accept. Default: 5 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Longest pause of the acceptor after EMFILE/ENFILE. Default: 500 ms.
    pub fn accept_backoff_max(mut self, max: Duration) -> Self {
        self.config.accept_backoff_max = max;
        self
    }

    /// What happens to messages no route handles. Default: drop.
    pub fn unknown_id(mut self, policy: UnknownIdPolicy) -> Self {
        self.config.unknown_id = policy;
        self
    }

    /// Close connections that send nothing for `idle_timeout`, checking every
    /// `check_interval` (as netman's heartbeat). Off by default.
    pub fn heartbeat(mut self, check_interval: Duration, idle_timeout: Duration) -> Self {
        self.config.heartbeat = Some(Heartbeat {
            check_interval,
            idle_timeout,
            ping_after: None,
            ping_id: 0,
        });
        self
    }

    /// Ping before kicking: after `after` of silence send one message with id
    /// `ping_id` and an empty body; the peer's answer (any byte) counts as
    /// traffic. Needs [`heartbeat`](Self::heartbeat), with `after` shorter
    /// than its idle timeout.
    pub fn ping_before_kick(mut self, after: Duration, ping_id: u32) -> Self {
        self.ping = Some((after, ping_id));
        self
    }

    /// TCP_NODELAY on accepted sockets. Default: on.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.config.nodelay = on;
        self
    }

    /// SO_KEEPALIVE with this idle time and probe interval. Default: off.
    pub fn keepalive(mut self, period: Duration) -> Self {
        self.config.keepalive = Some(period);
        self
    }

    /// Listen backlog. Default: 1024.
    pub fn backlog(mut self, n: u32) -> Self {
        self.config.backlog = n;
        self
    }

    /// Use a custom wire format instead of [`LengthPacker`].
    pub fn packer(mut self, packer: impl Packer) -> Self {
        self.packer = Some(Box::new(packer));
        self
    }

    /// Run for every new connection, on its loop thread, before any of its
    /// messages. Return `()`/`true` to accept, `false` or `Err(reason)` to
    /// reject. A rejected connection is closed (after flushing anything the
    /// hook sent) and `on_close` runs for it with [`CloseReason::Rejected`].
    pub fn on_open<F, R>(mut self, f: F) -> Self
    where
        F: Fn(&mut Session<'_>) -> R + Send + Sync + 'static,
        R: IntoOpenResult,
    {
        self.on_open = Some(Box::new(move |s: &mut Session<'_>| f(s).into_open_result()));
        self
    }

    /// Run exactly once for every connection `on_open` ran for, whatever
    /// ends it, with the reason. The connection's user data is still there;
    /// sends to it fail.
    pub fn on_close<F>(mut self, f: F) -> Self
    where
        F: Fn(&mut Session<'_>, &CloseReason) + Send + Sync + 'static,
    {
        self.on_close = Some(Box::new(f));
        self
    }

    /// Add a global middleware: it runs for every routed message, before
    /// group middleware, in the order added (wherever `route` calls are).
    pub fn middleware<F, R>(mut self, f: F) -> Self
    where
        F: Fn(&mut Context<'_>, Next<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.global.push(middleware_fn(f));
        self
    }

    /// Route message id `id` to `handler`. A later route for the same id
    /// replaces the earlier one.
    pub fn route<F, R>(mut self, id: u32, handler: F) -> Self
    where
        F: Fn(&mut Context<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.routes.push(PendingRoute {
            id,
            group: Arc::from(Vec::new()),
            handler: handler_fn(handler),
        });
        self
    }

    /// Handler for messages whose id has no route (it runs after the global
    /// middleware). Without one, [`UnknownIdPolicy`] applies.
    pub fn fallback<F, R>(mut self, handler: F) -> Self
    where
        F: Fn(&mut Context<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.fallback = Some(handler_fn(handler));
        self
    }

    /// Declare routes that share middleware: `middleware` (then any added
    /// with [`Group::middleware`]) runs after the global middleware and
    /// before each of the group's handlers.
    pub fn group<I, M, R>(mut self, middleware: I, f: impl FnOnce(Group) -> Group) -> Self
    where
        I: IntoIterator<Item = M>,
        M: Fn(&mut Context<'_>, Next<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        let group = f(Group {
            middleware: middleware.into_iter().map(middleware_fn).collect(),
            routes: Vec::new(),
        });
        let chain: Arc<[MiddlewareFn]> = Arc::from(group.middleware);
        for (id, handler) in group.routes {
            self.routes.push(PendingRoute {
                id,
                group: chain.clone(),
                handler,
            });
        }
        self
    }

    /// Listen on `addr` (any number of times for several addresses). Port 0
    /// picks a free port; read it back with [`ServerHandle::local_addr`].
    /// These listeners speak the packer over TCP (or TLS); `bind_ws` (feature
    /// `ws`) adds WebSocket listeners to the same server.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if `addr` does not resolve, [`Error::Config`] if it
    /// resolves to no address.
    pub fn bind(self, addr: impl ToSocketAddrs) -> Result<Self> {
        self.bind_protocol(addr, Protocol::Raw)
    }

    /// Listen on `addr` for connections speaking `protocol`.
    pub(crate) fn bind_protocol(
        mut self,
        addr: impl ToSocketAddrs,
        protocol: Protocol,
    ) -> Result<Self> {
        let before = self.addrs.len();
        self.addrs
            .extend(addr.to_socket_addrs()?.map(|a| (a, protocol)));
        if self.addrs.len() == before {
            return Err(Error::Config("bind: address resolved to nothing".into()));
        }
        Ok(self)
    }

    /// Validate the configuration, bind the listeners and start the loop
    /// and acceptor threads.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting or no `bind`,
    /// [`Error::Io`] if a listener cannot be bound or a thread not spawned.
    pub fn start(mut self) -> Result<ServerHandle> {
        if let Some((after, ping_id)) = self.ping {
            let Some(hb) = self.config.heartbeat.as_mut() else {
                return Err(Error::Config("ping_before_kick needs heartbeat".into()));
            };
            hb.ping_after = Some(after);
            hb.ping_id = ping_id;
        }
        self.config.validate()?;
        self.layers.validate(&self.config)?;
        if self.addrs.is_empty() {
            return Err(Error::Config("no address to listen on: call bind()".into()));
        }
        let config = self.config;
        let router = build_router(&self.global, self.routes, self.fallback);
        if let Some(custom) = &self.packer {
            if !crate::packer::implements_decoding(&**custom) {
                return Err(Error::Config(
                    "the packer implements neither `Packer::peek` nor `Packer::decode`".into(),
                ));
            }
        }
        let length_packer = self
            .packer
            .is_none()
            .then(|| LengthPacker::new(config.max_body_length));
        let packer = self
            .packer
            .unwrap_or_else(|| Box::new(LengthPacker::new(config.max_body_length)));

        let mut listeners = Vec::new();
        let mut protocols = Vec::new();
        let mut local_addrs = Vec::new();
        for &(addr, protocol) in &self.addrs {
            let l = crate::sys::listen(addr, config.backlog)?;
            local_addrs.push(l.local_addr()?);
            listeners.push(l);
            protocols.push(protocol);
        }
        let mut layers = self.layers;
        layers.listening = protocols.clone();
        layers.listening.sort();
        layers.listening.dedup();

        let mut polls = Vec::new();
        let mut loops = Vec::new();
        let mut inboxes = Vec::new();
        for _ in 0..config.event_loops {
            let poll = mio::Poll::new()?;
            let waker = mio::Waker::new(poll.registry(), event_loop::WAKER)?;
            let (tx, rx) = crossbeam_channel::unbounded();
            loops.push(LoopShared {
                tx,
                waker,
                notified: AtomicBool::new(false),
                inflight: AtomicUsize::new(0),
                counters: Counters::default(),
            });
            polls.push(poll);
            inboxes.push(rx);
        }
        let server = Arc::new(ServerShared {
            layers,
            config,
            packer,
            length_packer,
            router,
            on_open: self.on_open,
            on_close: self.on_close,
            loops,
            live: AtomicUsize::new(0),
            shut_down: AtomicBool::new(false),
        });

        let accept_poll = mio::Poll::new()?;
        for (i, l) in listeners.iter_mut().enumerate() {
            accept_poll
                .registry()
                .register(l, mio::Token(i), mio::Interest::READABLE)?;
        }
        let accept_waker = mio::Waker::new(accept_poll.registry(), acceptor::WAKE)?;

        let mut handle = ServerHandle {
            server: server.clone(),
            local_addrs,
            loops: Vec::new(),
            acceptor: None,
            accept_stop: Arc::new(AtomicBool::new(false)),
            accept_waker,
        };
        for (index, (poll, inbox)) in polls.into_iter().zip(inboxes).enumerate() {
            let registry = poll.registry().try_clone()?;
            let core = LoopCore::new(index, server.clone(), registry);
            let spawned = std::thread::Builder::new()
                .name(format!("netloom-loop-{index}"))
                .spawn(move || EventLoop::new(core, poll, inbox).run());
            match spawned {
                Ok(t) => handle.loops.push(t),
                Err(e) => {
                    let _ = handle.stop(Duration::ZERO);
                    return Err(e.into());
                }
            }
        }
        let acceptor = Acceptor::new(
            accept_poll,
            listeners,
            protocols,
            server,
            handle.accept_stop.clone(),
        );
        match std::thread::Builder::new()
            .name("netloom-accept".into())
            .spawn(move || acceptor.run())
        {
            Ok(t) => handle.acceptor = Some(t),
            Err(e) => {
                let _ = handle.stop(Duration::ZERO);
                return Err(e.into());
            }
        }
        log::info!(
            "netloom listening on {:?} with {} event loop(s)",
            handle.local_addrs,
            handle.server.loops.len()
        );
        Ok(handle)
    }
}

fn build_router(
    global: &[MiddlewareFn],
    routes: Vec<PendingRoute>,
    fallback: Option<HandlerFn>,
) -> Router {
    let mut router = Router::default();
    for r in routes {
        let chain = global.iter().chain(r.group.iter()).cloned().collect();
        router.insert(r.id, Route::new(chain, r.handler));
    }
    if let Some(h) = fallback {
        router.set_fallback(Route::new(global.to_vec(), h));
    }
    router
}

/// Routes sharing middleware; see [`Builder::group`].
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
    /// Add a middleware to this group (after those already in it). It
    /// applies to every route of the group, declared before or after.
    pub fn middleware<F, R>(mut self, f: F) -> Self
    where
        F: Fn(&mut Context<'_>, Next<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
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

/// A running server. Dropping it shuts the server down at once (no flush
/// deadline); call [`shutdown`](Self::shutdown) for a graceful stop or
/// [`join`](Self::join) to run until the process ends.
pub struct ServerHandle {
    server: Arc<ServerShared>,
    local_addrs: Vec<SocketAddr>,
    loops: Vec<JoinHandle<usize>>,
    acceptor: Option<JoinHandle<()>>,
    accept_stop: Arc<AtomicBool>,
    accept_waker: mio::Waker,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addrs", &self.local_addrs)
            .field("loops", &self.loops.len())
            .finish()
    }
}

impl ServerHandle {
    /// The first listening address (with the real port if bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every listening address, in `bind` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Broadcast, connection list, handles by id; usable from any thread.
    pub fn hub(&self) -> Hub {
        Hub {
            server: self.server.clone(),
        }
    }

    /// The server's counters now.
    pub fn stats(&self) -> Stats {
        self.hub().stats()
    }

    /// Open connections now.
    pub fn connection_count(&self) -> usize {
        self.hub().connection_count()
    }

    /// Stop accepting, close every connection (`on_close` gets
    /// [`CloseReason::Shutdown`]) after flushing what is queued, and join
    /// every thread. Connections still unflushed at `deadline` are closed
    /// anyway.
    ///
    /// # Errors
    ///
    /// [`Error::ShutdownTimeout`] if some connections could not be flushed
    /// in time, [`Error::ThreadPanicked`] if a server thread died (a bug).
    /// The server is fully stopped in every case.
    pub fn shutdown(mut self, deadline: Duration) -> Result<()> {
        self.stop(deadline)
    }

    /// Block until the server stops (it stops only through shutdown, so
    /// this is "run until the process is killed" for a plain server).
    pub fn join(mut self) {
        for t in self.loops.drain(..) {
            let _ = t.join();
        }
    }

    fn stop(&mut self, deadline: Duration) -> Result<()> {
        let deadline = Instant::now() + deadline;
        self.server.shut_down.store(true, Ordering::Release);
        self.accept_stop.store(true, Ordering::Release);
        let mut result = Ok(());
        if let Some(t) = self.acceptor.take() {
            if let Err(e) = self.accept_waker.wake() {
                log::error!("cannot wake the acceptor: {e}");
            }
            if t.join().is_err() {
                result = Err(Error::ThreadPanicked("netloom-accept".into()));
            }
        }
        for lp in &self.server.loops {
            if lp.tx.send(Command::Shutdown(deadline)).is_ok() {
                lp.notify();
            }
        }
        let mut unflushed = 0;
        for (i, t) in self.loops.drain(..).enumerate() {
            match t.join() {
                Ok(n) => unflushed += n,
                Err(_) => result = Err(Error::ThreadPanicked(format!("netloom-loop-{i}"))),
            }
        }
        if unflushed > 0 && result.is_ok() {
            result = Err(Error::ShutdownTimeout(unflushed));
        }
        result
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.loops.is_empty() || self.acceptor.is_some() {
            let _ = self.stop(Duration::ZERO);
        }
    }
}
