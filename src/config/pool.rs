//! How a connection pool ([`Pool`](crate::Pool)) sizes, retires, checks
//! and replaces its connections: [`PoolConfig`].

use std::time::Duration;

use super::{saturate, HealthCheck, Reconnect};
use crate::error::{Error, Result};

/// Settings of a [`Pool`](crate::Pool) (`Hub::pool`). Start from the
/// default and change what differs:
///
/// ```
/// use std::time::Duration;
/// use netloom::PoolConfig;
///
/// let config = PoolConfig {
///     max_size: 16,
///     min_idle: 2,
///     idle_timeout: Some(Duration::from_secs(60)),
///     ..PoolConfig::default()
/// };
/// # drop(config);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// Most connections, open, connecting or handed out. Default: 8.
    pub max_size: usize,
    /// Open connections the pool keeps idle, making new ones in the
    /// background (at most `max_size` in all). Default: 0.
    pub min_idle: usize,
    /// An idle connection unused this long is closed, unless that would
    /// leave fewer than `min_idle`. `None`: never. Default: 10 minutes.
    pub idle_timeout: Option<Duration>,
    /// A connection this old is closed when it is next idle (given back,
    /// or found idle), whatever its use. `None`: never. Default: 30
    /// minutes.
    pub max_lifetime: Option<Duration>,
    /// Before handing out (`Pool::get`) a connection idle for at least
    /// `interval`, ask it this request and wait up to `timeout` for any
    /// reply; one that fails is closed (counted in
    /// `PoolStats::discarded`) and the next is tried. The packer must
    /// carry sequence numbers. `None` (the default): no check.
    pub health_check: Option<HealthCheck>,
    /// The delays before making a connection again after connects that
    /// failed in a row (a member lost after it opened is replaced at
    /// once). Its `max_attempts` is ignored: a pool keeps trying while it
    /// is needed. Default: 100 ms doubling up to 5 s, ± 20 %.
    pub backoff: Reconnect,
    /// Close a connection after this many of its requests time out in a
    /// row, so that a request that timed out leaves no half-dead
    /// connection in the pool (where the packer carries sequence numbers;
    /// see `Dial::reconnect_after_timeouts`). `None`: never. Default: 1.
    pub close_after_timeouts: Option<u32>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: 8,
            min_idle: 0,
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            health_check: None,
            backoff: Reconnect {
                initial: Duration::from_millis(100),
                factor: 2.0,
                max: Duration::from_secs(5),
                jitter: 0.2,
                max_attempts: None,
            },
            close_after_timeouts: Some(1),
        }
    }
}

impl PoolConfig {
    /// Check the numbers and cap the durations at `FOREVER`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the field.
    pub(crate) fn settle(mut self) -> Result<Self> {
        let bad = |msg: &str| Err(Error::Config(format!("PoolConfig: {msg}")));
        if self.max_size == 0 {
            return bad("max_size must be at least 1");
        }
        if self.min_idle > self.max_size {
            return bad("min_idle must be at most max_size");
        }
        if self.close_after_timeouts == Some(0) {
            return bad("close_after_timeouts must be at least 1");
        }
        if let Some(check) = &mut self.health_check {
            if check.timeout.is_zero() {
                return bad("the health check's timeout must not be zero");
            }
            check.interval = saturate(check.interval);
            check.timeout = saturate(check.timeout);
        }
        self.backoff.validate()?;
        self.backoff.initial = saturate(self.backoff.initial);
        self.backoff.max = saturate(self.backoff.max);
        self.idle_timeout = self.idle_timeout.map(saturate);
        self.max_lifetime = self.max_lifetime.map(saturate);
        Ok(self)
    }
}
