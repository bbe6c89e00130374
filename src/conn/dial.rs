//! Outbound connections: where to dial and how ([`Dial`]), and
//! [`DialState`], what a loop keeps for a connection it dialed beside the
//! connection itself (only dialed connections have one, so accepted ones
//! pay nothing for it).
//!
//! `Dial` lives here rather than with the other settings in `config`
//! because it carries the transport's TLS connector (`Dial::tls`, in
//! `builder/tls.rs` with the server's TLS settings).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{saturate, HealthCheck, Reconnect, WhileDown};
use crate::transport::tls::TlsConnector;

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
    pub(crate) addr: SocketAddr,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect: Option<Reconnect>,
    pub(crate) while_down: WhileDown,
    /// TLS as the client (`Dial::tls`); `None`: plain TCP.
    pub(crate) tls: Option<TlsConnector>,
    /// Drop the link after this many request timeouts in a row.
    pub(crate) timeouts_to_drop: Option<u32>,
    /// The application-level health check, if any.
    pub(crate) health: Option<HealthCheck>,
}

impl Dial {
    /// Dial `addr`; connect timeout 10 s, no reconnect.
    pub fn new(addr: SocketAddr) -> Self {
        Dial {
            addr,
            connect_timeout: Duration::from_secs(10),
            reconnect: None,
            while_down: WhileDown::Queue,
            tls: None,
            timeouts_to_drop: None,
            health: None,
        }
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
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.reconnect = Some(Reconnect {
            initial: saturate(policy.initial),
            max: saturate(policy.max),
            ..policy
        });
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
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health = Some(HealthCheck {
            interval: saturate(check.interval),
            timeout: saturate(check.timeout),
            ..check
        });
        self
    }

    /// The address dialed.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
}

impl DialState {
    pub(crate) fn new(spec: Arc<Dial>) -> Self {
        DialState {
            spec,
            attempt: 0,
            tries: 0,
            opened: false,
        }
    }
}
