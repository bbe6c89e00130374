//! How a dialed connection comes back after a loss ([`Reconnect`]), what
//! sends do while it is down ([`WhileDown`]), and how it is found dead
//! while it looks up ([`HealthCheck`]). Where to dial, and how (the
//! `Dial` itself), is `conn::dial`: its TLS settings are the transport's.

use std::time::Duration;

use super::{saturate, FOREVER};
use crate::error::{Error, Result};

/// How a dialed connection comes back after it was lost: exponential
/// backoff, `initial × factor^(attempt − 1)` capped at `max`, each delay
/// spread by up to ± `jitter` of itself, for at most `max_attempts` attempts
/// in a row (`None`: forever).
///
/// The default is the seeds' schedule: 3 s, 6 s, 12 s, 24 s, … up to 60 s,
/// no jitter, forever.
///
/// Delays are capped at [`FOREVER`] (`max: Duration::MAX` means no cap
/// below that). [`Hub::dial`](crate::Hub::dial) refuses a policy with a
/// `factor` that is not a finite number of at least 1, or a `jitter` that
/// is not a number from 0 to 1, with [`Error::Config`](crate::Error::Config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reconnect {
    /// Delay before the first attempt after a loss.
    pub initial: Duration,
    /// Each further attempt waits this many times longer (at least 1).
    pub factor: f64,
    /// Longest delay.
    pub max: Duration,
    /// Spread of each delay, as a fraction of it (0 to 1): many clients
    /// losing one server do not all come back at once.
    pub jitter: f64,
    /// Attempts after a loss before the connection is closed for good.
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial: Duration::from_secs(3),
            factor: 2.0,
            max: Duration::from_secs(60),
            jitter: 0.0,
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// Check the numbers a `Duration` cannot check (`Hub::dial` does).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the field.
    pub(crate) fn validate(&self) -> Result<()> {
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(Error::Config(format!(
                "Reconnect::factor must be a finite number >= 1, not {}",
                self.factor
            )));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(Error::Config(format!(
                "Reconnect::jitter must be a number from 0 to 1, not {}",
                self.jitter
            )));
        }
        Ok(())
    }

    /// The delay before attempt `attempt` (1 for the first after a loss),
    /// with `spread` in `-1.0..=1.0` choosing where in the jitter band.
    /// Never more than [`FOREVER`], and never a panic, whatever the
    /// numbers (those `validate` refuses included: a factor that is not a
    /// number counts as 1, a jitter that is not one as 0).
    pub(crate) fn delay(&self, attempt: u32, spread: f64) -> Duration {
        let factor = if self.factor.is_nan() {
            1.0
        } else {
            self.factor.max(1.0)
        };
        let exp = factor.powi(attempt.saturating_sub(1).min(64) as i32);
        let max = saturate(self.max).as_secs_f64();
        // `min` of an infinite product and a finite `max` is `max`.
        let base = (saturate(self.initial).as_secs_f64() * exp).min(max);
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let spread = if spread.is_nan() {
            0.0
        } else {
            spread.clamp(-1.0, 1.0)
        };
        let jittered = base * (1.0 + jitter * spread);
        Duration::try_from_secs_f64(jittered.max(0.0)).map_or(FOREVER, saturate)
    }
}

/// An application-level health check of a dialed connection
/// ([`Dial::health_check`](crate::Dial::health_check)): every `interval`
/// while it is open, a request `id` with `body` through the packer; no
/// reply within `timeout` (or a request that cannot be made) closes the
/// link with [`CloseReason::HealthCheckFailed`](crate::CloseReason::HealthCheckFailed),
/// and it reconnects by its policy. Any reply counts as healthy: the
/// peer's route for `id` answers it (`ctx.reply`).
///
/// The interval is measured from the open, then from each check's start;
/// both are timers on the loop's wheel (up to one tick late).
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// The request's message id.
    pub id: u32,
    /// The request's body.
    pub body: bytes::Bytes,
    /// Time between checks (and from the open to the first).
    pub interval: Duration,
    /// How long a check waits for its reply.
    pub timeout: Duration,
}

/// What a send to a dialed connection does while it is down (between a
/// loss and the next successful connect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhileDown {
    /// Queue it (up to the write queue's high-water mark); it goes out once
    /// connected again, in order.
    #[default]
    Queue,
    /// Refuse it with [`Error::Disconnected`](crate::Error::Disconnected).
    Refuse,
}

/// Where in a reconnect delay's jitter band the next one falls: a small
/// xorshift, seeded per loop (no crate needed for spreading delays).
#[derive(Debug)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Self {
        Jitter(seed | 1)
    }

    /// A number in `-1.0..=1.0`.
    pub(crate) fn next(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

impl Default for Jitter {
    fn default() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Jitter::new(now.as_nanos() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_doubles_from_three_seconds_to_a_minute() {
        let r = Reconnect::default();
        let secs: Vec<u64> = (1..=7).map(|a| r.delay(a, 0.0).as_secs()).collect();
        assert_eq!(secs, [3, 6, 12, 24, 48, 60, 60]);
        assert_eq!(r.delay(u32::MAX, 0.0), Duration::from_secs(60));
    }

    #[test]
    fn extreme_numbers_saturate_at_forever_and_never_panic() {
        let huge = Reconnect {
            initial: Duration::MAX,
            factor: 1e300,
            max: Duration::MAX,
            jitter: 1.0,
            max_attempts: None,
        };
        for attempt in [0, 1, 2, 64, u32::MAX] {
            for spread in [-1.0, 0.0, 1.0, f64::NAN, f64::INFINITY] {
                assert!(huge.delay(attempt, spread) <= FOREVER);
            }
        }
        assert_eq!(huge.delay(2, 0.0), FOREVER);
        assert_eq!(huge.delay(2, -1.0), Duration::ZERO);
        let nonsense = [
            (f64::NAN, 0.0),
            (f64::INFINITY, 0.0),
            (-5.0, 0.0),
            (2.0, f64::NAN),
            (2.0, f64::INFINITY),
            (2.0, -3.0),
        ];
        for (factor, jitter) in nonsense {
            let r = Reconnect {
                factor,
                jitter,
                ..Reconnect::default()
            };
            assert!(matches!(r.validate(), Err(Error::Config(_))), "{r:?}");
            for attempt in [1, 2, 100] {
                let d = r.delay(attempt, 0.5);
                assert!(d <= FOREVER, "{r:?}: {d:?}");
            }
        }
        // An infinite factor is "as long as max" (here the default 60 s).
        let steep = Reconnect {
            factor: f64::INFINITY,
            ..Reconnect::default()
        };
        assert_eq!(steep.delay(2, 0.0), Duration::from_secs(60));
        assert_eq!(steep.delay(1, 0.0), Duration::from_secs(3));
        Reconnect::default().validate().unwrap();
    }

    #[test]
    fn jitter_spreads_within_its_band() {
        let r = Reconnect {
            jitter: 0.5,
            ..Reconnect::default()
        };
        assert_eq!(r.delay(1, -1.0), Duration::from_millis(1500));
        assert_eq!(r.delay(1, 1.0), Duration::from_millis(4500));
    }
}
