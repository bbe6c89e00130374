//! Configuring a server: [`Server::builder`] gives a [`Builder`]; its
//! routing methods (routes, middleware, and [`Group`]s of routes sharing
//! middleware) are in `builder/group.rs`;
//! the TLS and WebSocket settings have their own files
//! (`builder/tls.rs`, `builder/ws.rs`). [`Builder::start`] hands the
//! result to `server.rs`, which spawns the threads.

mod exec;
mod group;
mod hooks;
mod profile;
mod timers;
#[cfg(feature = "tls")]
mod tls;
mod typed;
mod udp;
#[cfg(feature = "ws")]
mod ws;
#[cfg(feature = "ws")]
mod ws_dial;

pub use group::Group;
pub use profile::Profile;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::codec::{implements_decoding, LengthPacker, Packer, ServerPacker};
use crate::config::{Balance, Config, Heartbeat, SlowPeerPolicy, UnknownIdPolicy};
use crate::dispatch::exec::{Exec, Executors};
use crate::dispatch::hooks::Hooks;
use crate::dispatch::timers::AppTimers;
use crate::dispatch::typed::{BadBodies, Envelopes};
use crate::dispatch::App;
use crate::error::{Error, Result};
use crate::ext::StateMap;
use crate::server::{self, ServerHandle};
use crate::transport::tls::TlsAcceptor;
use crate::transport::ws::WsSettings;
use crate::transport::{Protocol, Wire};
use group::Routes;

/// Entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Start configuring a server. See [`Builder`].
    pub fn builder() -> Builder {
        Builder::default()
    }
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
/// server.join()?;
/// # Ok::<(), netloom::Error>(())
/// ```
#[derive(Default)]
pub struct Builder {
    config: Config,
    ping: Option<(Duration, u32)>,
    packer: Option<Box<dyn Packer>>,
    addrs: Vec<(SocketAddr, Protocol)>,
    /// `bind_udp` addresses (`builder/udp.rs`).
    udp_addrs: Vec<SocketAddr>,
    routes: Routes,
    hooks: Hooks,
    /// Shared application state (`Builder::state`).
    state: StateMap,
    /// TLS settings (`builder/tls.rs`).
    tls: Option<TlsAcceptor>,
    /// WebSocket settings (`builder/ws.rs`).
    ws: Option<WsSettings>,
    /// Dial profiles by name (`builder/profile.rs`).
    profiles: Vec<(String, Profile)>,
    /// `every` and `cron` (`builder/timers.rs`).
    timers: AppTimers,
    /// The routes' execution model (`builder/exec.rs`).
    exec: Exec,
    /// Bodies that do not decode, hotpot's envelope (`builder/typed.rs`).
    bad_bodies: BadBodies,
    envelopes: Envelopes,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("addrs", &self.addrs)
            .field("udp_addrs", &self.udp_addrs)
            .field("routes", &self.routes.len())
            .field("custom_packer", &self.packer.is_some())
            .field("state", &self.state.len())
            .finish()
    }
}

impl Builder {
    /// Override the settings made so far with the `NETLOOM_*` environment
    /// variables that are set, so an operator can tighten limits without a
    /// rebuild: `NETLOOM_EVENT_LOOPS`, `NETLOOM_MAX_CONNECTIONS`,
    /// `NETLOOM_MAX_BODY_LENGTH`, `NETLOOM_WRITE_HIGH_WATER`,
    /// `NETLOOM_IDLE_TIMEOUT` (seconds; the heartbeat checks every sixth of
    /// it, at most every 30 s), `NETLOOM_FRAME_TIMEOUT` (seconds),
    /// `NETLOOM_FRAME_MIN_RATE` (bytes/s), `NETLOOM_MAX_PARTIAL_BYTES`,
    /// `NETLOOM_HANDSHAKE_TIMEOUT` (seconds). Call it after your own
    /// settings.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming a variable that is not a whole number.
    pub fn config_from_env(mut self) -> Result<Self> {
        self.config.apply_env()?;
        Ok(self)
    }

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
    /// server.join()?;
    /// # Ok::<(), netloom::Error>(())
    /// ```
    pub fn busy_poll(mut self, spin: Duration) -> Self {
        self.config.busy_poll = spin;
        self
    }

    /// While a unit the peer began (packer frame, WebSocket frame or
    /// message, TLS record) is unfinished, the connection must receive at
    /// least `min_rate` bytes a second over every `window` (whole units
    /// completed meanwhile count: that is progress); else it closes with
    /// [`CloseReason::FrameTimeout`](crate::CloseReason::FrameTimeout). Defaults: 20 s and 500 B/s (Apache's
    /// `mod_reqtimeout` body rate): a body trickled at a few bytes a second
    /// is closed within 20 to 40 s, one stalled before its last byte within
    /// 60 s, while a link doing 500 B/s or more completes any frame. See
    /// [`Config::frame_timeout`](crate::Config::frame_timeout). A `window`
    /// longer than [`FOREVER`](crate::FOREVER) is `FOREVER` (never closes).
    pub fn frame_timeout(mut self, window: Duration, min_rate: u32) -> Self {
        self.config.frame_timeout = window;
        self.config.frame_min_rate = min_rate;
        self
    }

    /// Most bytes one loop keeps in partial frames, all its connections
    /// together; over it, the connection holding the most is closed with
    /// [`CloseReason::MemoryLimit`](crate::CloseReason::MemoryLimit). Default: 64 MiB. A frame larger than
    /// this cannot complete: raise it with `max_body_length`.
    pub fn max_partial_bytes(mut self, bytes: usize) -> Self {
        self.config.max_partial_bytes = bytes;
        self
    }

    /// How long a connection closed with unsent data may linger to flush
    /// it. Default: 5 s; longer than [`FOREVER`](crate::FOREVER) is
    /// `FOREVER`.
    pub fn close_linger(mut self, linger: Duration) -> Self {
        self.config.close_linger = linger;
        self
    }

    /// Close connections whose handshake (TLS, and the WebSocket upgrade on
    /// `bind_ws` listeners) has not finished this long
    /// after accept; for a dialed TLS connection (`Dial::tls`),
    /// this long after its TCP connect. Default: 5 s; longer than
    /// [`FOREVER`](crate::FOREVER) is `FOREVER`.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Longest pause of the acceptor after EMFILE/ENFILE. Default: 500 ms;
    /// longer than [`FOREVER`](crate::FOREVER) is `FOREVER`.
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

    /// TCP_NODELAY on accepted sockets, and on the sockets this server
    /// dials once they connect. Default: on.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.config.nodelay = on;
        self
    }

    /// SO_KEEPALIVE with this idle time and probe interval, on accepted
    /// sockets and on the sockets this server dials once they connect.
    /// Default: off.
    pub fn keepalive(mut self, period: Duration) -> Self {
        self.config.keepalive = Some(period);
        self
    }

    /// SO_LINGER on accepted sockets and on dialed ones without a
    /// [`Profile`]: `Some(Duration::ZERO)` resets a connection (RST) when
    /// it closes instead of the orderly FIN. Default: `None` (the
    /// system's behaviour). Only `None` and zero: a positive SO_LINGER
    /// would make `close` block the event loop, so `start` refuses it
    /// with [`Error::Config`](crate::Error::Config).
    pub fn linger(mut self, linger: Option<Duration>) -> Self {
        self.config.linger = linger;
        self
    }

    /// SO_RCVBUF in bytes on accepted sockets and on dialed ones without
    /// a [`Profile`] (a dialed one's as its connect starts; the kernel may
    /// double or clamp it). Default: the system's, autotuned.
    pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
        self.config.recv_buffer_size = Some(bytes);
        self
    }

    /// SO_SNDBUF in bytes, as [`recv_buffer_size`](Self::recv_buffer_size).
    pub fn send_buffer_size(mut self, bytes: usize) -> Self {
        self.config.send_buffer_size = Some(bytes);
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

    /// Shared application state: `value` is reachable from every handler,
    /// middleware and hook, on every loop, as
    /// [`Session::state`](crate::Session::state)`::<T>()` (also through a [`Context`](crate::Context)), instead
    /// of an `Arc` cloned into each closure. One value per type: a later
    /// `state` with a value of the same type replaces the earlier one.
    ///
    /// The state is shared, never copied: `T` must be `Send + Sync`. It
    /// is read-only; for what changes, put atomics or a lock inside `T`.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::sync::Mutex;
    ///
    /// struct Rooms(Mutex<HashMap<String, Vec<netloom::ConnId>>>);
    ///
    /// let builder = netloom::Server::builder()
    ///     .state(Rooms(Mutex::default()))
    ///     .route(1, |ctx| {
    ///         let Some(rooms) = ctx.state::<Rooms>() else { return };
    ///         let room = String::from_utf8_lossy(ctx.body()).into_owned();
    ///         if let Ok(mut rooms) = rooms.0.lock() {
    ///             rooms.entry(room).or_default().push(ctx.id());
    ///         }
    ///     });
    /// # drop(builder);
    /// ```
    pub fn state<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.state.insert(value);
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
    /// and acceptor threads. A server without `bind` listens on nothing and
    /// only dials (`Hub::dial`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting,
    /// [`Error::Io`] if a listener cannot be bound or a thread not spawned.
    pub fn start(mut self) -> Result<ServerHandle> {
        if let Some((after, ping_id)) = self.ping {
            let Some(hb) = self.config.heartbeat.as_mut() else {
                return Err(Error::Config("ping_before_kick needs heartbeat".into()));
            };
            hb.ping_after = Some(after);
            hb.ping_id = ping_id;
        }
        let mut config = self.config;
        config.finest_timer = self.timers.finest();
        self.envelopes.freeze();
        let mut used = vec![self.exec];
        let (packers, routings) = profile::settle_all(self.profiles, &mut config, &mut used)?;
        let router = self.routes.build(self.exec, &mut used);
        let (exec, receivers) = Executors::plan(used)?;
        config.logic_thread = self.exec == Exec::Single;
        let packer = match self.packer {
            Some(custom) if !implements_decoding(&*custom) => {
                return Err(Error::Config(
                    "the packer implements neither `Packer::peek` nor `Packer::decode`".into(),
                ))
            }
            Some(custom) => ServerPacker::Custom(custom),
            None => ServerPacker::Length(LengthPacker::new(config.max_body_length)),
        };
        // UDP sessions speak the packer, as plain TCP connections do.
        let udp = (!self.udp_addrs.is_empty()).then_some(Protocol::Raw);
        let protocols = self.addrs.iter().map(|&(_, p)| p).chain(udp).collect();
        let wire = Wire::new(packer, packers, self.tls, self.ws, protocols, &config)?;
        let app = App {
            router,
            unknown_id: config.unknown_id,
            profiles: routings,
            timers: self.timers,
            hooks: self.hooks,
            state: Arc::new(self.state),
            exec,
            bad_bodies: self.bad_bodies,
        };
        server::spawn(config, wire, app, receivers, &self.addrs, &self.udp_addrs)
    }
}
