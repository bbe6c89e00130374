//! Connection hooks: `on_open` (may reject), `on_close` (exactly once, with
//! the reason) and the WebSocket upgrade hook, each run with panics caught.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use super::context::Session;
use crate::error::{panic_message, CloseReason};
use crate::transport::ws::WsRequest;

/// `on_open`: `Err(reason)` rejects the connection.
pub(crate) type OpenHook =
    Box<dyn Fn(&mut Session<'_>) -> std::result::Result<(), String> + Send + Sync>;
/// `on_close`.
pub(crate) type CloseHook = Box<dyn Fn(&mut Session<'_>, &CloseReason) + Send + Sync>;
/// `on_disconnect`: a dialed connection was lost and will reconnect.
pub(crate) type DisconnectHook = Box<dyn Fn(&mut Session<'_>, &Disconnect) + Send + Sync>;
/// `on_reconnect`: a dialed connection is back, after this many attempts.
pub(crate) type ReconnectHook = Box<dyn Fn(&mut Session<'_>, u32) + Send + Sync>;
/// The WebSocket upgrade hook: `Err(status)` refuses the upgrade.
pub(crate) type UpgradeHook =
    Box<dyn Fn(&mut Session<'_>, &WsRequest) -> std::result::Result<(), u16> + Send + Sync>;

/// What `on_open` may return: `()` or `true` accept the connection;
/// `false` or `Err(reason)` reject it (it is closed with
/// [`CloseReason::Rejected`] and `on_close` still runs).
pub trait IntoOpenResult {
    /// `Err(reason)` rejects the connection.
    fn into_open_result(self) -> std::result::Result<(), String>;
}

impl IntoOpenResult for () {
    fn into_open_result(self) -> std::result::Result<(), String> {
        Ok(())
    }
}

impl IntoOpenResult for bool {
    fn into_open_result(self) -> std::result::Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("rejected by on_open".into())
        }
    }
}

impl<E: fmt::Display> IntoOpenResult for std::result::Result<(), E> {
    fn into_open_result(self) -> std::result::Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// A dialed connection was lost (or a connect attempt failed) and will
/// connect again: handed to `Builder::on_disconnect`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Disconnect {
    /// Why it was lost (`PeerClosed`, `Io`, `ConnectFailed`,
    /// `ConnectTimeout`, `IdleTimeout`, …).
    pub reason: CloseReason,
    /// The attempt about to be made (1 for the first after a loss).
    pub attempt: u32,
    /// How long until that attempt.
    pub retry_in: Duration,
}

/// The application's connection hooks.
#[derive(Default)]
pub(crate) struct Hooks {
    pub(crate) on_open: Option<OpenHook>,
    pub(crate) on_close: Option<CloseHook>,
    pub(crate) on_upgrade: Option<UpgradeHook>,
    pub(crate) on_disconnect: Option<DisconnectHook>,
    pub(crate) on_reconnect: Option<ReconnectHook>,
}

impl Hooks {
    /// Run `on_open`: `Err` is why the connection must close (rejected,
    /// or the hook panicked).
    pub(crate) fn open(&self, session: &mut Session<'_>) -> Result<(), CloseReason> {
        let Some(hook) = &self.on_open else {
            return Ok(());
        };
        let (id, peer) = (session.id(), session.peer_addr());
        match catch_unwind(AssertUnwindSafe(|| hook(session))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => {
                log::debug!("conn {id} ({peer}): rejected by on_open: {why}");
                Err(CloseReason::Rejected(why))
            }
            Err(panic) => {
                log::error!(
                    "conn {id} ({peer}): on_open panicked: {}",
                    panic_message(&*panic)
                );
                Err(CloseReason::HandlerPanic)
            }
        }
    }

    /// Run `on_close` (a panic is logged; the connection is gone anyway).
    pub(crate) fn close(&self, session: &mut Session<'_>, reason: &CloseReason) {
        let Some(hook) = &self.on_close else {
            return;
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| hook(session, reason))) {
            log::error!(
                "conn {} ({}): on_close panicked: {}",
                session.id(),
                session.peer_addr(),
                panic_message(&*panic)
            );
        }
    }

    /// Run `on_disconnect` (a panic is logged).
    pub(crate) fn disconnected(
        &self,
        session: &mut Session<'_>,
        reason: &CloseReason,
        attempt: u32,
        retry_in: Duration,
    ) {
        let Some(hook) = &self.on_disconnect else {
            return;
        };
        let d = Disconnect {
            reason: reason.clone(),
            attempt,
            retry_in,
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| hook(session, &d))) {
            log::error!(
                "conn {}: on_disconnect panicked: {}",
                session.id(),
                panic_message(&*panic)
            );
        }
    }

    /// Run `on_reconnect` (a panic is logged).
    pub(crate) fn reconnected(&self, session: &mut Session<'_>, attempts: u32) {
        let Some(hook) = &self.on_reconnect else {
            return;
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| hook(session, attempts))) {
            log::error!(
                "conn {}: on_reconnect panicked: {}",
                session.id(),
                panic_message(&*panic)
            );
        }
    }

    /// Ask the upgrade hook about `request`, then keep the request as
    /// connection data either way. Returns the verdict for the client (a
    /// panic answers 500) and, if the hook panicked, the reason to close.
    pub(crate) fn upgrade(
        &self,
        session: &mut Session<'_>,
        request: WsRequest,
    ) -> (std::result::Result<(), u16>, Option<CloseReason>) {
        let verdict = match &self.on_upgrade {
            None => Ok(Ok(())),
            Some(hook) => catch_unwind(AssertUnwindSafe(|| hook(session, &request))),
        };
        session.data_mut().insert(request);
        match verdict {
            Ok(v) => (v, None),
            Err(panic) => {
                log::error!(
                    "conn {} ({}): ws_on_upgrade panicked: {}",
                    session.id(),
                    session.peer_addr(),
                    panic_message(&*panic)
                );
                (Err(500), Some(CloseReason::HandlerPanic))
            }
        }
    }
}
