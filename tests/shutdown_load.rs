//! Shutdown under load (issue 26, item 3): 1,000 TCP clients pipelining,
//! UDP peers, a thread dialing out and threads sending through handles,
//! then `shutdown(deadline)` while all of it runs.
//!
//! It asserts that shutdown returns (every server thread joined) within
//! its deadline, that `on_close` ran exactly once for every connection
//! `on_open` ran for and for every dialed one, that every thread of the
//! test ends, that nothing panicked anywhere (a recording panic hook), and
//! that the process holds the same descriptors afterwards as before.
//!
//! It counts `/proc/self/fd` and installs a panic hook (process-wide
//! state), so it is a test binary of its own. Linux only (`/proc`).
#![cfg(target_os = "linux")]

mod common;

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use netloom::{CloseReason, ConnId, Context, Dial, Error, Hub, Server};

use common::{frame, init_logs, panics, TIMEOUT};

const CLIENT_THREADS: usize = 4;
const CLIENTS_PER_THREAD: usize = 250;
const CLIENTS: usize = CLIENT_THREADS * CLIENTS_PER_THREAD;
/// Requests each client writes at once before reading their replies.
const PIPELINE: u64 = 4;
const UDP_PEERS: usize = 8;
const SENDER_THREADS: usize = 2;
/// The dialer's bound on dials; shutdown comes long before it.
const MAX_DIALS: usize = 3_000;
/// Dialed connections the dialer keeps open (it closes the oldest).
const DIALS_OPEN: usize = 16;
const DEADLINE: Duration = Duration::from_secs(5);
/// Scheduling allowance on a loaded two-core machine.
const SLACK: Duration = Duration::from_secs(2);
/// No thread of the test may run longer than this.
const BOUND: Duration = Duration::from_secs(90);

/// Open descriptors of this process, with what they point to.
fn open_fds() -> Vec<(RawFd, String)> {
    let mut fds: Vec<(RawFd, String)> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    fds
}

/// Sends its thread's name on `done` when the thread ends (also by panic).
struct Done(Sender<String>);

impl Drop for Done {
    fn drop(&mut self) {
        let name = thread::current().name().unwrap_or("?").to_string();
        let _ = self.0.send(name);
    }
}

fn spawn(name: String, done: &Sender<String>, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    let done = Done(done.clone());
    thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _done = done;
            f()
        })
        .expect("spawn")
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// One pipelining client: what it sent and what it has had back.
struct Piper {
    stream: TcpStream,
    tag: String,
    sent: u64,
    echoed: u64,
}

impl Piper {
    fn body(&self, n: u64) -> Vec<u8> {
        format!("{}:{n}", self.tag).into_bytes()
    }

    /// Write `PIPELINE` requests at once; false once the server is gone.
    fn write_batch(&mut self) -> bool {
        let mut out = Vec::new();
        for _ in 0..PIPELINE {
            out.extend_from_slice(&frame(1, &self.body(self.sent)));
            self.sent += 1;
        }
        self.stream.write_all(&out).is_ok()
    }

    /// Read until every request is answered (skipping the handle
    /// senders' id-3 messages); false once the server closed. Each echo
    /// must be the next request's body: nothing lost, reordered or
    /// crossed with another connection's.
    fn read_replies(&mut self) -> bool {
        while self.echoed < self.sent {
            let mut head = [0u8; 8];
            if let Err(e) = self.stream.read_exact(&mut head) {
                assert!(!is_timeout(&e), "{}: no reply and no close", self.tag);
                return false;
            }
            let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
            let id = u32::from_le_bytes(head[4..].try_into().unwrap());
            let mut body = vec![0; len];
            if let Err(e) = self.stream.read_exact(&mut body) {
                assert!(!is_timeout(&e), "{}: frame cut and no close", self.tag);
                return false;
            }
            match id {
                2 => {
                    let want = self.body(self.echoed);
                    assert!(body == want, "{}: echo {:?}, want {want:?}", self.tag, body);
                    self.echoed += 1;
                }
                3 => {}
                other => panic!("{}: unexpected message id {other}", self.tag),
            }
        }
        true
    }
}

/// Connect this thread's clients, then pipeline on all of them in rounds
/// until the server has closed every one. Ready after the first round.
/// Each round ends with a tick on `ticks`: the pace of the handle senders.
fn clients(t: usize, addr: SocketAddr, ready: Sender<()>, ticks: Sender<()>) {
    let started = Instant::now();
    let mut pipers: Vec<Piper> = (0..CLIENTS_PER_THREAD)
        .map(|i| {
            let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            stream.set_write_timeout(Some(TIMEOUT)).unwrap();
            stream.set_nodelay(true).unwrap();
            let tag = format!("client {t}.{i}");
            Piper {
                stream,
                tag,
                sent: 0,
                echoed: 0,
            }
        })
        .collect();
    let mut first_round = true;
    while !pipers.is_empty() {
        assert!(started.elapsed() < BOUND, "client thread {t} still running");
        let mut open = vec![true; pipers.len()];
        for (p, o) in pipers.iter_mut().zip(&mut open) {
            *o = p.write_batch();
        }
        for (p, o) in pipers.iter_mut().zip(&mut open) {
            *o = *o && p.read_replies();
        }
        if first_round {
            assert!(open.iter().all(|o| *o), "a client closed before shutdown");
            let _ = ready.send(());
            first_round = false;
        }
        let mut o = open.into_iter();
        pipers.retain(|_| o.next().unwrap());
        let _ = ticks.send(());
    }
}

/// Ping-pong datagrams until `stop`; ready after the first echo.
fn udp_peer(addr: SocketAddr, stop: Arc<AtomicBool>, ready: Sender<()>) {
    let started = Instant::now();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    // A bound on each wait for an echo (UDP has no close to wait for).
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut signalled = false;
    let mut buf = vec![0; 65_536];
    for n in 0u64.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        assert!(started.elapsed() < BOUND, "UDP peer still running");
        let _ = socket.send_to(&frame(1, format!("udp {n}").as_bytes()), addr);
        while let Ok(got) = socket.recv(&mut buf) {
            if got >= 8 && buf[4..8] == 2u32.to_le_bytes() {
                if !signalled {
                    let _ = ready.send(());
                    signalled = true;
                }
                break;
            }
        }
    }
    assert!(signalled, "the UDP peer never had an echo");
}

/// What the dialer made and closed itself.
#[derive(Default)]
struct Dialed {
    ids: Vec<ConnId>,
    closed_by_us: HashSet<ConnId>,
}

/// Dial the backend, send one message and wait for its echo (or the
/// connection's close), keeping `DIALS_OPEN` open, until dials fail with
/// `ShutDown`. Ready after 20 round trips.
fn dialer(hub: Hub, backend: SocketAddr, events: Receiver<ConnId>, ready: Sender<()>) -> Dialed {
    let mut out = Dialed::default();
    let mut open = VecDeque::new();
    for n in 0..MAX_DIALS {
        let handle = match hub.dial(Dial::new(backend)) {
            Ok(h) => h,
            Err(Error::ShutDown) => return out,
            Err(e) => panic!("dial {n}: {e}"),
        };
        out.ids.push(handle.id());
        match handle.send(1, b"dialed") {
            Ok(()) | Err(Error::ShutDown) => {}
            Err(e) => panic!("send on dial {n}: {e}"),
        }
        loop {
            let id = events
                .recv_timeout(TIMEOUT)
                .expect("a dialed connection neither echoed nor closed");
            if id == handle.id() {
                break;
            }
        }
        open.push_back(handle);
        if open.len() > DIALS_OPEN {
            let oldest = open.pop_front().unwrap();
            oldest.close();
            out.closed_by_us.insert(oldest.id());
        }
        if n == 20 {
            let _ = ready.send(());
        }
    }
    panic!("{MAX_DIALS} dials and no shutdown");
}

/// Send to every connection through its handle, a round per tick of the
/// clients (or per 100 ms once they stop ticking), until sends fail with
/// `ShutDown`. Ready after the first round. Unpaced, two threads flooding
/// the inboxes of a two-core machine starve the clients instead.
fn sender(hub: Hub, ticks: Receiver<()>, ready: Sender<()>) {
    let started = Instant::now();
    let mut signalled = false;
    loop {
        assert!(started.elapsed() < BOUND, "handle sender still running");
        let _ = ticks.recv_timeout(Duration::from_millis(100));
        for handle in hub.connections() {
            // Other errors (a connection closing meanwhile, a full inbox)
            // are counted by the server; only shutdown ends the sender.
            if let Err(Error::ShutDown) = handle.send(3, b"from a handle") {
                return;
            }
        }
        if !signalled {
            let _ = ready.send(());
            signalled = true;
        }
    }
}

fn wait_ready(ready: &Receiver<()>, n: usize, what: &str) {
    for i in 0..n {
        ready
            .recv_timeout(BOUND)
            .unwrap_or_else(|_| panic!("{what}: {i} of {n} ready"));
    }
}

#[test]
fn shutdown_under_load_closes_everything_once_and_leaks_nothing() {
    init_logs();
    panics::record();
    let fds_before = open_fds();

    let backend = Server::builder()
        .event_loops(1)
        .route(1, |ctx: &mut Context<'_>| ctx.reply(2, ctx.body()))
        .route(3, |_ctx: &mut Context<'_>| {})
        .bind("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();

    let (open_tx, opens) = unbounded();
    let (close_tx, closes) = unbounded();
    let (dial_tx, dial_events) = unbounded();
    let echo_tx = dial_tx.clone();
    let server = Server::builder()
        .event_loops(2)
        .route(1, |ctx: &mut Context<'_>| ctx.reply(2, ctx.body()))
        // The backend's echoes on dialed connections.
        .route(2, move |ctx: &mut Context<'_>| {
            let _ = echo_tx.send(ctx.id());
        })
        .route(3, |_ctx: &mut Context<'_>| {})
        .on_open(move |s| {
            let _ = open_tx.send(s.id());
        })
        .on_close(move |s, reason| {
            let _ = close_tx.send((s.id(), reason.clone()));
            let _ = dial_tx.send(s.id());
        })
        .bind("127.0.0.1:0")
        .unwrap()
        .bind_udp("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let (addr, udp_addr) = (server.local_addr(), server.udp_addrs()[0]);
    let hub = server.hub();

    let (done_tx, done) = unbounded();
    let (ready_tx, ready) = unbounded();
    let (tick_tx, ticks) = unbounded();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..CLIENT_THREADS {
        let (r, tick) = (ready_tx.clone(), tick_tx.clone());
        let run = move || clients(t, addr, r, tick);
        threads.push(spawn(format!("clients-{t}"), &done_tx, run));
    }
    for p in 0..UDP_PEERS {
        let (r, stop) = (ready_tx.clone(), stop.clone());
        threads.push(spawn(format!("udp-{p}"), &done_tx, move || {
            udp_peer(udp_addr, stop, r)
        }));
    }
    wait_ready(&ready, CLIENT_THREADS + UDP_PEERS, "clients and UDP peers");
    assert!(server.connection_count() >= CLIENTS + UDP_PEERS);

    // Then the threads that act through handles, once the clients run.
    let (dialed_tx, dialed) = unbounded();
    let (h, b, r) = (hub.clone(), backend.local_addr(), ready_tx.clone());
    threads.push(spawn("dialer".into(), &done_tx, move || {
        let _ = dialed_tx.send(dialer(h, b, dial_events, r));
    }));
    for s in 0..SENDER_THREADS {
        let (h, r, ticks) = (hub.clone(), ready_tx.clone(), ticks.clone());
        threads.push(spawn(format!("sender-{s}"), &done_tx, move || {
            sender(h, ticks, r)
        }));
    }
    wait_ready(&ready, 1 + SENDER_THREADS, "dialer and handle senders");

    let started = Instant::now();
    let result = server.shutdown(DEADLINE);
    let took = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert!(result.is_ok(), "shutdown under load: {result:?}");
    assert!(took <= DEADLINE + SLACK, "shutdown took {took:?}");

    // Every thread of the test ends, and none panicked.
    let end = Instant::now() + BOUND;
    for i in 0..threads.len() {
        if done.recv_deadline(end).is_err() {
            panic!(
                "{i} of {} test threads ended within {BOUND:?}",
                threads.len()
            );
        }
    }
    for t in threads {
        let name = t.thread().name().unwrap_or("?").to_string();
        assert!(t.join().is_ok(), "thread {name} panicked");
    }
    let dialed = dialed.try_recv().expect("the dialer's report");
    assert!(dialed.ids.len() > 20, "{} dials", dialed.ids.len());

    eprintln!(
        "shutdown took {took:?}; {} dials ({} closed by the dialer)",
        dialed.ids.len(),
        dialed.closed_by_us.len()
    );
    check_hooks(&opens, &closes, &dialed);
    assert_eq!(hub.connection_count(), 0);
    assert_eq!(hub.stats().connections, 0, "{}", hub.stats());
    drop(hub);

    backend.shutdown(DEADLINE).expect("backend shutdown");
    let seen = panics::seen();
    assert!(seen.is_empty(), "panics: {seen:#?}");
    let fds_after = open_fds();
    assert_eq!(fds_after, fds_before, "descriptors before and after differ");
}

/// `on_close` once for every connection that opened or was dialed, and
/// for nothing else, with the reason shutdown (or the dialer's close).
fn check_hooks(
    opens: &Receiver<ConnId>,
    closes: &Receiver<(ConnId, CloseReason)>,
    dialed: &Dialed,
) {
    let opened: Vec<ConnId> = opens.try_iter().collect();
    let opened_set: HashSet<ConnId> = opened.iter().copied().collect();
    assert_eq!(opened_set.len(), opened.len(), "on_open twice for an id");
    assert!(
        opened.len() >= CLIENTS + UDP_PEERS,
        "{} on_open calls",
        opened.len()
    );
    let dialed_set: HashSet<ConnId> = dialed.ids.iter().copied().collect();
    let closed: Vec<(ConnId, CloseReason)> = closes.try_iter().collect();
    let mut closed_set = HashSet::new();
    for (id, reason) in &closed {
        assert!(closed_set.insert(*id), "on_close twice for {id}");
        assert!(
            opened_set.contains(id) || dialed_set.contains(id),
            "on_close for {id}, never opened nor dialed"
        );
        let by_us = dialed.closed_by_us.contains(id);
        assert!(
            matches!(reason, CloseReason::Shutdown)
                || (by_us && matches!(reason, CloseReason::Local)),
            "{id} closed with {reason}"
        );
    }
    let missing: Vec<&ConnId> = opened_set
        .union(&dialed_set)
        .filter(|id| !closed_set.contains(*id))
        .collect();
    assert!(missing.is_empty(), "no on_close for {missing:?}");
}
