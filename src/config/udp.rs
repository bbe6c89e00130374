//! [`UdpConfig`]: the settings of a server's UDP sockets and of the
//! virtual sessions it keeps per peer address.

use std::time::Duration;

use super::{saturate, Heartbeat};
use crate::error::{Error, Result};

/// Largest UDP payload over IPv4 (65,535 − 8 bytes of UDP header − 20 of
/// IP header): the default [`UdpConfig::max_datagram`].
pub const MAX_UDP_PAYLOAD: usize = 65_507;

/// The longest idle timeout the timer wheel keeps (a heartbeat's bound);
/// longer means never.
const NEVER_AFTER: Duration = Duration::from_secs(24 * 24 * 3600);

/// When a UDP peer counts as having shown that it receives at its address
/// (the end of the [amplification bound](UdpConfig::amplification)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UdpValidation {
    /// Its second datagram. Cheap, and enough against a reflector that
    /// forges one datagram per victim; an attacker who forges two
    /// datagrams from the victim's address passes it. See SECURITY.md.
    #[default]
    SecondDatagram,
    /// Only the application's word:
    /// [`Session::validate_udp_peer`](crate::Session::validate_udp_peer),
    /// called once its own handshake has seen the peer echo something it
    /// could only have received (a token, a cookie).
    Application,
}

/// Settings of `Builder::bind_udp` sockets and their sessions.
///
/// A UDP session costs about 330 bytes on its loop while idle (the
/// connection slot, the peer's datagram state, its entry in the socket's
/// session map and its heartbeat timer), so `max_sessions` bounds the
/// memory a flood of forged source addresses can take.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpConfig {
    /// Largest datagram received or sent, in bytes. A longer one received
    /// is dropped (counted as `DatagramDrop::Oversized`); a message whose
    /// frame would be longer is refused with `Error::DatagramTooLarge`.
    /// Default: [`MAX_UDP_PAYLOAD`] (65,507); at least 64.
    pub max_datagram: usize,
    /// Most UDP sessions open at once, over all loops (they count in
    /// `Config::max_connections` too). A datagram from a new peer over it
    /// is dropped (`DatagramDrop::SessionLimit`). Default: 65,536.
    pub max_sessions: usize,
    /// A session that receives nothing for this long is closed with
    /// `CloseReason::IdleTimeout`, checked every eighth of it (at most
    /// every 5 s), unless the server has a heartbeat (`Builder::heartbeat`):
    /// then that heartbeat, with its ping, applies to UDP sessions as to
    /// every connection. Default: 120 s (nbio's); at least 10 ms; over 24
    /// days (`Duration::MAX` included) means never: sessions then go only
    /// when closed, and `max_sessions` is all that bounds them.
    pub idle_timeout: Duration,
    /// Until a peer is validated (`validation`), the bytes sent to it stay
    /// within this multiple of the bytes received from it (QUIC's rule is
    /// 3); a datagram that would pass it is dropped
    /// (`DatagramDrop::Unvalidated`). 0 turns the bound off. Default: 3.
    pub amplification: u32,
    /// What validates a peer. Default: its second datagram.
    pub validation: UdpValidation,
    /// Most bytes queued for one session while its socket's send buffer
    /// is full (`EWOULDBLOCK`); over it, sends fail with
    /// `Error::BufferFull` (or close the session with
    /// `SlowPeerPolicy::Close`). Until the socket was found full, what one
    /// turn queues (a handler's burst) is held to `write_high_water`
    /// instead. A UDP session's reads never pause. Default: 256 KiB; at
    /// least `max_datagram`.
    pub send_queue: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            max_datagram: MAX_UDP_PAYLOAD,
            max_sessions: 65_536,
            idle_timeout: Duration::from_secs(120),
            amplification: 3,
            validation: UdpValidation::SecondDatagram,
            send_queue: 256 << 10,
        }
    }
}

impl UdpConfig {
    pub(crate) fn saturate(&mut self) {
        self.idle_timeout = saturate(self.idle_timeout);
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |msg: &str| Err(Error::Config(msg.to_string()));
        if !(64..=MAX_UDP_PAYLOAD).contains(&self.max_datagram) {
            return bad("udp max_datagram must be between 64 and 65507 bytes");
        }
        if self.max_sessions == 0 {
            return bad("udp max_sessions must be at least 1");
        }
        if self.send_queue < self.max_datagram {
            return bad("udp send_queue must be at least max_datagram");
        }
        if self.idle_timeout < Duration::from_millis(10) {
            return bad("udp idle_timeout must be at least 10 ms");
        }
        self.heartbeat().map_or(Ok(()), |hb| hb.validate())
    }

    /// The idle check of UDP sessions when the server has no heartbeat;
    /// `None` for "never" (an idle timeout past what the wheel keeps).
    pub(crate) fn heartbeat(&self) -> Option<Heartbeat> {
        if self.idle_timeout > NEVER_AFTER {
            return None;
        }
        let check = (self.idle_timeout / 8).clamp(Duration::from_millis(1), Duration::from_secs(5));
        Some(Heartbeat {
            check_interval: check,
            idle_timeout: self.idle_timeout.max(check),
            ping_after: None,
            ping_id: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_errors() {
        UdpConfig::default().validate().unwrap();
        let cases: Vec<fn(&mut UdpConfig)> = vec![
            |c| c.max_datagram = 10,
            |c| c.max_datagram = 70_000,
            |c| c.max_sessions = 0,
            |c| c.send_queue = 100,
        ];
        for set in cases {
            let mut c = UdpConfig::default();
            set(&mut c);
            assert!(matches!(c.validate(), Err(Error::Config(_))), "{c:?}");
        }
    }

    #[test]
    fn the_idle_check_is_an_eighth_of_the_timeout_at_most_five_seconds() {
        let mut c = UdpConfig::default();
        let check = |c: &UdpConfig| c.heartbeat().map(|hb| hb.check_interval);
        assert_eq!(check(&c), Some(Duration::from_secs(5)));
        c.idle_timeout = Duration::from_secs(8);
        assert_eq!(check(&c), Some(Duration::from_secs(1)));
        c.idle_timeout = Duration::from_millis(10);
        assert!(c.validate().is_ok());
        c.idle_timeout = Duration::ZERO;
        assert!(c.validate().is_err(), "zero is refused");
        c.idle_timeout = Duration::MAX;
        assert!(
            c.validate().is_ok() && c.heartbeat().is_none(),
            "MAX is never"
        );
    }
}
