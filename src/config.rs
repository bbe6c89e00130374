//! Server configuration: every knob, its default and its validation.
//!
//! [`Config`] is plain data. The [`Builder`](crate::Builder) sets it field by
//! field; [`Config::validate`] runs when the server starts, so a bad value is
//! an [`Error::Config`] from `start()`, never a panic.

mod dial;
mod env;
mod pool;
mod profile;
mod udp;

pub(crate) use dial::Jitter;
pub use dial::{HealthCheck, Reconnect, WhileDown};
pub use pool::PoolConfig;
pub(crate) use profile::{ProfileConfig, MAX_PROFILES, SERVER_PROFILE};
pub use udp::{UdpConfig, UdpValidation, MAX_UDP_PAYLOAD};

use std::time::Duration;

use crate::codec::LengthPacker;
use crate::error::{Error, Result};

/// How accepted sockets are spread over the event loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Balance {
    /// Loop 0, 1, 2, … in turn. Cheapest; even for uniform connections.
    #[default]
    RoundRobin,
    /// The loop with the fewest open connections (ties: lowest index).
    /// Better when connection lifetimes vary a lot.
    LeastConnections,
}

/// What happens to a message whose id no route handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnknownIdPolicy {
    /// Log at debug level and drop the message; the connection stays open.
    #[default]
    Drop,
    /// Close the connection with [`CloseReason::UnknownId`](crate::CloseReason::UnknownId).
    Close,
}

/// What happens when a send would take a connection's write queue over its
/// high-water mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SlowPeerPolicy {
    /// The send fails with [`Error::BufferFull`] and the loop stops reading
    /// from that peer until its queue drains below half the mark. A
    /// connection this side waits for replies on (one it dialed, or sent
    /// requests on) is read on regardless: only its sends are refused, or
    /// a backend blocked writing replies would jam it for good.
    #[default]
    Backpressure,
    /// The peer is closed with [`CloseReason::SlowPeer`](crate::CloseReason::SlowPeer)
    /// (the send fails with [`Error::Closed`]).
    Close,
}

/// Idle detection: kick connections that send nothing for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Granularity of the idle check (the timer wheel's tick). A silent peer
    /// is closed between `idle_timeout` and `idle_timeout + check_interval`
    /// after its last byte.
    pub check_interval: Duration,
    /// Silence after which the connection is closed with
    /// [`CloseReason::IdleTimeout`](crate::CloseReason::IdleTimeout).
    pub idle_timeout: Duration,
    /// Ping-before-kick: after this much silence the server sends one
    /// message with id `ping_id` and an empty body; any byte from the peer
    /// (typically its pong) counts as traffic. `None`: never ping.
    pub ping_after: Option<Duration>,
    /// Message id of the ping (see `ping_after`).
    pub ping_id: u32,
}

impl Heartbeat {
    pub(crate) fn saturate(&mut self) {
        self.check_interval = saturate(self.check_interval);
        self.idle_timeout = saturate(self.idle_timeout);
        self.ping_after = self.ping_after.map(saturate);
    }

    /// Check the numbers (the server's heartbeat and each profile's).
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(Error::Config(msg.to_string()));
        if self.check_interval < Duration::from_millis(1) {
            return bad("heartbeat check_interval must be at least 1 ms");
        }
        // Connections keep their last-activity time as wrapping u32
        // milliseconds; idle spans must stay well inside that range.
        if self.idle_timeout > Duration::from_secs(24 * 24 * 3600) {
            return bad("heartbeat idle_timeout must be at most 24 days");
        }
        if self.idle_timeout < self.check_interval {
            return bad("heartbeat idle_timeout must be >= check_interval");
        }
        if self.ping_after.is_some_and(|p| p >= self.idle_timeout) {
            return bad("heartbeat ping_after must be shorter than idle_timeout");
        }
        Ok(())
    }
}

/// "Forever": the longest duration any setting takes (about 100 years).
///
/// Every duration netloom is given (the `Builder`'s and `Config`'s
/// timeouts and lingers, [`Dial::connect_timeout`](crate::Dial::connect_timeout),
/// [`Reconnect`]'s delays, request timeouts) is capped at this, so
/// `Duration::MAX` is a valid way to say "never": a timer that far ahead
/// never fires, and no deadline computed from it overflows.
pub const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `d`, or [`FOREVER`] if it is longer: the one place a duration given to
/// netloom is saturated.
#[inline]
pub(crate) fn saturate(d: Duration) -> Duration {
    d.min(FOREVER)
}

/// Longest [`Config::busy_poll`].
pub(crate) const MAX_BUSY_POLL: Duration = Duration::from_millis(10);

/// Every setting of a server. Build one with [`Server::builder`](crate::Server::builder).
///
/// A duration longer than [`FOREVER`] is taken as `FOREVER` when the
/// server starts: `Duration::MAX` is a valid way to say "never".
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Number of event-loop threads. Default: available parallelism.
    pub event_loops: usize,
    /// How accepted sockets are spread over loops. Default: round-robin.
    pub balance: Balance,
    /// Largest body the default packer accepts or sends. Default: 1 MiB.
    /// A custom packer enforces its own limit; for it, this only bounds
    /// the room the loop reserves ahead for one incomplete frame (this
    /// plus `read_buffer`; a longer frame's buffer grows as it arrives).
    pub max_body_length: usize,
    /// Most open connections; further accepts are closed at once and
    /// counted in `Stats::rejected`. Default: unlimited (`usize::MAX`).
    pub max_connections: usize,
    /// Per-connection write-queue high-water mark in bytes. Default: 4 MiB.
    pub write_high_water: usize,
    /// What a send over the high-water mark does. Default: backpressure.
    pub slow_peer: SlowPeerPolicy,
    /// Most bytes of cross-thread sends waiting in one loop's inbox.
    /// Default: 64 MiB.
    pub inbox_capacity: usize,
    /// Most bytes read from one connection per loop turn before the loop
    /// serves the others (the rest is read next turn). The read that
    /// passes it finishes first, and reading the rest of a large frame
    /// into its reserved buffer asks for all of it. Default: 256 KiB.
    pub read_budget: usize,
    /// Most bytes one read asks for (the size of each loop's shared read
    /// buffers). Default: 64 KiB.
    pub read_buffer: usize,
    /// Idle detection; `None` (the default) disables it.
    pub heartbeat: Option<Heartbeat>,
    /// What to do with messages no route handles. Default: drop.
    pub unknown_id: UnknownIdPolicy,
    /// Set TCP_NODELAY on accepted and dialed sockets (a dialed one once
    /// it has connected). Default: true.
    pub nodelay: bool,
    /// Enable SO_KEEPALIVE with this idle time (and probe interval) on
    /// accepted and dialed sockets (a dialed one once it has connected).
    /// Default: `None` (off).
    pub keepalive: Option<Duration>,
    /// SO_LINGER on accepted sockets and dialed ones (without a profile):
    /// `Some(Duration::ZERO)` resets a connection (RST) when it is
    /// closed instead of the orderly FIN; `None` (the default) leaves the
    /// system's behaviour. Nothing else: a positive SO_LINGER would make
    /// `close` block the event loop (Linux), so `start` refuses it
    /// (`close_linger` is the graceful way).
    pub linger: Option<Duration>,
    /// SO_RCVBUF in bytes for accepted and dialed sockets (the kernel may
    /// double or clamp it). Default: `None` (the system's, autotuned).
    pub recv_buffer_size: Option<usize>,
    /// SO_SNDBUF in bytes for accepted and dialed sockets (the kernel may
    /// double or clamp it). Default: `None` (the system's, autotuned).
    pub send_buffer_size: Option<usize>,
    /// Listen backlog. Default: 1024.
    pub backlog: u32,
    /// How long a connection closed with unsent data may linger to flush
    /// it before it is dropped. Default: 5 s. A connection that never
    /// opened (connecting, or handshaking) closes at once, and so does one
    /// whose peer was taken for dead (`IdleTimeout`, `HealthCheckFailed`,
    /// `RequestTimeouts`) once its socket took what it could.
    pub close_linger: Duration,
    /// Longest pause of the acceptor after EMFILE/ENFILE (it doubles from
    /// 5 ms up to this). Default: 500 ms.
    pub accept_backoff_max: Duration,
    /// A connection whose handshake (TLS, then the WebSocket upgrade on
    /// `bind_ws` listeners) is not complete this long after
    /// accept is closed with `CloseReason::HandshakeTimeout`. Default: 5 s.
    pub handshake_timeout: Duration,
    /// Before a loop sleeps in the poller, it keeps polling without
    /// sleeping for up to this long, so that bytes arriving meanwhile are
    /// handled without a wake-up of a sleeping thread. Costs CPU while it
    /// waits; see [`Builder::busy_poll`](crate::Builder::busy_poll).
    /// Default: zero (off). At most 10 ms.
    pub busy_poll: Duration,
    /// While a unit the peer began (a packer frame, a WebSocket frame or
    /// fragmented message, a TLS record) is unfinished, the connection
    /// must receive at least `frame_min_rate` bytes a second over every
    /// window of this length (the first window starts at the unit's first
    /// byte; bytes that complete other units count too: a client streaming
    /// whole frames is making progress wherever its reads end); else it
    /// closes with `CloseReason::FrameTimeout`. A window the server spent
    /// not reading the connection (backpressure) is not held against it.
    /// Default: 20 s. With the defaults a body trickled at a few bytes a
    /// second is closed after 20 to 40 s, one sent all but its last byte
    /// then stalled after at most 60 s, while a link delivering 500 B/s or
    /// more completes any frame. Checked on the timer wheel: up to one
    /// tick (`timer_resolution`, 100 ms by default) late.
    pub frame_timeout: Duration,
    /// The minimum data rate while a unit is unfinished, in bytes per
    /// second, averaged over each `frame_timeout` window (as Apache's
    /// `mod_reqtimeout` `MinRate`). At least 1. Default: 500.
    pub frame_min_rate: u32,
    /// Most bytes of partial frames one loop keeps for all its connections
    /// together; over it, the connection holding the most is closed with
    /// `CloseReason::MemoryLimit`. A single frame larger than this cannot
    /// complete. Default: 64 MiB (64 slow 1 MiB bodies per loop).
    pub max_partial_bytes: usize,
    /// The timer wheel's tick at most (how late a timer may fire); finer
    /// if a heartbeat or a builder timer needs it. Default: 100 ms; at
    /// least 1 ms.
    pub timer_resolution: Duration,
    /// Bytes of messages (and queued work) a connection may have waiting
    /// for its worker pool or logic thread (`Exec::Pool`, `Exec::Single`)
    /// before its reads pause; each item counts at least 64 bytes.
    /// Default: 1 MiB.
    pub exec_backlog: usize,
    /// UDP sockets (`Builder::bind_udp`) and their sessions.
    pub udp: UdpConfig,
    /// The dial profiles' settings (`Builder::profile`), index `i` being
    /// profile `i + 1`.
    pub(crate) profiles: Vec<ProfileConfig>,
    /// The finest interval of the builder's timers (`Builder::every`,
    /// `cron`).
    pub(crate) finest_timer: Option<Duration>,
    /// The server's model is `Exec::Single`: connections' timers,
    /// `ConnHandle::run` and `Builder::every` run on the logic thread.
    pub(crate) logic_thread: bool,
    /// The heartbeat's ping as a message with this body instead of the
    /// layer's own ping (`Builder::keepalived`: hotpot's envelope).
    pub(crate) ping_body: Option<bytes::Bytes>,
    /// The server has UDP sockets (`Builder::bind_udp`).
    pub(crate) udp_bound: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            event_loops: std::thread::available_parallelism().map_or(1, |n| n.get()),
            balance: Balance::RoundRobin,
            max_body_length: LengthPacker::DEFAULT_MAX_BODY_LENGTH,
            max_connections: usize::MAX,
            write_high_water: 4 << 20,
            slow_peer: SlowPeerPolicy::Backpressure,
            inbox_capacity: 64 << 20,
            read_budget: 256 << 10,
            read_buffer: 64 << 10,
            heartbeat: None,
            unknown_id: UnknownIdPolicy::Drop,
            nodelay: true,
            keepalive: None,
            linger: None,
            recv_buffer_size: None,
            send_buffer_size: None,
            backlog: 1024,
            close_linger: Duration::from_secs(5),
            accept_backoff_max: Duration::from_millis(500),
            handshake_timeout: Duration::from_secs(5),
            busy_poll: Duration::ZERO,
            frame_timeout: Duration::from_secs(20),
            frame_min_rate: 500,
            max_partial_bytes: 64 << 20,
            timer_resolution: Duration::from_millis(100),
            exec_backlog: 1 << 20,
            udp: UdpConfig::default(),
            profiles: Vec::new(),
            finest_timer: None,
            logic_thread: false,
            ping_body: None,
            udp_bound: false,
        }
    }
}

impl Config {
    /// Cap every duration at [`FOREVER`] (`Builder::start` does, before
    /// [`validate`](Self::validate)), so that `Duration::MAX` means
    /// "never" and no deadline computed from a setting overflows.
    pub(crate) fn saturate_durations(&mut self) {
        for d in [
            &mut self.close_linger,
            &mut self.accept_backoff_max,
            &mut self.handshake_timeout,
            &mut self.frame_timeout,
        ] {
            *d = saturate(*d);
        }
        let mut socket = self.server_socket();
        profile::saturate_socket(&mut socket);
        self.keepalive = socket.keepalive;
        if let Some(hb) = &mut self.heartbeat {
            hb.saturate();
        }
        for p in &mut self.profiles {
            p.saturate();
        }
        self.udp.saturate();
    }

    /// Check every value; called by `Builder::start`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first invalid field.
    pub fn validate(&self) -> Result<()> {
        fn bad(msg: &str) -> Result<()> {
            Err(Error::Config(msg.to_string()))
        }
        if self.event_loops == 0 || self.event_loops > 1024 {
            return bad("event_loops must be between 1 and 1024");
        }
        if self.max_body_length == 0 || self.max_body_length > u32::MAX as usize {
            return bad("max_body_length must be between 1 and u32::MAX");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if self.write_high_water < 1024 {
            return bad("write_high_water must be at least 1024 bytes");
        }
        if self.inbox_capacity == 0 {
            return bad("inbox_capacity must be at least 1 byte");
        }
        if self.exec_backlog == 0 {
            return bad("exec_backlog must be at least 1 byte");
        }
        if self.read_buffer < 1024 || self.read_budget < self.read_buffer {
            return bad("read_buffer must be >= 1024 and read_budget >= read_buffer");
        }
        if self.handshake_timeout < Duration::from_millis(1) {
            return bad("handshake_timeout must be at least 1 ms");
        }
        if self.backlog == 0 {
            return bad("backlog must be at least 1");
        }
        if self.busy_poll > MAX_BUSY_POLL {
            return bad("busy_poll must be at most 10 ms");
        }
        if self.frame_timeout < Duration::from_millis(100) {
            return bad("frame_timeout must be at least 100 ms");
        }
        if self.frame_min_rate == 0 {
            return bad("frame_min_rate must be at least 1 byte per second");
        }
        if self.max_partial_bytes == 0 {
            return bad("max_partial_bytes must be at least 1 byte");
        }
        if let Some(hb) = &self.heartbeat {
            hb.validate()?;
        }
        if self.timer_resolution < Duration::from_millis(1) {
            return bad("timer_resolution must be at least 1 ms");
        }
        profile::validate_socket(&self.server_socket(), "the server")?;
        if self.profiles.len() > MAX_PROFILES {
            return bad("at most 255 profiles");
        }
        for p in &self.profiles {
            p.validate()?;
        }
        self.udp.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        let cases: Vec<fn(&mut Config)> = vec![
            |c| c.event_loops = 0,
            |c| c.max_body_length = 0,
            |c| c.max_connections = 0,
            |c| c.write_high_water = 10,
            |c| c.read_buffer = 10,
            |c| c.backlog = 0,
            |c| {
                c.heartbeat = Some(Heartbeat {
                    check_interval: Duration::from_secs(2),
                    idle_timeout: Duration::from_secs(1),
                    ping_after: None,
                    ping_id: 0,
                })
            },
            |c| {
                c.heartbeat = Some(Heartbeat {
                    check_interval: Duration::from_secs(1),
                    idle_timeout: Duration::from_secs(3),
                    ping_after: Some(Duration::from_secs(3)),
                    ping_id: 0,
                })
            },
        ];
        for set in cases {
            let mut c = Config::default();
            set(&mut c);
            assert!(matches!(c.validate(), Err(Error::Config(_))), "{c:?}");
        }
    }
}
