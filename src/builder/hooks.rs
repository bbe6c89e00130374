//! The builder's lifecycle hooks: `on_open`, `on_close`, and for dialed
//! connections `on_disconnect` and `on_reconnect`.

use super::Builder;
use crate::dispatch::context::Session;
use crate::dispatch::hooks::{Disconnect, IntoOpenResult};
use crate::error::CloseReason;

impl Builder {
    /// Run for every new connection, on its loop thread, before any of its
    /// messages: an accepted one at accept (over TLS, before the
    /// handshake), a dialed one once it has connected (over TLS, once the
    /// handshake has completed; `TlsInfo` is then in
    /// its data). Return `()`/`true` to accept, `false` or `Err(reason)` to
    /// reject. A rejected connection is closed (after flushing anything the
    /// hook sent) and `on_close` runs for it with [`CloseReason::Rejected`].
    pub fn on_open<F, R>(mut self, f: F) -> Self
    where
        F: Fn(&mut Session<'_>) -> R + Send + Sync + 'static,
        R: IntoOpenResult,
    {
        self.hooks.on_open = Some(Box::new(move |s: &mut Session<'_>| f(s).into_open_result()));
        self
    }

    /// Run exactly once for every connection `on_open` ran for, whatever
    /// ends it, with the reason, and for every dialed connection
    /// ([`Hub::dial`](crate::Hub::dial)) when it is closed for good, even if
    /// it never connected (`ConnectFailed`, `ConnectTimeout`, a failed TLS
    /// handshake). The connection's user data is still there; sends to it
    /// fail.
    pub fn on_close<F>(mut self, f: F) -> Self
    where
        F: Fn(&mut Session<'_>, &CloseReason) + Send + Sync + 'static,
    {
        self.hooks.on_close = Some(Box::new(f));
        self
    }

    /// Run when a dialed connection ([`Hub::dial`](crate::Hub::dial)) with a
    /// reconnect policy was lost, or a connect attempt of it failed, with
    /// why, the attempt about to be made and when. Its user data stays;
    /// its waiting requests have failed with `Error::Disconnected`.
    pub fn on_disconnect<F>(mut self, f: F) -> Self
    where
        F: Fn(&mut Session<'_>, &Disconnect) + Send + Sync + 'static,
    {
        self.hooks.on_disconnect = Some(Box::new(f));
        self
    }

    /// Run when a dialed connection connected again after a loss, with the
    /// number of attempts it took (`on_open` ran only the first time). Over
    /// TLS it runs once the new handshake has completed.
    pub fn on_reconnect<F>(mut self, f: F) -> Self
    where
        F: Fn(&mut Session<'_>, u32) + Send + Sync + 'static,
    {
        self.hooks.on_reconnect = Some(Box::new(f));
        self
    }
}
