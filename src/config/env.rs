//! Settings from the environment, for operators who tighten a server's
//! limits without rebuilding it (`Builder::config_from_env`).

use std::time::Duration;

use super::{Config, Heartbeat};
use crate::error::{Error, Result};

impl Config {
    /// Override settings from the `NETLOOM_*` environment variables that
    /// are set (see [`Builder::config_from_env`](crate::Builder::config_from_env)).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming a variable whose value is not a number.
    pub fn apply_env(&mut self) -> Result<()> {
        self.apply(|name| std::env::var(name).ok())
    }

    fn apply(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        let num = |name: &str| -> Result<Option<u64>> {
            match get(name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| Error::Config(format!("{name}={v:?} is not a whole number"))),
            }
        };
        let size = |name: &str| -> Result<Option<usize>> {
            num(name).map(|n| n.map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
        };
        let secs = |name: &str| -> Result<Option<Duration>> {
            num(name).map(|n| n.map(Duration::from_secs))
        };
        if let Some(n) = size("NETLOOM_EVENT_LOOPS")? {
            self.event_loops = n;
        }
        if let Some(n) = size("NETLOOM_MAX_CONNECTIONS")? {
            self.max_connections = n;
        }
        if let Some(n) = size("NETLOOM_MAX_BODY_LENGTH")? {
            self.max_body_length = n;
        }
        if let Some(n) = size("NETLOOM_WRITE_HIGH_WATER")? {
            self.write_high_water = n;
        }
        if let Some(idle) = secs("NETLOOM_IDLE_TIMEOUT")? {
            let check = (idle / 6).clamp(Duration::from_secs(1), Duration::from_secs(30));
            let ping = self
                .heartbeat
                .and_then(|h| h.ping_after.map(|p| (p, h.ping_id)));
            self.heartbeat = Some(Heartbeat {
                check_interval: check.min(idle),
                idle_timeout: idle,
                ping_after: ping.map(|(p, _)| p).filter(|p| *p < idle),
                ping_id: ping.map_or(0, |(_, id)| id),
            });
        }
        if let Some(t) = secs("NETLOOM_FRAME_TIMEOUT")? {
            self.frame_timeout = t;
        }
        if let Some(n) = num("NETLOOM_FRAME_MIN_RATE")? {
            self.frame_min_rate = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = size("NETLOOM_MAX_PARTIAL_BYTES")? {
            self.max_partial_bytes = n;
        }
        if let Some(t) = secs("NETLOOM_HANDSHAKE_TIMEOUT")? {
            self.handshake_timeout = t;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config> {
        let mut c = Config::default();
        c.apply(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })?;
        Ok(c)
    }

    #[test]
    fn variables_override_settings() {
        let c = with(&[
            ("NETLOOM_IDLE_TIMEOUT", "60"),
            ("NETLOOM_MAX_BODY_LENGTH", "65536"),
            ("NETLOOM_FRAME_TIMEOUT", "5"),
            ("NETLOOM_MAX_PARTIAL_BYTES", "1048576"),
        ])
        .unwrap();
        let hb = c.heartbeat.unwrap();
        assert_eq!(hb.idle_timeout, Duration::from_secs(60));
        assert_eq!(hb.check_interval, Duration::from_secs(10));
        assert_eq!(c.max_body_length, 65536);
        assert_eq!(c.frame_timeout, Duration::from_secs(5));
        assert_eq!(c.max_partial_bytes, 1 << 20);
        c.validate().unwrap();
        assert_eq!(
            with(&[]).unwrap().max_body_length,
            Config::default().max_body_length
        );
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let e = with(&[("NETLOOM_WRITE_HIGH_WATER", "lots")]).unwrap_err();
        assert!(e.to_string().contains("NETLOOM_WRITE_HIGH_WATER"), "{e}");
    }
}
