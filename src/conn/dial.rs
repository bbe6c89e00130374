//! Outbound connections: where to dial and how ([`Dial`]), and
//! [`DialState`], what a loop keeps for a connection it dialed beside the
//! connection itself (only dialed connections have one, so accepted ones
//! pay nothing for it).
//!
//! `Dial` lives here rather than with the other settings in `config`
//! because it carries the transport's TLS connector (`Dial::tls`, in
//! `builder/tls.rs` with the server's TLS settings).

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{saturate, HealthCheck, Reconnect, WhileDown};
use crate::transport::tls::TlsConnector;
use crate::transport::ws::WsDial;

/// An outbound connection to make on the server's loops: see
/// [`Hub::dial`](crate::Hub::dial).
///
/// ```
/// use std::time::Duration;
/// use netloom::{Dial, Reconnect};
///
/// let dial = Dial::new("127.0.0.1:7000".parse().unwrap())
///     .connect_timeout(Duration::from_secs(3))
///     .reconnect(Reconnect::default());
/// # drop(dial);
/// ```
#[derive(Debug, Clone)]
pub struct Dial {
    /// The address dialed; for a host name, the unspecified address with
    /// its port until it resolves.
    pub(crate) addr: SocketAddr,
    /// The host name to resolve before every attempt (`Dial::host`).
    pub(crate) host: Option<(String, u16)>,
    /// How a host name resolves (default: the system's resolver).
    pub(crate) resolver: Resolver,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect: Option<Reconnect>,
    pub(crate) while_down: WhileDown,
    /// TLS as the client (`Dial::tls`); `None`: plain TCP.
    pub(crate) tls: Option<TlsConnector>,
    /// WebSocket as the client (`Dial::ws`), and whether its URL was
    /// `wss://`.
    pub(crate) ws: Option<(Arc<WsDial>, bool)>,
    /// Drop the link after this many request timeouts in a row.
    pub(crate) timeouts_to_drop: Option<u32>,
    /// The application-level health check, if any.
    pub(crate) health: Option<HealthCheck>,
    /// The profile named by `Dial::profile`, if any.
    pub(crate) profile_name: Option<String>,
    /// Its index (`Hub::dial` looks the name up; 0: the server's own).
    pub(crate) profile: u8,
    /// Told when the connection opens and when it is closed for good (the
    /// pool's members).
    pub(crate) watch: Option<Watch>,
    /// Datagrams to a UDP peer (`Dial::udp`) instead of a TCP connection.
    pub(crate) udp: bool,
}

impl Dial {
    /// Dial `addr`; connect timeout 10 s, no reconnect.
    pub fn new(addr: SocketAddr) -> Self {
        Dial {
            addr,
            host: None,
            resolver: Resolver::default(),
            connect_timeout: Duration::from_secs(10),
            reconnect: None,
            while_down: WhileDown::Queue,
            tls: None,
            ws: None,
            timeouts_to_drop: None,
            health: None,
            profile_name: None,
            profile: 0,
            watch: None,
            udp: false,
        }
    }

    /// Dial the host name `host` on `port`: resolved off the loop thread
    /// (by [`resolver`](Self::resolver), the system's by default) before
    /// the first attempt and again before every reconnect, so a backend
    /// that moves is followed. Each address it resolves to is tried in
    /// turn: one refused (or timed out) moves to the next, and the attempt
    /// fails only when none connects. A name that does not resolve (or
    /// resolves to nothing) fails the attempt with
    /// [`CloseReason::ResolveFailed`](crate::CloseReason::ResolveFailed),
    /// which takes the reconnect backoff like any failed attempt.
    ///
    /// ```
    /// use netloom::{Dial, Reconnect};
    ///
    /// let dial = Dial::host("backend.local", 7000).reconnect(Reconnect::default());
    /// # drop(dial);
    /// ```
    pub fn host(host: impl Into<String>, port: u16) -> Self {
        Dial {
            host: Some((host.into(), port)),
            ..Dial::new(SocketAddr::from(([0, 0, 0, 0], port)))
        }
    }

    /// Resolve [`host`](Self::host) names with `resolve` instead of the
    /// system's resolver: service discovery, or a test moving a name. It
    /// runs on a short-lived thread of its own for each attempt, never on
    /// a loop, and may block. Its first address is tried first. Ignored by
    /// a dial of a `SocketAddr`.
    pub fn resolver(
        mut self,
        resolve: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> Self {
        self.resolver = Resolver(Arc::new(resolve));
        self
    }

    /// Give up a connect attempt after `timeout` (default 10 s; longer
    /// than [`FOREVER`](crate::FOREVER) is `FOREVER`: never give up).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = saturate(timeout);
        self
    }

    /// Come back after a loss (or a failed first connect) by this policy.
    /// Without one, a lost connection is closed (`on_close` runs). Its
    /// delays are capped at [`FOREVER`](crate::FOREVER); a policy whose
    /// numbers make no sense (see [`Reconnect`]) makes
    /// [`Hub::dial`](crate::Hub::dial) fail with
    /// [`Error::Config`](crate::Error::Config).
    pub fn reconnect(mut self, mut policy: Reconnect) -> Self {
        // Capped here, at the API (`Reconnect::delay` saturates all the
        // same, as every use of a duration does).
        policy.initial = saturate(policy.initial);
        policy.max = saturate(policy.max);
        self.reconnect = Some(policy);
        self
    }

    /// What sends do while the connection is down. Default: queue.
    pub fn while_down(mut self, policy: WhileDown) -> Self {
        self.while_down = policy;
        self
    }

    /// Take the link for dead after `n` of its requests in a row time out
    /// (a reply, late ones too, starts the count over; so does a new
    /// connection): it is closed with
    /// [`CloseReason::RequestTimeouts`](crate::CloseReason::RequestTimeouts)
    /// and reconnects by its [`reconnect`](Self::reconnect) policy. The
    /// packer must carry sequence numbers ([`Hub::dial`](crate::Hub::dial)
    /// fails with [`Error::NoSeq`](crate::Error::NoSeq) otherwise), and
    /// `n` must be at least 1 ([`Error::Config`](crate::Error::Config)).
    pub fn reconnect_after_timeouts(mut self, n: u32) -> Self {
        self.timeouts_to_drop = Some(n);
        self
    }

    /// Check the link's health while it is open: see [`HealthCheck`].
    /// The packer must carry sequence numbers
    /// ([`Hub::dial`](crate::Hub::dial) fails with
    /// [`Error::NoSeq`](crate::Error::NoSeq) otherwise); a zero `interval`
    /// or `timeout` is an [`Error::Config`](crate::Error::Config).
    pub fn health_check(mut self, mut check: HealthCheck) -> Self {
        check.interval = saturate(check.interval);
        check.timeout = saturate(check.timeout);
        self.health = Some(check);
        self
    }

    /// Speak the protocol of the profile `name` on this connection: its
    /// packer, routes and middleware, heartbeat and socket options (see
    /// [`Profile`](crate::Profile), registered with
    /// [`Builder::profile`](crate::Builder::profile)) instead of the
    /// server's own. Every dial naming a profile shares it: nothing of it
    /// is copied per connection. [`Hub::dial`](crate::Hub::dial) fails
    /// with [`Error::Config`](crate::Error::Config) for a name the server
    /// does not know.
    ///
    /// ```
    /// use netloom::Dial;
    ///
    /// let dial = Dial::new("127.0.0.1:7000".parse().unwrap()).profile("backend");
    /// # drop(dial);
    /// ```
    pub fn profile(mut self, name: impl Into<String>) -> Self {
        self.profile_name = Some(name.into());
        self
    }

    /// Talk to the peer in UDP datagrams instead of over TCP: a session
    /// like a [`bind_udp`](crate::Builder::bind_udp) one, with a socket of
    /// its own (bound to an ephemeral port and connected to the peer, so
    /// only its datagrams are taken), the same routes (or its
    /// [profile](Self::profile)'s), requests by sequence number with their
    /// timeouts, the heartbeat and the idle kick (`UdpConfig::idle_timeout`
    /// without one). Every message is one datagram, up to
    /// `UdpConfig::max_datagram`; nothing bounds what is sent to a peer
    /// this side chose. There is no connect: the dial opens (`on_open`
    /// runs) once its loop made the socket. A UDP dial never reconnects,
    /// and takes no TLS or WebSocket: [`Hub::dial`](crate::Hub::dial)
    /// refuses those with `Error::Config`. A peer that is not there shows
    /// only as requests that time out, and the idle kick. With
    /// [`host`](Self::host), the name's first address is the peer (no
    /// connect fails over to the next). Replies to its requests are taken
    /// even while its handlers are behind (`Config::exec_backlog`); its
    /// other datagrams are then dropped.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use netloom::{Dial, SeqPacker, Server};
    ///
    /// let client = Server::builder().packer(SeqPacker::default()).start()?;
    /// let peer = client.hub().dial(Dial::new("127.0.0.1:6566".parse().unwrap()).udp())?;
    /// let reply = peer.request(1, b"ping", Duration::from_millis(500))?.wait()?;
    /// # drop(reply);
    /// # Ok::<(), netloom::Error>(())
    /// ```
    pub fn udp(mut self) -> Self {
        self.udp = true;
        self
    }

    /// The address dialed (for a [`host`](Self::host) name, the
    /// unspecified address with its port: see [`host_name`](Self::host_name)).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The host name and port dialed, for a [`host`](Self::host) dial.
    pub fn host_name(&self) -> Option<(&str, u16)> {
        self.host.as_ref().map(|(h, p)| (h.as_str(), *p))
    }
}

/// What netloom's own holder of a dial (the pool) learns of it, on the
/// connection's loop: `true` when it opens, `false` when it is closed for
/// good. It must not block or call back into the loop.
#[derive(Clone)]
pub(crate) struct Watch(pub(crate) Arc<dyn Fn(bool) + Send + Sync>);

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Watch")
    }
}

/// A host name resolver (`Dial::resolver`).
type ResolveFn = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// How a dial's host name resolves: shared by the dial's attempts.
#[derive(Clone)]
pub(crate) struct Resolver(pub(crate) Arc<ResolveFn>);

impl Default for Resolver {
    fn default() -> Self {
        Resolver(Arc::new(|host: &str, port: u16| {
            Ok((host, port).to_socket_addrs()?.collect())
        }))
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

/// A dialed connection's dialing state.
#[derive(Debug)]
pub(crate) struct DialState {
    pub(crate) spec: Arc<Dial>,
    /// Attempts since the connection was last open (0 while open). Over
    /// TLS it is open once the handshake completes, so a server whose
    /// certificate is refused is retried on the backoff schedule and
    /// counts against `max_attempts`.
    pub(crate) attempt: u32,
    /// Connect attempts started (wrapping): every timer of the connection
    /// carries it, so a timer left over from an earlier attempt never acts
    /// on a later one (`reactor::event_loop::timers`).
    pub(crate) tries: u32,
    /// It was open at least once (`on_open` ran).
    pub(crate) opened: bool,
    /// A host dial: the addresses of this attempt not tried yet.
    pub(crate) addrs: VecDeque<SocketAddr>,
    /// A host dial: its name is being resolved for try `tries`, or the
    /// resolver's error waits for the loop to fail the attempt with it.
    pub(crate) resolve: Resolve,
}

/// Where a host dial's resolution stands.
#[derive(Debug, Default)]
pub(crate) enum Resolve {
    /// Nothing asked (or the answer used).
    #[default]
    Idle,
    /// A resolver thread works for this try.
    Pending(u32),
    /// The resolver failed: the attempt fails with this.
    Failed(String),
}

/// What a dialed connection's next connect attempt does (`next_step`).
pub(crate) enum Step {
    /// Connect to this address: a new try.
    Connect(SocketAddr),
    /// Resolve the host name (a new try; `Resolve::Pending` is set).
    Resolve,
    /// The resolver failed: the attempt fails with this.
    Fail(String),
    /// The name is being resolved: the answer starts the attempt.
    Wait,
}

impl DialState {
    /// The next step of a connect attempt: an address dials it (a host
    /// dial, its next resolved address, or resolves again once none is
    /// left). A new socket or resolution is a new try (`tries`), so
    /// every timer of the previous one is stale.
    pub(crate) fn next_step(&mut self) -> Step {
        if self.spec.host.is_none() {
            self.tries = self.tries.wrapping_add(1);
            return Step::Connect(self.spec.addr);
        }
        match std::mem::take(&mut self.resolve) {
            Resolve::Pending(t) => {
                self.resolve = Resolve::Pending(t);
                Step::Wait
            }
            Resolve::Failed(why) => Step::Fail(why),
            Resolve::Idle => {
                self.tries = self.tries.wrapping_add(1);
                match self.addrs.pop_front() {
                    Some(addr) => Step::Connect(addr),
                    None => {
                        self.resolve = Resolve::Pending(self.tries);
                        Step::Resolve
                    }
                }
            }
        }
    }

    pub(crate) fn new(spec: Arc<Dial>) -> Self {
        DialState {
            spec,
            attempt: 0,
            tries: 0,
            opened: false,
            addrs: VecDeque::new(),
            resolve: Resolve::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dial's `Debug` names its hooks (never calling them).
    #[test]
    fn a_dials_debug_names_its_resolver_and_watch() {
        let mut dial = Dial::new("127.0.0.1:1".parse().unwrap());
        dial.watch = Some(Watch(Arc::new(|_| {})));
        let said = format!("{dial:?}");
        assert!(
            said.contains("resolver: Resolver") && said.contains("watch: Some(Watch)"),
            "{said}"
        );
    }
}
