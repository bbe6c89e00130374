//! The settings half of a dial profile ([`ProfileConfig`]: heartbeat and
//! socket options) and the socket options every connection gets
//! ([`SocketOptions`]). A profile's packer is the transport's (`Wire`),
//! its routes the application's (`dispatch::App`); all three are found
//! through the connection's profile index, where 0 is the server's own
//! settings and `1..` the profiles in the order the builder named them.

use super::{saturate, Config, Heartbeat};
use crate::error::{Error, Result};

/// The index of the server's own protocol: its packer, routes, heartbeat
/// and socket options (accepted connections, and dials without a
/// profile).
pub(crate) const SERVER_PROFILE: u8 = 0;

/// Most profiles a server can name (indices `1..=MAX_PROFILES`).
pub(crate) const MAX_PROFILES: usize = u8::MAX as usize;

pub(crate) use crate::sys::SocketOptions;

/// Cap the options' durations at `FOREVER`.
pub(super) fn saturate_socket(options: &mut SocketOptions) {
    options.keepalive = options.keepalive.map(saturate);
}

/// Check socket options (`whose`: the server's, or a profile's).
pub(super) fn validate_socket(options: &SocketOptions, whose: &str) -> Result<()> {
    if options.recv_buffer == Some(0) || options.send_buffer == Some(0) {
        return Err(Error::Config(format!(
            "{whose}: socket buffer sizes must not be zero"
        )));
    }
    // On Linux, close() on a socket with a positive SO_LINGER blocks until
    // the data is sent or the time passes, non-blocking socket or not:
    // the whole event loop would stall. `close_linger` flushes gracefully
    // on the loop instead; SO_LINGER is for resetting (zero) only.
    if options.linger.is_some_and(|l| !l.is_zero()) {
        return Err(Error::Config(format!(
            "{whose}: linger must be None or Some(Duration::ZERO): a positive SO_LINGER \
             would block the event loop in close(); close_linger flushes without blocking"
        )));
    }
    Ok(())
}

/// What a dial profile sets beside its packer and routes.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProfileConfig {
    /// The profile's name (`Dial::profile`).
    pub(crate) name: String,
    /// Idle detection for the profile's connections; `None`: none.
    pub(crate) heartbeat: Option<Heartbeat>,
    pub(crate) socket: SocketOptions,
}

impl ProfileConfig {
    pub(crate) fn saturate(&mut self) {
        saturate_socket(&mut self.socket);
        if let Some(hb) = &mut self.heartbeat {
            hb.saturate();
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let whose = format!("profile {:?}", self.name);
        validate_socket(&self.socket, &whose)?;
        if let Some(hb) = &self.heartbeat {
            hb.validate()
                .map_err(|e| Error::Config(format!("{whose}: {e}")))?;
        }
        Ok(())
    }
}

impl Config {
    /// The socket options of the server's own connections.
    pub(crate) fn server_socket(&self) -> SocketOptions {
        SocketOptions {
            nodelay: self.nodelay,
            keepalive: self.keepalive,
            linger: self.linger,
            recv_buffer: self.recv_buffer_size,
            send_buffer: self.send_buffer_size,
        }
    }

    /// The socket options of a connection of `profile`.
    pub(crate) fn socket_of(&self, profile: u8) -> SocketOptions {
        match self.profile(profile) {
            Some(p) => p.socket,
            None => self.server_socket(),
        }
    }

    /// The heartbeat of a connection of `profile`.
    pub(crate) fn heartbeat_of(&self, profile: u8) -> Option<&Heartbeat> {
        match self.profile(profile) {
            Some(p) => p.heartbeat.as_ref(),
            None => self.heartbeat.as_ref(),
        }
    }

    /// Every heartbeat in use (the server's and its profiles'): the timer
    /// wheel is sized for all of them.
    pub(crate) fn heartbeats(&self) -> impl Iterator<Item = Heartbeat> + '_ {
        let udp = (self.udp_bound && self.heartbeat.is_none()).then(|| self.udp.heartbeat());
        let udp = udp.flatten();
        (self.heartbeat.iter().copied())
            .chain(self.profiles.iter().filter_map(|p| p.heartbeat))
            .chain(udp)
    }

    /// The heartbeat of a connection of `profile`, or of a UDP session
    /// (`udp`): the server's if it has one, else the UDP idle check.
    pub(crate) fn heartbeat_for(&self, profile: u8, udp: bool) -> Option<Heartbeat> {
        match self.heartbeat_of(profile) {
            None if udp => self.udp.heartbeat(),
            hb => hb.copied(),
        }
    }

    /// The named profile at `index` (`None` for the server's own, 0).
    fn profile(&self, index: u8) -> Option<&ProfileConfig> {
        (index as usize)
            .checked_sub(1)
            .and_then(|i| self.profiles.get(i))
    }

    /// The name of the profile at `index` (`None` for the server's own).
    pub(crate) fn profile_name(&self, index: u8) -> Option<&str> {
        self.profile(index).map(|p| p.name.as_str())
    }

    /// The index of the profile called `name`.
    pub(crate) fn profile_index(&self, name: &str) -> Option<u8> {
        let i = self.profiles.iter().position(|p| p.name == name)?;
        u8::try_from(i + 1).ok()
    }
}
