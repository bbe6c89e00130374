//! Dialing from the application: [`Hub::connect`], [`Hub::dial`], and
//! [`ConnHandle::reconnect_now`].

use std::net::ToSocketAddrs;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{local, with_current, Command, ConnHandle, Hub, LoopCore, Receipt};
use crate::conn::dial::Dial;
use crate::error::{Error, Result};
use crate::id::ConnId;

impl Hub {
    /// Dial `addr` (the first address it resolves to) with the default
    /// [`Dial`] settings: see [`dial`](Self::dial).
    ///
    /// # Errors
    ///
    /// As [`dial`](Self::dial); [`Error::Io`] if `addr` does not resolve,
    /// [`Error::Config`] if it resolves to nothing.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> Result<ConnHandle> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| Error::Config("connect: address resolved to nothing".into()))?;
        self.dial(Dial::new(addr))
    }

    /// Open an outbound connection on the server's loops: a connection like
    /// an accepted one (same packer, routes, middleware, hooks, heartbeat,
    /// write queue and handles) that the server dials. It returns at once
    /// with the connection's handle, usable from any thread; what is sent
    /// before the connect completes is queued (up to the high-water mark)
    /// and goes out once it has. `on_open` runs when it connects; over TLS
    /// (`Dial::tls`), when the handshake completes.
    ///
    /// The connect does not block: its failure (refused, unreachable, or
    /// no answer within `connect_timeout`) closes the connection with
    /// [`CloseReason::ConnectFailed`](crate::CloseReason::ConnectFailed) or
    /// [`ConnectTimeout`](crate::CloseReason::ConnectTimeout), unless the
    /// [`Dial`] has a [`Reconnect`](crate::Reconnect) policy: then a failed
    /// or lost connection keeps its handle and connects again after the
    /// policy's backoff (`Builder::on_disconnect` and `on_reconnect`
    /// report it), until it is closed or runs out of attempts.
    ///
    /// Called on a loop thread (a handler, a hook) the connection belongs
    /// to that loop; from any other thread the loops take turns, and the
    /// call waits for the chosen loop to make the connection's slot.
    ///
    /// The connection counts in [`connection_count`](Self::connection_count)
    /// (and against `max_connections`) from the moment its slot is made
    /// until it is closed for good.
    ///
    /// # Errors
    ///
    /// [`Error::ShutDown`] when the server is shutting down;
    /// [`Error::Config`] when rustls cannot start a session with the
    /// dial's TLS settings, or its [`Reconnect`](crate::Reconnect) policy
    /// makes no sense (a `factor` below 1 or not a number, a `jitter`
    /// outside 0 to 1).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use netloom::{Dial, Reconnect, Server};
    ///
    /// // A process that only dials: no `bind`.
    /// let server = Server::builder()
    ///     .route(1, |ctx| log::info!("backend says {:?}", ctx.body()))
    ///     .start()?;
    /// let backend = server.hub().dial(
    ///     Dial::new("127.0.0.1:7000".parse().unwrap()).reconnect(Reconnect::default()),
    /// )?;
    /// backend.send(1, b"hello")?; // queued until connected
    /// # server.shutdown(Duration::from_secs(1))?;
    /// # Ok::<(), netloom::Error>(())
    /// ```
    pub fn dial(&self, mut dial: Dial) -> Result<ConnHandle> {
        let runtime = &self.runtime;
        if runtime.is_shut_down() {
            return Err(Error::ShutDown);
        }
        if let Some(name) = &dial.profile_name {
            dial.profile = runtime.config.profile_index(name).ok_or_else(|| {
                Error::Config(format!("Dial::profile: the server has no profile {name:?}"))
            })?;
        }
        if let Some(policy) = &dial.reconnect {
            policy.validate()?;
        }
        if dial.udp && (dial.reconnect.is_some() || dial.tls.is_some() || dial.ws.is_some()) {
            return Err(Error::Config(
                "a UDP dial takes no reconnect, TLS or WebSocket".into(),
            ));
        }
        if dial.timeouts_to_drop == Some(0) {
            return Err(Error::Config(
                "Dial::reconnect_after_timeouts must be at least 1".into(),
            ));
        }
        if let Some(check) = &dial.health {
            if check.interval.is_zero() || check.timeout.is_zero() {
                return Err(Error::Config(
                    "Dial::health_check: interval and timeout must not be zero".into(),
                ));
            }
        }
        // A WebSocket dial carries sequence numbers in its packer mode only.
        let ws_messages = dial.ws.as_ref().is_some_and(|(ws, _)| !ws.carries_seq());
        if (dial.timeouts_to_drop.is_some() || dial.health.is_some())
            && (ws_messages || !runtime.wire.packer_carries_seq(dial.profile))
        {
            return Err(Error::NoSeq);
        }
        if let Some(tls) = &dial.tls {
            tls.check()
                .map_err(|e| Error::Config(format!("Dial::tls: {e}")))?;
        }
        if let Some((ws, secure)) = &mut dial.ws {
            if *secure && dial.tls.is_none() {
                return Err(Error::Config(
                    "a wss:// dial needs TLS: Dial::wss(url, client_config)".into(),
                ));
            }
            Arc::make_mut(ws).settle(&runtime.config)?;
        }
        let spec = Arc::new(dial);
        let id = match local::current(runtime, |core| core.reserve_dial(spec.clone())) {
            Some(reserved) => reserved?,
            None => {
                let (tx, rx) = crossbeam_channel::bounded(1);
                runtime.push(runtime.dial_loop(), 0, Command::Dial(spec, tx))?;
                // Dropped unanswered: the loop exited first.
                rx.recv().map_err(|_| Error::ShutDown)??
            }
        };
        Ok(self.conn(id))
    }
}

impl LoopCore {
    /// Make a dialed connection's slot on this loop (`Hub::dial`, on the
    /// loop thread). It counts as open from now on, before its connect can
    /// fail and uncount it. Refused once shutdown has begun: the loop
    /// closed its connections already and would wait for this one until
    /// the deadline.
    pub(crate) fn reserve_dial(&self, spec: Arc<Dial>) -> Result<ConnId> {
        if self.runtime.is_shut_down() {
            return Err(Error::ShutDown);
        }
        self.runtime.live.fetch_add(1, Ordering::Relaxed);
        Ok(self.table.reserve_dial(spec))
    }
}

impl ConnHandle {
    /// Skip the rest of a dialed connection's reconnect backoff: one
    /// waiting to come back after a loss (or a failed connect) starts its
    /// next attempt at once, in the loop's current turn. The timer of the
    /// skipped backoff is dropped when it fires (it belongs to an earlier
    /// attempt), so this never makes two attempts. The attempt counts as
    /// the next one of the policy (`max_attempts`, the next delay).
    ///
    /// The receipt says whether an attempt was started: `true` for a
    /// connection that was down; `false` for one connecting (or resolving
    /// its host name) or open, which is left alone (to drop a working link
    /// and dial again, close it and dial anew). On the connection's own
    /// loop thread the receipt is ready at once.
    ///
    /// # Errors
    ///
    /// In the receipt: [`Error::Closed`] for a connection closed for good,
    /// [`Error::Config`] for an accepted (not dialed) connection,
    /// [`Error::ShutDown`] or [`Error::InboxFull`] before the loop got it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use netloom::{Dial, Reconnect, SeqPacker, Server};
    ///
    /// let client = Server::builder().packer(SeqPacker::default()).start()?;
    /// let backend = client.hub().dial(
    ///     Dial::new("127.0.0.1:7000".parse().unwrap()).reconnect(Reconnect::default()),
    /// )?;
    /// // Told by service discovery that the backend is up again: do not
    /// // wait out the rest of a 60 s backoff.
    /// let started = backend.reconnect_now().wait()?;
    /// log::info!("an attempt started: {started}");
    /// # Ok::<(), netloom::Error>(())
    /// ```
    pub fn reconnect_now(&self) -> Receipt<bool> {
        let (runtime, id) = (&self.runtime, self.id);
        if runtime.is_shut_down() {
            return Receipt::ready(Err(Error::ShutDown));
        }
        if let Some(done) = with_current(runtime, id.loop_index(), |core| {
            core.table.reconnect_now(id)
        }) {
            return Receipt::ready(done);
        }
        let (receipt, reply) = Receipt::pending(runtime.clone(), id.loop_index());
        let job = Box::new(move |core: &LoopCore| reply.send(core.table.reconnect_now(id)));
        match runtime.push(id.loop_index(), 0, Command::Run { bytes: 0, job }) {
            Ok(()) => receipt,
            Err(e) => Receipt::ready(Err(e)),
        }
    }
}
