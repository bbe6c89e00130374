//! The server's figures through the [`metrics`](https://docs.rs/metrics)
//! facade (the `metrics` feature), so that any exporter (Prometheus,
//! StatsD, OpenTelemetry, …) can publish them.
//!
//! [`Stats`] stays the source: this module only reads it (and
//! [`PoolStats`], and the cluster's `ClusterStats`) and sets the facade's
//! counters and gauges to what it read (`Counter::absolute`,
//! `Gauge::set`), so nothing on a loop's path changes with the feature.
//! Two things are measured where they happen, because no snapshot holds
//! them: each connection's traffic ([`ConnHandle::traffic`]) and each
//! request's latency (the `netloom_request_seconds` histogram, recorded
//! on the loop when the reply arrives).
//!
//! # Driving it
//!
//! * On scrape: call [`export`] (or [`export_stats`]) right before the
//!   exporter renders, as `examples/echo_server.rs --metrics` does.
//! * Periodically: [`Exporter::start`] runs a thread (`netloom-metrics`)
//!   that exports every interval, for push exporters. It stops when the
//!   server begins shutting down (after one last export), or when the
//!   [`Exporter`] is stopped or dropped. No async runtime is involved.
//!
//! The facade's recorder is process-wide and the names carry no server
//! label: export one server per process (or label them yourself in the
//! exporter). The GUIDE's "Metrics" section lists every name with its
//! unit; every name starts with `netloom_`.
//!
//! ```no_run
//! use std::time::Duration;
//! use netloom::{metrics::Exporter, Server};
//!
//! let server = Server::builder().bind("127.0.0.1:6565")?.start()?;
//! // Install a recorder first (`metrics_exporter_prometheus`, say).
//! let exporter = Exporter::start(&server.hub(), Duration::from_secs(10))?;
//! server.join()?;
//! drop(exporter);
//! # Ok::<(), netloom::Error>(())
//! ```
//!
//! [`ConnHandle::traffic`]: crate::ConnHandle::traffic

use std::fmt;
use std::sync::{Arc, Once, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use ::metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::config::FOREVER;
use crate::error::Result;
use crate::runtime::{Hub, PoolStats, ShutdownWatch};
use crate::stats::Stats;

/// A figure of [`Stats`]: its metric's name, unit, help text and value.
type Figure<T> = (&'static str, Unit, &'static str, fn(&T) -> u64);

/// The counters of [`Stats`] (each the field of the same name, `_total`).
const STATS_COUNTERS: &[Figure<Stats>] = &[
    (
        "netloom_accepted_total",
        Unit::Count,
        "Connections accepted (not counting rejected).",
        |s| s.accepted,
    ),
    (
        "netloom_rejected_total",
        Unit::Count,
        "Sockets closed at once over max_connections.",
        |s| s.rejected,
    ),
    (
        "netloom_accept_errors_total",
        Unit::Count,
        "Errors from accept (EMFILE, ENFILE, ...).",
        |s| s.accept_errors,
    ),
    (
        "netloom_bytes_in_total",
        Unit::Bytes,
        "Bytes read from peers.",
        |s| s.bytes_in,
    ),
    (
        "netloom_bytes_out_total",
        Unit::Bytes,
        "Bytes written to peers.",
        |s| s.bytes_out,
    ),
    (
        "netloom_messages_in_total",
        Unit::Count,
        "Messages decoded from peers.",
        |s| s.messages_in,
    ),
    (
        "netloom_messages_out_total",
        Unit::Count,
        "Messages queued for peers.",
        |s| s.messages_out,
    ),
    (
        "netloom_send_errors_total",
        Unit::Count,
        "Sends that failed or were dropped.",
        |s| s.send_errors,
    ),
    (
        "netloom_slow_peer_events_total",
        Unit::Count,
        "Write queues that went over their high-water mark.",
        |s| s.slow_peer_events,
    ),
    (
        "netloom_exec_pauses_total",
        Unit::Count,
        "Read pauses over exec_backlog.",
        |s| s.exec_pauses,
    ),
    (
        "netloom_bad_bodies_total",
        Unit::Count,
        "Bodies that did not decode as their typed route's type.",
        |s| s.bad_bodies,
    ),
    (
        "netloom_unknown_ids_total",
        Unit::Count,
        "Messages with an id no route handles.",
        |s| s.unknown_ids,
    ),
    (
        "netloom_handler_errors_total",
        Unit::Count,
        "Handlers or middleware that returned Err.",
        |s| s.handler_errors,
    ),
    (
        "netloom_unflushed_closes_total",
        Unit::Count,
        "Closes that dropped queued data.",
        |s| s.unflushed_closes,
    ),
    (
        "netloom_connects_total",
        Unit::Count,
        "Dialed connections that connected.",
        |s| s.connects,
    ),
    (
        "netloom_connect_failures_total",
        Unit::Count,
        "Connect attempts of dialed connections that failed.",
        |s| s.connect_failures,
    ),
    (
        "netloom_request_timeouts_total",
        Unit::Count,
        "Requests with no reply within their timeout.",
        |s| s.request_timeouts,
    ),
    (
        "netloom_late_replies_total",
        Unit::Count,
        "Replies after their request timed out (dropped).",
        |s| s.late_replies,
    ),
    (
        "netloom_datagrams_in_total",
        Unit::Count,
        "UDP datagrams received.",
        |s| s.datagrams_in,
    ),
    (
        "netloom_datagrams_out_total",
        Unit::Count,
        "UDP datagrams sent.",
        |s| s.datagrams_out,
    ),
];

/// The gauges of [`Stats`].
const STATS_GAUGES: &[Figure<Stats>] = &[
    (
        "netloom_connections",
        Unit::Count,
        "Connections open now.",
        |s| s.connections,
    ),
    (
        "netloom_partial_held_bytes",
        Unit::Bytes,
        "Memory held now for unfinished frames.",
        |s| s.partial_held,
    ),
];

const CLOSED: &str = "netloom_closed_total";
const DROPPED: &str = "netloom_datagrams_dropped_total";
const REQUEST_SECONDS: &str = "netloom_request_seconds";

/// The gauges of [`PoolStats`] (labelled `pool`).
const POOL_GAUGES: &[Figure<PoolStats>] = &[
    (
        "netloom_pool_size",
        Unit::Count,
        "Pool connections: open, connecting or handed out.",
        |p| p.size as u64,
    ),
    (
        "netloom_pool_idle",
        Unit::Count,
        "Pool connections open and not handed out.",
        |p| p.idle as u64,
    ),
    (
        "netloom_pool_in_use",
        Unit::Count,
        "Pool connections handed out.",
        |p| p.in_use as u64,
    ),
];

/// The counters of [`PoolStats`] (labelled `pool`).
const POOL_COUNTERS: &[Figure<PoolStats>] = &[
    (
        "netloom_pool_created_total",
        Unit::Count,
        "Pool connections dialed.",
        |p| p.created,
    ),
    (
        "netloom_pool_discarded_total",
        Unit::Count,
        "Pool connections closed or lost.",
        |p| p.discarded,
    ),
    (
        "netloom_pool_connect_failures_total",
        Unit::Count,
        "Pool connects that failed.",
        |p| p.connect_failures,
    ),
    (
        "netloom_pool_waits_total",
        Unit::Count,
        "Pool calls that waited for a connection.",
        |p| p.waits,
    ),
    (
        "netloom_pool_wait_timeouts_total",
        Unit::Count,
        "Pool calls that waited until their timeout.",
        |p| p.wait_timeouts,
    ),
];

/// Describe every metric to the recorder once (units and help texts).
fn describe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for &(name, unit, help, _) in STATS_COUNTERS {
            describe_counter!(name, unit, help);
        }
        for &(name, unit, help, _) in STATS_GAUGES {
            describe_gauge!(name, unit, help);
        }
        describe_counter!(CLOSED, Unit::Count, "Connections closed, by reason kind.");
        describe_counter!(DROPPED, Unit::Count, "UDP datagrams dropped, by cause.");
        describe_histogram!(
            REQUEST_SECONDS,
            Unit::Seconds,
            "Request latency: sent to reply."
        );
        for &(name, unit, help, _) in POOL_COUNTERS {
            describe_counter!(name, unit, help);
        }
        for &(name, unit, help, _) in POOL_GAUGES {
            describe_gauge!(name, unit, help);
        }
        #[cfg(feature = "cluster")]
        cluster::describe();
    });
}

/// Set every metric of `stats` (closes labelled `reason`, dropped
/// datagrams labelled `cause`, every kind included, at zero too), as
/// absolute values: for a process whose figures come from one source
/// (the `metrics` crate's counters never go down: a smaller value is
/// ignored). [`export`] adds up several servers instead.
pub fn export_stats(stats: &Stats) {
    describe();
    for &(name, _, _, value) in STATS_COUNTERS {
        counter!(name).absolute(value(stats));
    }
    for &(name, _, _, value) in STATS_GAUGES {
        gauge!(name).set(value(stats) as f64);
    }
    for (kind, n) in stats.closed_by_kind() {
        counter!(CLOSED, "reason" => kind).absolute(n);
    }
    for (cause, n) in stats.datagrams_dropped_by_cause() {
        counter!(DROPPED, "cause" => cause).absolute(n);
    }
}

/// Export the server's [`Stats`] now (`hub.stats()`: it never pauses a
/// loop). Counters grow by what the server counted since its last export,
/// so the servers of one process add up (and a server started after
/// another shut down goes on from its totals); gauges are set, the last
/// exported server's standing.
pub fn export(hub: &Hub) {
    describe();
    let now = hub.stats();
    let last = {
        let mut last = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let tag = hub.runtime.tag;
        let before = last.get(&tag).cloned().unwrap_or_default();
        if hub.runtime.is_shut_down() && hub.connection_count() == 0 {
            // Its last export: nothing more will be counted.
            last.remove(&tag);
        } else {
            last.insert(tag, now.clone());
        }
        before
    };
    for &(name, _, _, value) in STATS_COUNTERS {
        counter!(name).increment(value(&now).saturating_sub(value(&last)));
    }
    for &(name, _, _, value) in STATS_GAUGES {
        gauge!(name).set(value(&now) as f64);
    }
    let closed = now.closed_by_kind().zip(last.closed_by_kind());
    for ((kind, n), (_, before)) in closed {
        counter!(CLOSED, "reason" => kind).increment(n.saturating_sub(before));
    }
    let dropped = now
        .datagrams_dropped_by_cause()
        .zip(last.datagrams_dropped_by_cause());
    for ((cause, n), (_, before)) in dropped {
        counter!(DROPPED, "cause" => cause).increment(n.saturating_sub(before));
    }
}

/// The `Stats` of each server (by its tag) at its last [`export`].
static LAST: std::sync::Mutex<std::collections::BTreeMap<u32, Stats>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Set the metrics of one pool, labelled `pool` = `name` (a name per
/// pool: the facade cannot tell two pools apart otherwise).
///
/// ```
/// # fn f(pool: netloom::Pool) {
/// netloom::metrics::export_pool("backend", &pool.stats());
/// # }
/// # let _ = f;
/// ```
pub fn export_pool(name: &str, stats: &PoolStats) {
    describe();
    for &(metric, _, _, value) in POOL_COUNTERS {
        counter!(metric, "pool" => name.to_owned()).absolute(value(stats));
    }
    for &(metric, _, _, value) in POOL_GAUGES {
        gauge!(metric, "pool" => name.to_owned()).set(value(stats) as f64);
    }
}

#[cfg(feature = "cluster")]
mod cluster;
#[cfg(feature = "cluster")]
#[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
pub use cluster::export_cluster;

/// A thread that exports a server's figures every interval: see
/// [`Exporter::start`]. Dropping it stops the thread (and waits for it).
pub struct Exporter {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let running = self.thread.as_ref().is_some_and(|t| !t.is_finished());
        f.debug_struct("Exporter")
            .field("running", &running)
            .finish()
    }
}

/// Wakes the exporter's thread to stop: at shutdown, or from [`Exporter`].
struct Stop(Sender<()>);

impl ShutdownWatch for Stop {
    fn shutting_down(&self) {
        let _ = self.0.try_send(());
    }
}

impl Exporter {
    /// Export the server's [`Stats`] (as [`export`]) now and then every
    /// `every` (at least a millisecond), on a thread of its own, until the
    /// server begins shutting down (one last export then) or this is
    /// stopped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](crate::Error::Io) if the thread cannot be spawned.
    pub fn start(hub: &Hub, every: Duration) -> Result<Exporter> {
        Self::start_with(hub, every, || {})
    }

    /// Like [`start`](Self::start), calling `also` after each export: for
    /// the figures of the pools ([`export_pool`]) and of the cluster
    /// (`export_cluster`), which the hub does not hold.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub fn start_with(
        hub: &Hub,
        every: Duration,
        mut also: impl FnMut() + Send + 'static,
    ) -> Result<Exporter> {
        let every = every.clamp(Duration::from_millis(1), FOREVER);
        let (tx, rx) = bounded(1);
        let stop = Arc::new(Stop(tx));
        let watch: Weak<dyn ShutdownWatch> = Arc::downgrade(&stop) as Weak<Stop>;
        hub.runtime.watch_shutdown(watch);
        let hub = hub.clone();
        let thread = std::thread::Builder::new()
            .name("netloom-metrics".into())
            .spawn(move || run(&hub, every, &rx, &mut also))?;
        Ok(Exporter {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop the thread (after one last export) and wait for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let _ = self.stop.0.try_send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The exporter's thread: export, wait `every` or a stop, until stopped
/// or the server shuts down (registered before this looks, so a shutdown
/// begun meanwhile is seen here or wakes the wait).
fn run(hub: &Hub, every: Duration, stop: &Receiver<()>, also: &mut dyn FnMut()) {
    loop {
        round(hub, also);
        if hub.runtime.is_shut_down() {
            return;
        }
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    round(hub, also);
}

/// One export and `also`: a panic in either (a recorder's, the
/// application's) is logged and the exporter goes on.
fn round(hub: &Hub, also: &mut dyn FnMut()) {
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        export(hub);
        also();
    }));
    if let Err(panic) = done {
        let why = crate::error::panic_message(&*panic);
        log::error!("netloom-metrics: an export panicked: {why}");
    }
}
