//! A running server: [`spawn`] starts the loop and acceptor threads that
//! [`Builder::start`](crate::Builder::start) asked for; [`ServerHandle`]
//! waits for them and stops them; [`ShutdownHandle`] asks for a stop from
//! any thread.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{saturate, Config};
use crate::dispatch::exec::{self, Receivers};
use crate::dispatch::App;
use crate::error::{Error, Result};
use crate::reactor::acceptor::{self, Acceptor};
use crate::reactor::event_loop::{self, EventLoop, UdpSockets, MAX_UDP_SOCKETS};
use crate::runtime::{Hub, LoopShared, Runtime};
use crate::stats::Stats;
use crate::transport::{Protocol, Wire};

/// Bind the listeners and start the loop and acceptor threads.
pub(crate) fn spawn(
    config: Config,
    wire: Wire,
    app: App,
    receivers: Receivers,
    addrs: &[(SocketAddr, Protocol)],
    udp_addrs: &[SocketAddr],
) -> Result<ServerHandle> {
    let mut listeners = Vec::new();
    let mut protocols = Vec::new();
    let mut local_addrs = Vec::new();
    for &(addr, protocol) in addrs {
        let l = crate::sys::listen(addr, config.backlog)?;
        local_addrs.push(l.local_addr()?);
        listeners.push(l);
        protocols.push(protocol);
    }
    let accept_poll = mio::Poll::new()?;
    for (i, l) in listeners.iter_mut().enumerate() {
        accept_poll
            .registry()
            .register(l, mio::Token(i), mio::Interest::READABLE)?;
    }
    let accept_waker = mio::Waker::new(accept_poll.registry(), acceptor::WAKE)?;

    let (udp, udp_local) = udp_sockets(&config, udp_addrs)?;
    let mut polls = Vec::new();
    let mut loops = Vec::new();
    let mut inboxes = Vec::new();
    let mut udp_of_loops = Vec::new();
    for sockets in udp {
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), event_loop::WAKER)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        udp_of_loops.push(UdpSockets::new(
            sockets,
            poll.registry(),
            config.udp.max_datagram,
        )?);
        loops.push(LoopShared::new(tx, waker));
        polls.push(poll);
        inboxes.push(rx);
    }
    let runtime = Arc::new(Runtime::new(config, Arc::new(wire), loops, accept_waker));
    let app = Arc::new(app);

    let mut handle = ServerHandle {
        runtime: runtime.clone(),
        local_addrs,
        udp_addrs: udp_local,
        loops: Vec::new(),
        acceptor: None,
        workers: exec::Workers::default(),
    };
    match exec::spawn(receivers, &app, &runtime) {
        Ok(workers) => handle.workers = workers,
        Err(e) => {
            handle.runtime.acceptor_stopped();
            return Err(e.into());
        }
    }
    let parts = polls.into_iter().zip(inboxes).zip(udp_of_loops);
    for (index, ((poll, inbox), udp)) in parts.enumerate() {
        let (runtime, app) = (runtime.clone(), app.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("netloom-loop-{index}"))
            .spawn(move || {
                let event_loop = EventLoop::new(index, runtime.clone(), app, poll, inbox, udp);
                let unflushed = event_loop.run();
                runtime.loops[index].exited.store(true, Ordering::Release);
                unflushed
            });
        match spawned {
            Ok(t) => handle.loops.push(t),
            Err(e) => {
                // No acceptor runs yet: the runtime tells the loops itself.
                handle.runtime.acceptor_stopped();
                let _ = handle.stop(Duration::ZERO);
                return Err(e.into());
            }
        }
    }
    // The loops hold the application now; the workers only weakly, so
    // they end once the loops have.
    drop(app);
    let acceptor = Acceptor::new(accept_poll, listeners, protocols, runtime);
    match std::thread::Builder::new()
        .name("netloom-accept".into())
        .spawn(move || acceptor.run())
    {
        Ok(t) => handle.acceptor = Some(t),
        Err(e) => {
            // Without an acceptor, the loops are told by the runtime.
            handle.runtime.acceptor_stopped();
            let _ = handle.stop(Duration::ZERO);
            return Err(e.into());
        }
    }
    log::info!(
        "netloom listening on {:?} (UDP {:?}) with {} event loop(s)",
        handle.local_addrs,
        handle.udp_addrs,
        handle.runtime.loops.len()
    );
    Ok(handle)
}

/// Bind the UDP sockets: for each loop the sockets it reads, and the
/// addresses bound (with the real ports of port 0).
fn udp_sockets(
    config: &Config,
    addrs: &[SocketAddr],
) -> Result<(Vec<Vec<mio::net::UdpSocket>>, Vec<SocketAddr>)> {
    if addrs.len() > MAX_UDP_SOCKETS {
        return Err(Error::Config(format!(
            "at most {MAX_UDP_SOCKETS} UDP addresses"
        )));
    }
    let mut per_loop: Vec<Vec<_>> = (0..config.event_loops).map(|_| Vec::new()).collect();
    let mut local = Vec::new();
    let options = config.server_socket();
    for &addr in addrs {
        let sockets = crate::sys::udp_sockets(addr, config.event_loops, &options)?;
        if let Some(first) = sockets.first() {
            local.push(first.local_addr()?);
        }
        for (socket, sockets) in sockets.into_iter().zip(per_loop.iter_mut()) {
            sockets.push(socket);
        }
    }
    Ok((per_loop, local))
}

/// A running server.
///
/// [`shutdown`](Self::shutdown) stops it gracefully; [`join`](Self::join)
/// runs it until a [`ShutdownHandle`] (from any thread) stops it. Dropping
/// the handle shuts the server down at once (no flush deadline).
pub struct ServerHandle {
    runtime: Arc<Runtime>,
    local_addrs: Vec<SocketAddr>,
    udp_addrs: Vec<SocketAddr>,
    loops: Vec<JoinHandle<usize>>,
    acceptor: Option<JoinHandle<()>>,
    /// The worker pool and logic thread (`Exec`).
    workers: exec::Workers,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addrs", &self.local_addrs)
            .field("udp_addrs", &self.udp_addrs)
            .field("loops", &self.loops.len())
            .finish()
    }
}

impl ServerHandle {
    /// The first listening address (with the real port if bound to port
    /// 0); on a server with UDP sockets only, the first of those.
    ///
    /// # Panics
    ///
    /// When the server listens on nothing (it only dials).
    pub fn local_addr(&self) -> SocketAddr {
        match self.local_addrs.first() {
            Some(addr) => *addr,
            None => self.udp_addrs[0],
        }
    }

    /// Every listening address, in `bind` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Every UDP address (`Builder::bind_udp`), in `bind_udp` order, with
    /// the real port if bound to port 0.
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// Broadcast, connection list, handles by id; usable from any thread.
    pub fn hub(&self) -> Hub {
        Hub {
            runtime: self.runtime.clone(),
        }
    }

    /// A handle that stops the server from any thread (a signal handler's,
    /// an admin command's), while another waits in [`join`](Self::join).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            runtime: self.runtime.clone(),
        }
    }

    /// The server's counters now.
    pub fn stats(&self) -> Stats {
        self.hub().stats()
    }

    /// Open connections now.
    pub fn connection_count(&self) -> usize {
        self.hub().connection_count()
    }

    /// Stop accepting, close every connection (`on_close` gets
    /// [`CloseReason::Shutdown`](crate::CloseReason::Shutdown)) after
    /// flushing what is queued, and join every thread. Connections still
    /// unflushed after `deadline` are closed anyway (a `deadline` longer
    /// than [`FOREVER`](crate::FOREVER) is `FOREVER`), and so are those
    /// whose handler still runs on a worker ([`Exec`](crate::Exec)): their
    /// `on_close` runs without their data, and the worker is left to end
    /// that handler on its own (it is not joined).
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join).
    pub fn shutdown(mut self, deadline: Duration) -> Result<()> {
        self.stop(deadline)
    }

    /// Wait until the server has stopped: until a [`ShutdownHandle`] asks
    /// for it (a plain server runs until its process is killed), and every
    /// thread has finished.
    ///
    /// # Errors
    ///
    /// [`Error::ShutdownTimeout`] if some connections could not be flushed
    /// before the deadline, [`Error::ThreadPanicked`] if a server thread
    /// died (a bug). The server is fully stopped in every case.
    pub fn join(mut self) -> Result<()> {
        self.wait()
    }

    fn stop(&mut self, deadline: Duration) -> Result<()> {
        self.runtime
            .request_shutdown(Instant::now() + saturate(deadline));
        self.wait()
    }

    /// Join every thread.
    fn wait(&mut self) -> Result<()> {
        let mut result = Ok(());
        if let Some(t) = self.acceptor.take() {
            if t.join().is_err() {
                result = Err(Error::ThreadPanicked("netloom-accept".into()));
            }
        }
        let mut unflushed = 0;
        for (i, t) in self.loops.drain(..).enumerate() {
            match t.join() {
                Ok(n) => unflushed += n,
                Err(_) => result = Err(Error::ThreadPanicked(format!("netloom-loop-{i}"))),
            }
        }
        // The loops have let the application go: the workers' channels
        // are closed, and they end after the task in hand (or are left to,
        // past the deadline).
        if !self.workers.join(self.runtime.shutdown_deadline()) {
            result = Err(Error::ThreadPanicked("netloom-worker".into()));
        }
        if unflushed > 0 && result.is_ok() {
            result = Err(Error::ShutdownTimeout(unflushed));
        }
        result
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.loops.is_empty() || self.acceptor.is_some() {
            let _ = self.stop(Duration::ZERO);
        }
    }
}

/// Asks a server to shut down, from any thread; cheap to clone.
///
/// The thread in [`ServerHandle::join`] (or dropping the `ServerHandle`)
/// waits for the server to finish.
///
/// ```no_run
/// use std::time::Duration;
///
/// let server = netloom::Server::builder().bind("127.0.0.1:6565")?.start()?;
/// let stop = server.shutdown_handle();
/// std::thread::spawn(move || {
///     std::thread::sleep(Duration::from_secs(60));
///     stop.shutdown(Duration::from_secs(5));
/// });
/// server.join()?;
/// # Ok::<(), netloom::Error>(())
/// ```
#[derive(Clone)]
pub struct ShutdownHandle {
    runtime: Arc<Runtime>,
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("requested", &self.runtime.is_shut_down())
            .finish()
    }
}

impl ShutdownHandle {
    /// Begin a graceful shutdown (as [`ServerHandle::shutdown`], without
    /// waiting for it): stop accepting, close every connection after
    /// flushing what is queued, within `deadline`. Later calls do nothing.
    pub fn shutdown(&self, deadline: Duration) {
        self.runtime
            .request_shutdown(Instant::now() + saturate(deadline));
    }

    /// Whether a shutdown has been asked for.
    pub fn is_shut_down(&self) -> bool {
        self.runtime.is_shut_down()
    }
}
