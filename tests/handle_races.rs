//! Handle races (issue 26, item 4): clients connect and disconnect in a
//! tight bounded loop, so slots are freed and taken again at once, while
//! other threads hammer handles of fresh, closing and long-closed
//! connections with sends, closes, room joins and publishes, and
//! requests.
//!
//! The server tells each client its `ConnId` on open; every body a
//! hammer sends names the id it was addressed to. A client checks that
//! everything it gets names its own id: a stale handle that reached the
//! slot's next occupant fails the test there. A handle whose connection
//! is known closed (its `on_close` ran) must be refused outright:
//! `send_confirmed` and `join` say `Closed`, a request fails.
//!
//! It installs a panic hook (process-wide state), so it is a test binary
//! of its own.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{CloseReason, ConnId, Context, Error, Hub, SeqPacker, Server};

use common::race::{bump, next};
use common::{init_logs, panics, wait_until, TIMEOUT};

const CLIENT_THREADS: usize = 3;
/// Connections each client thread opens (and closes) in all.
const CONNECTIONS_PER_THREAD: usize = 600;
/// Connections each client thread keeps open at once.
const WINDOW: usize = 4;
const HAMMERS: usize = 3;
/// Each hammer's bound on operations (the clients end it first).
const MAX_OPS: u64 = 2_000_000;
const BOUND: Duration = Duration::from_secs(60);

const GREETING: u32 = 100;
const PING: u32 = 1;
const PONG: u32 = 2;
const SEND: u32 = 10;
const PUBLISH: u32 = 11;
const REQUEST: u32 = 200;

/// Ids that opened and ids that closed, as the hooks saw them.
#[derive(Default)]
struct Registry {
    opened: Mutex<Vec<ConnId>>,
    closed: Mutex<Vec<ConnId>>,
}

/// What the clients and hammers saw, for the assertions that the
/// scenario really ran (each kind of message got through, stale handles
/// were refused).
#[derive(Default)]
struct Counts {
    got: [AtomicU64; 3],
    stale_refused: AtomicU64,
    requests_started: AtomicU64,
    requests_done: AtomicU64,
    replies_ok: AtomicU64,
}

/// A sequence-packer frame: length, id, seq (u32 LE each), body.
fn frame(id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + body.len());
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// A body naming `to`: its id as a u128 (LE), then a counter.
fn naming(to: ConnId, n: u64) -> Vec<u8> {
    let mut v = to.to_u128().to_le_bytes().to_vec();
    v.extend_from_slice(&n.to_le_bytes());
    v
}

struct RaceClient {
    stream: TcpStream,
    own: [u8; 16],
}

impl RaceClient {
    /// Connect and read the greeting, which must come first.
    fn connect(addr: SocketAddr) -> RaceClient {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = RaceClient {
            stream,
            own: [0; 16],
        };
        let (id, _, body) = c.read().expect("the greeting (a close flushes it first)");
        assert_eq!(id, GREETING, "first message {id}, not the greeting");
        c.own = body[..16].try_into().unwrap();
        c
    }

    /// One frame; `None` once the server closed.
    fn read(&mut self) -> Option<(u32, u32, Vec<u8>)> {
        let mut head = [0u8; 12];
        let mut fill = |buf: &mut [u8]| match self.stream.read_exact(buf) {
            Ok(()) => true,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("nothing from the server, and no close, within {TIMEOUT:?}")
            }
            Err(_) => false,
        };
        if !fill(&mut head) {
            return None;
        }
        let word = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().unwrap());
        let (len, id, seq) = (word(0) as usize, word(4), word(8));
        let mut body = vec![0; len];
        fill(&mut body).then_some((id, seq, body))
    }

    /// Ping and read until the pong, checking that every message names
    /// this connection; false once the server closed it.
    fn ping(&mut self, counts: &Counts) -> bool {
        if self.stream.write_all(&frame(PING, 0, b"")).is_err() {
            return false;
        }
        while let Some((id, seq, body)) = self.read() {
            let own = self.own;
            let names_me = body.len() >= 16 && body[..16] == own;
            let who = u128::from_le_bytes(own);
            assert!(
                names_me,
                "connection {who:#x} got id {id} meant for another: {body:?}"
            );
            match id {
                PONG => return true,
                SEND => bump(&counts.got[0]),
                PUBLISH => bump(&counts.got[1]),
                REQUEST => {
                    bump(&counts.got[2]);
                    if self.stream.write_all(&frame(REQUEST, seq, &body)).is_err() {
                        return false;
                    }
                }
                other => panic!("connection {who:#x} got unexpected id {other}"),
            }
        }
        false
    }
}

/// Open `CONNECTIONS_PER_THREAD` connections, `WINDOW` at a time: each
/// pings on arrival and once more before it is dropped.
fn clients(addr: SocketAddr, counts: &Counts) {
    let started = Instant::now();
    let mut window = std::collections::VecDeque::new();
    for _ in 0..CONNECTIONS_PER_THREAD {
        assert!(started.elapsed() < BOUND, "client thread still running");
        let mut c = RaceClient::connect(addr);
        if c.ping(counts) {
            window.push_back(c);
        }
        if window.len() > WINDOW {
            let mut oldest = window.pop_front().unwrap();
            oldest.ping(counts);
        }
    }
    for mut c in window {
        c.ping(counts);
    }
}

/// Pick an id: half the time among the newest (open, closing, or just
/// closed with its slot taken again), else any id ever opened.
fn pick(ids: &Mutex<Vec<ConnId>>, rng: &mut u64) -> Option<ConnId> {
    let ids = ids.lock().unwrap();
    let n = ids.len() as u64;
    if n == 0 {
        return None;
    }
    let r = next(rng);
    let i = if r & 1 == 0 {
        n - 1 - (r >> 1) % n.min(8)
    } else {
        (r >> 1) % n
    };
    Some(ids[i as usize])
}

fn room_of(id: ConnId) -> String {
    format!("c-{:x}", id.to_u128())
}

fn hammer(h: usize, hub: Hub, reg: Arc<Registry>, counts: Arc<Counts>, stop: Arc<AtomicBool>) {
    let mut rng = 0x9E37_79B9_7F4A_7C15 ^ (h as u64 + 1);
    for n in 0..MAX_OPS {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        if n % 64 == 0 {
            thread::yield_now(); // leave the loops and clients their share
        }
        let op = next(&mut rng) % 32;
        if op < 4 {
            stale_is_refused(&hub, &reg, &counts, &mut rng, n);
            continue;
        }
        let Some(to) = pick(&reg.opened, &mut rng) else {
            continue;
        };
        let handle = hub.conn(to);
        let body = naming(to, n);
        match op {
            4..=15 => drop(handle.send(SEND, &body)),
            16..=17 => drop(handle.send_bytes(SEND, body.into())),
            18..=23 => {
                let room = room_of(to);
                drop(handle.join(&room));
                drop(hub.publish(&room, PUBLISH, &body));
            }
            24 => drop(handle.leave(&room_of(to))),
            25..=30 => {
                let (c, want) = (counts.clone(), body.clone());
                bump(&counts.requests_started);
                let sent = handle.request_with(REQUEST, &body, TIMEOUT, move |reply| {
                    if let Ok(msg) = reply {
                        assert!(msg.body[..] == want[..], "reply to another request");
                        bump(&c.replies_ok);
                    }
                    bump(&c.requests_done);
                });
                if sent.is_err() {
                    bump(&counts.requests_done);
                }
            }
            // Rarely: closing a fresh one mostly cuts it before its pong.
            _ if next(&mut rng) % 8 == 0 => handle.close(),
            _ => {}
        }
    }
}

/// A handle of a connection whose `on_close` ran is refused: its send,
/// its join and its request all fail, whoever holds its slot now.
fn stale_is_refused(hub: &Hub, reg: &Registry, counts: &Arc<Counts>, rng: &mut u64, n: u64) {
    let Some(gone) = pick(&reg.closed, rng) else {
        return;
    };
    let handle = hub.conn(gone);
    match next(rng) % 3 {
        0 => match handle.send_confirmed(SEND, naming(gone, n)).wait() {
            Err(Error::Closed) => bump(&counts.stale_refused),
            Err(Error::InboxFull) => {}
            other => panic!("send to {gone}, closed: {other:?}"),
        },
        1 => match handle.join(&room_of(gone)).wait() {
            Err(Error::Closed) => bump(&counts.stale_refused),
            Err(Error::InboxFull) => {}
            other => panic!("join of {gone}, closed: {other:?}"),
        },
        _ => {
            let c = counts.clone();
            bump(&counts.requests_started);
            let sent = handle.request_with(REQUEST, naming(gone, n), TIMEOUT, move |reply| {
                assert!(reply.is_err(), "request to {gone}, closed, answered");
                bump(&c.stale_refused);
                bump(&c.requests_done);
            });
            if sent.is_err() {
                bump(&counts.requests_done);
            }
        }
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::Builder::new().name(name).spawn(f).expect("spawn")
}

#[test]
fn stale_and_fresh_handles_never_reach_the_wrong_connection() {
    init_logs();
    panics::record();
    let reg = Arc::new(Registry::default());
    let counts = Arc::new(Counts::default());
    let (close_tx, closes) = unbounded();
    let (r1, r2) = (reg.clone(), reg.clone());
    let server = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .route(PING, |ctx: &mut Context<'_>| {
            ctx.reply(PONG, ctx.id().to_u128().to_le_bytes())
        })
        // Replies that come after their request failed.
        .route(REQUEST, |_ctx: &mut Context<'_>| {})
        .on_open(move |s| {
            let greeting = s.id().to_u128().to_le_bytes();
            s.send(GREETING, greeting).expect("greeting");
            r1.opened.lock().unwrap().push(s.id());
        })
        .on_close(move |s, reason| {
            r2.closed.lock().unwrap().push(s.id());
            let _ = close_tx.send((s.id(), reason.clone()));
        })
        .bind("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let (addr, hub) = (server.local_addr(), server.hub());
    let started = Instant::now();

    let stop = Arc::new(AtomicBool::new(false));
    let hammers: Vec<_> = (0..HAMMERS)
        .map(|h| {
            let (hub, reg, c, stop) = (hub.clone(), reg.clone(), counts.clone(), stop.clone());
            spawn(format!("hammer-{h}"), move || hammer(h, hub, reg, c, stop))
        })
        .collect();
    let clients: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let c = counts.clone();
            spawn(format!("clients-{t}"), move || clients(addr, &c))
        })
        .collect();
    let (done_tx, done) = unbounded();
    let watcher = thread::spawn(move || {
        let ok = clients.into_iter().all(|t| t.join().is_ok());
        let _ = done_tx.send(ok);
    });
    let clients_ok = done.recv_timeout(BOUND).expect("clients ended in time");
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let hammers_ok = hammers.into_iter().all(|t| t.join().is_ok());
    assert!(
        clients_ok && hammers_ok,
        "a thread panicked: {:#?}",
        panics::seen()
    );

    let c = &counts;
    wait_until("every request to end", || {
        c.requests_done.load(Ordering::SeqCst) == c.requests_started.load(Ordering::SeqCst)
    });
    server.shutdown(Duration::from_secs(5)).expect("shutdown");
    let took = started.elapsed();
    check_closes(&reg, &closes);
    let seen = panics::seen();
    assert!(seen.is_empty(), "panics: {seen:#?}");
    check_coverage(&reg, c, took);
}

/// `on_close` once for every connection that opened, none other, and
/// no handler panic among the reasons.
fn check_closes(reg: &Registry, closes: &Receiver<(ConnId, CloseReason)>) {
    let opened = reg.opened.lock().unwrap().clone();
    let mut open_set = std::collections::HashSet::new();
    for id in &opened {
        assert!(open_set.insert(*id), "on_open twice for {id}");
    }
    assert_eq!(opened.len(), CLIENT_THREADS * CONNECTIONS_PER_THREAD);
    let mut closed_set = std::collections::HashSet::new();
    for (id, reason) in closes.try_iter() {
        assert!(closed_set.insert(id), "on_close twice for {id}");
        assert!(open_set.contains(&id), "on_close for {id}, never opened");
        assert!(
            !matches!(reason, CloseReason::HandlerPanic | CloseReason::Protocol(_)),
            "{id} closed with {reason}"
        );
    }
    assert_eq!(closed_set, open_set, "on_close missing for some");
}

/// The scenario ran: slots were reused, stale handles were refused, and
/// each kind of message reached its connection.
fn check_coverage(reg: &Registry, c: &Counts, took: Duration) {
    let opened = reg.opened.lock().unwrap();
    let slots: std::collections::HashSet<u128> =
        opened.iter().map(|id| id.to_u128() >> 32).collect();
    let load = |a: &AtomicU64| a.load(Ordering::SeqCst);
    let got = [load(&c.got[0]), load(&c.got[1]), load(&c.got[2])];
    eprintln!(
        "{} connections on {} slots in {took:?}; got sends/publishes/requests {got:?}; \
         {} replies matched; {} stale refusals",
        opened.len(),
        slots.len(),
        load(&c.replies_ok),
        load(&c.stale_refused),
    );
    assert!(slots.len() * 4 < opened.len(), "slots were hardly reused");
    assert!(
        got.iter().all(|n| *n > 0),
        "a kind never got through: {got:?}"
    );
    assert!(load(&c.replies_ok) > 0, "no request answered");
    assert!(load(&c.stale_refused) > 0, "no stale handle tried");
}
