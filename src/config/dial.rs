//! How a dialed connection comes back after a loss ([`Reconnect`]) and what
//! sends do while it is down ([`WhileDown`]). Where to dial, and how (the
//! `Dial` itself), is `conn::dial`: its TLS settings are the transport's.

use std::time::Duration;

/// How a dialed connection comes back after it was lost: exponential
/// backoff, `initial × factor^(attempt − 1)` capped at `max`, each delay
/// spread by up to ± `jitter` of itself, for at most `max_attempts` attempts
/// in a row (`None`: forever).
///
/// The default is the seeds' schedule: 3 s, 6 s, 12 s, 24 s, … up to 60 s,
/// no jitter, forever.
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
    /// The delay before attempt `attempt` (1 for the first after a loss),
    /// with `spread` in `-1.0..=1.0` choosing where in the jitter band.
    pub(crate) fn delay(&self, attempt: u32, spread: f64) -> Duration {
        let exp = self
            .factor
            .max(1.0)
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let base = self.initial.as_secs_f64() * exp;
        let base = base.min(self.max.as_secs_f64());
        let jittered = base * (1.0 + self.jitter.clamp(0.0, 1.0) * spread.clamp(-1.0, 1.0));
        Duration::from_secs_f64(jittered.max(0.0))
    }
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
    fn jitter_spreads_within_its_band() {
        let r = Reconnect {
            jitter: 0.5,
            ..Reconnect::default()
        };
        assert_eq!(r.delay(1, -1.0), Duration::from_millis(1500));
        assert_eq!(r.delay(1, 1.0), Duration::from_millis(4500));
    }
}
