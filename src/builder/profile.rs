//! [`Profile`]: a protocol for dialed connections, registered with
//! [`Builder::profile`] and named by [`Dial::profile`](crate::Dial::profile).
//! What it sets is kept where its kind lives: the packer in the transport
//! (`Wire`), the routes in `dispatch` (`Routing`), the heartbeat and socket
//! options in `config` (`ProfileConfig`), each found through the
//! connection's profile index.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::group::{Group, Routes};
use super::Builder;
use crate::codec::{implements_decoding, LengthPacker, Packer, ServerPacker};
use crate::config::{Config, Heartbeat, ProfileConfig, UnknownIdPolicy};
use crate::dispatch::context::{Context, HandlerResult, IntoHandlerResult};
use crate::dispatch::exec::Exec;
use crate::dispatch::middleware::{handler_fn, middleware_fn, Next};
use crate::dispatch::Routing;
use crate::error::{Error, Result};
use crate::sys::SocketOptions;

/// A protocol for the server's outbound connections: its own packer,
/// routes and middleware, heartbeat and socket options, on the server's
/// loops. A gateway speaks the default packer to its clients and, say,
/// [`SeqPacker`](crate::SeqPacker) to its backends, in one [`Server`](crate::Server):
///
/// ```no_run
/// use std::sync::OnceLock;
/// use std::time::Duration;
/// use netloom::{ConnHandle, Dial, Error, Profile, Reconnect, SeqPacker, Server};
///
/// // The backend link, dialed once the server runs.
/// static BACKEND: OnceLock<ConnHandle> = OnceLock::new();
///
/// let server = Server::builder()
///     // Clients: the default 8-byte packer; message 1 is relayed.
///     .route(1, |ctx| {
///         let reply = ctx.responder();
///         let backend = BACKEND.get().ok_or(Error::Disconnected)?;
///         backend.request_with(7, ctx.body(), Duration::from_secs(2), move |answer| {
///             if let Ok(answer) = answer {
///                 let _ = reply.respond(1, &answer.body);
///             }
///         })
///     })
///     // Backends: SeqPacker, no routes of their own (replies only).
///     .profile("backend", Profile::new().packer(SeqPacker::default()))
///     .bind("127.0.0.1:6570")?
///     .start()?;
/// let link = Dial::new("127.0.0.1:6568".parse().unwrap())
///     .profile("backend")
///     .reconnect(Reconnect::default());
/// let _ = BACKEND.set(server.hub().dial(link)?);
/// server.join()?;
/// # Ok::<(), netloom::Error>(())
/// ```
///
/// A profile is the whole protocol of its connections: the server's
/// packer, routes, global middleware, groups, fallback, unknown-id policy,
/// heartbeat and socket options do not apply to them (its own do), while
/// the hooks (`on_open`, `on_close`, `on_disconnect`, `on_reconnect`), the
/// shared state, the limits (write high-water mark, partial-frame budget,
/// frame deadline) and TLS ([`Dial::tls`](crate::Dial::tls)) are the
/// server's and the dial's. Broadcasts never reach dialed connections;
/// [`Hub::send_to`](crate::Hub::send_to) does, each encoded by its own
/// profile's packer. Without routes a profile's connections carry replies
/// to their requests, and anything else follows its
/// [`unknown_id`](Self::unknown_id) policy (default: drop, counted in
/// `Stats::unknown_ids`).
///
/// Every dial naming a profile shares it: the server keeps each profile
/// once, and a connection keeps only its index.
pub struct Profile {
    packer: Option<Box<dyn Packer>>,
    routes: Routes,
    unknown_id: UnknownIdPolicy,
    heartbeat: Option<Heartbeat>,
    ping: Option<(Duration, u32)>,
    socket: SocketOptions,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("custom_packer", &self.packer.is_some())
            .field("routes", &self.routes.len())
            .field("unknown_id", &self.unknown_id)
            .field("heartbeat", &self.heartbeat)
            .field("socket", &self.socket)
            .finish()
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile::new()
    }
}

impl Profile {
    /// The default packer ([`LengthPacker`] with its 1 MiB body limit),
    /// no routes (replies only), unknown ids dropped, no heartbeat,
    /// TCP_NODELAY on, no keepalive, the system's linger and buffer sizes.
    pub fn new() -> Self {
        Profile {
            packer: None,
            routes: Routes::default(),
            unknown_id: UnknownIdPolicy::Drop,
            heartbeat: None,
            ping: None,
            socket: SocketOptions::default(),
        }
    }

    /// The wire format of the profile's connections.
    pub fn packer(mut self, packer: impl Packer) -> Self {
        self.packer = Some(Box::new(packer));
        self
    }

    /// A middleware for the profile's routes, as
    /// [`Builder::middleware`] is for the server's.
    pub fn middleware<F>(mut self, f: F) -> Self
    where
        F: Fn(&mut Context<'_>, Next<'_>) -> HandlerResult + Send + Sync + 'static,
    {
        self.routes.global.push(middleware_fn(f));
        self
    }

    /// Route message id `id` of the profile's connections to `handler`,
    /// as [`Builder::route`] does for the server's.
    pub fn route<F, R>(mut self, id: u32, handler: F) -> Self
    where
        F: Fn(&mut Context<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.routes
            .add(id, Arc::from(Vec::new()), handler_fn(handler), None);
        self
    }

    /// The handler of every id without a route, as [`Builder::fallback`].
    pub fn fallback<F, R>(mut self, handler: F) -> Self
    where
        F: Fn(&mut Context<'_>) -> R + Send + Sync + 'static,
        R: IntoHandlerResult,
    {
        self.routes.fallback = Some(handler_fn(handler));
        self
    }

    /// Routes sharing middleware, as [`Builder::group`].
    pub fn group<const N: usize>(
        mut self,
        middleware: [fn(&mut Context<'_>, Next<'_>) -> HandlerResult; N],
        f: impl FnOnce(Group) -> Group,
    ) -> Self {
        self.routes.add_group(f(Group::with(
            middleware.into_iter().map(middleware_fn).collect(),
        )));
        self
    }

    /// What a message no route handles does. Default: drop.
    pub fn unknown_id(mut self, policy: UnknownIdPolicy) -> Self {
        self.unknown_id = policy;
        self
    }

    /// Idle detection for the profile's connections, as
    /// [`Builder::heartbeat`]. Default: none.
    pub fn heartbeat(mut self, check_interval: Duration, idle_timeout: Duration) -> Self {
        self.heartbeat = Some(Heartbeat {
            check_interval,
            idle_timeout,
            ping_after: None,
            ping_id: 0,
        });
        self
    }

    /// Ping before kicking, as [`Builder::ping_before_kick`] (needs
    /// [`heartbeat`](Self::heartbeat)).
    pub fn ping_before_kick(mut self, after: Duration, ping_id: u32) -> Self {
        self.ping = Some((after, ping_id));
        self
    }

    /// TCP_NODELAY. Default: on.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.socket.nodelay = on;
        self
    }

    /// SO_KEEPALIVE with this idle time and probe interval. Default: off.
    pub fn keepalive(mut self, period: Duration) -> Self {
        self.socket.keepalive = Some(period);
        self
    }

    /// SO_LINGER: `Some(Duration::ZERO)` resets the connection (RST) when
    /// it closes instead of the orderly FIN. Default: `None` (the
    /// system's behaviour). Only `None` and zero: a positive SO_LINGER
    /// would make `close` block the event loop, so `start` refuses it
    /// with [`Error::Config`](crate::Error::Config).
    pub fn linger(mut self, linger: Option<Duration>) -> Self {
        self.socket.linger = linger;
        self
    }

    /// SO_RCVBUF in bytes, set as the connect starts (the kernel may
    /// double or clamp it). Default: the system's.
    pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
        self.socket.recv_buffer = Some(bytes);
        self
    }

    /// SO_SNDBUF in bytes, set as the connect starts (the kernel may
    /// double or clamp it). Default: the system's.
    pub fn send_buffer_size(mut self, bytes: usize) -> Self {
        self.socket.send_buffer = Some(bytes);
        self
    }

    /// Split into the parts each layer keeps (`Builder::start`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a packer that cannot decode, or
    /// `ping_before_kick` without `heartbeat`.
    pub(super) fn settle(
        self,
        name: String,
        used: &mut Vec<Exec>,
    ) -> Result<(ServerPacker, ProfileConfig, Routing)> {
        let whose = format!("profile {name:?}");
        let packer = match self.packer {
            Some(custom) if !implements_decoding(&*custom) => {
                return Err(Error::Config(format!(
                    "{whose}: the packer implements neither `Packer::peek` nor `Packer::decode`"
                )))
            }
            Some(custom) => ServerPacker::Custom(custom),
            None => ServerPacker::Length(LengthPacker::default()),
        };
        let mut heartbeat = self.heartbeat;
        if let Some((after, ping_id)) = self.ping {
            let Some(hb) = heartbeat.as_mut() else {
                return Err(Error::Config(format!(
                    "{whose}: ping_before_kick needs heartbeat"
                )));
            };
            hb.ping_after = Some(after);
            hb.ping_id = ping_id;
        }
        let config = ProfileConfig {
            name,
            heartbeat,
            socket: self.socket,
        };
        let routing = Routing {
            router: self.routes.build(Exec::Inline, used),
            unknown_id: self.unknown_id,
        };
        Ok((packer, config, routing))
    }
}

impl Builder {
    /// Register the dial profile `name`: dials naming it
    /// ([`Dial::profile`](crate::Dial::profile)) speak its protocol
    /// instead of the server's. See [`Profile`]. A second profile of the
    /// same name, or more than 255, makes [`start`](Self::start) fail with
    /// [`Error::Config`].
    pub fn profile(mut self, name: impl Into<String>, profile: Profile) -> Self {
        self.profiles.push((name.into(), profile));
        self
    }
}

/// Split the profiles into what each layer keeps: their packers (for the
/// `Wire`), their settings (into `config`, saturated and checked with the
/// server's) and their routes (for the `App`).
pub(super) fn settle_all(
    profiles: Vec<(String, Profile)>,
    config: &mut Config,
    used: &mut Vec<Exec>,
) -> Result<(Vec<ServerPacker>, Vec<Routing>)> {
    let (mut packers, mut routings) = (Vec::new(), Vec::new());
    for (name, profile) in profiles {
        if config.profiles.iter().any(|p| p.name == name) {
            return Err(Error::Config(format!("two profiles named {name:?}")));
        }
        let (packer, settings, routing) = profile.settle(name, used)?;
        packers.push(packer);
        config.profiles.push(settings);
        routings.push(routing);
    }
    config.saturate_durations();
    config.validate()?;
    Ok((packers, routings))
}
