//! Reconnect races (issue 26, item 4): dialed links with a tight
//! reconnect policy to a server that kicks every connection after a few
//! messages, while threads send, request, `reconnect_now` and close links
//! for good (dialing new ones, which take the freed slots), and hammer
//! the handles of links already closed.
//!
//! Every body names the link (its `ConnId` on the dialing side) and the
//! thread that sent it, with a counter that only grows. The accepting
//! server checks that all it gets on one connection names one link (a
//! stale handle's message on another link's connection fails the test),
//! and that each thread's counters arrive strictly increasing per link
//! across its reconnects (messages may be lost with a connection, never
//! repeated nor reordered). Replies must answer their own request; a link
//! closed for good refuses sends, requests and `reconnect_now`.
//!
//! It installs a panic hook (process-wide state), so it is a test binary
//! of its own.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use netloom::{ConnHandle, ConnId, Context, Dial, Error, Hub, Reconnect, SeqPacker, Server};

use common::race::{bump, next};
use common::{init_logs, panics, wait_until, TIMEOUT};

const LINKS: usize = 8;
const HAMMERS: usize = 3;
/// Each hammer's operations (and its time, whichever ends first).
const OPS: u64 = 40_000;
const HAMMER_TIME: Duration = Duration::from_secs(8);
/// The accepting server closes a connection after this many messages.
const KICK_AFTER: u32 = 25;
const DATA: u32 = 10;
const REQUEST: u32 = 20;
const REPLY: u32 = 21;

/// What the accepting server saw.
#[derive(Default)]
struct Seen {
    /// Per accepted connection: the link its first message named, and
    /// how many it got.
    conns: Mutex<HashMap<ConnId, (u128, u32)>>,
    /// Per (link, thread): the last counter.
    last: Mutex<HashMap<(u128, u8), u64>>,
    violations: Mutex<Vec<String>>,
    kicks: AtomicU64,
    delivered: AtomicU64,
}

/// What the dialing side saw.
#[derive(Default)]
struct Links {
    live: Mutex<Vec<ConnHandle>>,
    /// Links closed for good whose `on_close` ran.
    closed: Mutex<Vec<ConnId>>,
    dialed: AtomicU64,
    reconnects: AtomicU64,
    stale_refused: AtomicU64,
    requests_started: AtomicU64,
    requests_done: AtomicU64,
    replies_ok: AtomicU64,
}

/// A body: the link's id (u128 LE), the thread, the counter.
fn body(link: ConnId, thread: u8, n: u64) -> Vec<u8> {
    let mut v = link.to_u128().to_le_bytes().to_vec();
    v.push(thread);
    v.extend_from_slice(&n.to_le_bytes());
    v
}

fn parse(b: &[u8]) -> Option<(u128, u8, u64)> {
    let link = u128::from_le_bytes(b.get(..16)?.try_into().ok()?);
    let n = u64::from_le_bytes(b.get(17..25)?.try_into().ok()?);
    Some((link, *b.get(16)?, n))
}

/// The accepting side's check of one message on connection `conn`;
/// whether it is time to kick the connection.
fn check(seen: &Seen, conn: ConnId, b: &[u8]) -> bool {
    let Some((link, thread, n)) = parse(b) else {
        seen.violations
            .lock()
            .unwrap()
            .push(format!("bad body {b:?}"));
        return false;
    };
    bump(&seen.delivered);
    let mut conns = seen.conns.lock().unwrap();
    let entry = conns.entry(conn).or_insert((link, 0));
    entry.1 += 1;
    if entry.0 != link {
        seen.violations.lock().unwrap().push(format!(
            "connection {conn} of link {:#x} got a message of link {link:#x}",
            entry.0
        ));
    }
    let kick = entry.1 % KICK_AFTER == 0;
    drop(conns);
    let mut last = seen.last.lock().unwrap();
    let prev = last.insert((link, thread), n);
    if prev.is_some_and(|p| p >= n) {
        seen.violations.lock().unwrap().push(format!(
            "link {link:#x} thread {thread}: {n} after {prev:?} (repeated or reordered)"
        ));
    }
    kick
}

fn dial(hub: &Hub, addr: std::net::SocketAddr, links: &Links) -> ConnHandle {
    let policy = Reconnect {
        initial: Duration::from_millis(1),
        factor: 1.0,
        max: Duration::from_millis(2),
        ..Reconnect::default()
    };
    let link = hub.dial(Dial::new(addr).reconnect(policy)).expect("dial");
    bump(&links.dialed);
    link
}

fn hammer(t: u8, hub: Hub, addr: std::net::SocketAddr, links: Arc<Links>) {
    let mut rng = 0x9E37_79B9_7F4A_7C15 ^ (u64::from(t) + 1);
    let started = Instant::now();
    for n in 0..OPS {
        if started.elapsed() > HAMMER_TIME {
            return;
        }
        if n % 64 == 0 {
            thread::yield_now(); // leave the loops their share
        }
        let r = next(&mut rng);
        let op = r % 64;
        if op < 4 {
            stale_is_refused(&hub, &links, t, n, r);
            continue;
        }
        let slot = (r >> 8) as usize % LINKS;
        let link = links.live.lock().unwrap()[slot].clone();
        let id = link.id();
        match op {
            4..=44 => drop(link.send(DATA, body(id, t, n))),
            45..=54 => {
                let (l, want) = (links.clone(), body(id, t, n));
                bump(&links.requests_started);
                let sent = link.request_with(REQUEST, want.clone(), TIMEOUT, move |reply| {
                    if let Ok(msg) = reply {
                        assert!(msg.body[..] == want[..], "a reply to another request");
                        bump(&l.replies_ok);
                    }
                    bump(&l.requests_done);
                });
                if sent.is_err() {
                    bump(&links.requests_done);
                }
            }
            55..=61 => drop(link.reconnect_now()),
            // Rarely: close the link for good and dial a new one in its place.
            // (Under the lock: two hammers never replace one link twice.)
            _ if r % 7 == 0 => {
                let mut live = links.live.lock().unwrap();
                if live[slot].id() == id {
                    link.close();
                    live[slot] = dial(&hub, addr, &links);
                }
            }
            _ => {}
        }
    }
}

/// A link whose `on_close` ran refuses everything, whatever link holds
/// its slot now.
fn stale_is_refused(hub: &Hub, links: &Arc<Links>, t: u8, n: u64, r: u64) {
    let gone = {
        let closed = links.closed.lock().unwrap();
        if closed.is_empty() {
            return;
        }
        closed[(r >> 8) as usize % closed.len()]
    };
    let handle = hub.conn(gone);
    match (r >> 16) % 3 {
        0 => match handle.send_confirmed(DATA, body(gone, t, n)).wait() {
            Err(Error::Closed) => bump(&links.stale_refused),
            Err(Error::InboxFull) => {}
            other => panic!("send on {gone}, closed for good: {other:?}"),
        },
        1 => match handle.reconnect_now().wait() {
            Err(Error::Closed) => bump(&links.stale_refused),
            Err(Error::InboxFull) => {}
            other => panic!("reconnect_now of {gone}, closed for good: {other:?}"),
        },
        _ => {
            let l = links.clone();
            bump(&links.requests_started);
            let sent = handle.request_with(REQUEST, body(gone, t, n), TIMEOUT, move |reply| {
                assert!(
                    reply.is_err(),
                    "a request on {gone}, closed for good, answered"
                );
                bump(&l.stale_refused);
                bump(&l.requests_done);
            });
            if sent.is_err() {
                bump(&links.stale_refused);
                bump(&links.requests_done);
            }
        }
    }
}

#[test]
fn links_that_reconnect_under_fire_never_mix_repeat_or_reorder_messages() {
    init_logs();
    panics::record();
    let seen = Arc::new(Seen::default());
    let (s1, s2, s3) = (seen.clone(), seen.clone(), seen.clone());
    let server = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .route(DATA, move |ctx: &mut Context<'_>| {
            if check(&s1, ctx.id(), ctx.body()) {
                bump(&s1.kicks);
                ctx.close();
            }
        })
        .route(REQUEST, move |ctx: &mut Context<'_>| {
            let kick = check(&s2, ctx.id(), ctx.body());
            let _ = ctx.reply(REPLY, ctx.body());
            if kick {
                bump(&s2.kicks);
                ctx.close();
            }
        })
        .on_close(move |s, _| {
            s3.conns.lock().unwrap().remove(&s.id());
        })
        .bind("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let addr = server.local_addr();

    let links = Arc::new(Links::default());
    let (l1, l2) = (links.clone(), links.clone());
    let closes = Arc::new(Mutex::new(Vec::new()));
    let c1 = closes.clone();
    let client = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .route(REPLY, |_ctx: &mut Context<'_>| {}) // replies after their request failed
        .on_reconnect(move |_, _| bump(&l1.reconnects))
        .on_close(move |s, _| {
            c1.lock().unwrap().push(s.id());
            l2.closed.lock().unwrap().push(s.id());
        })
        .start()
        .unwrap();
    let hub = client.hub();
    *links.live.lock().unwrap() = (0..LINKS).map(|_| dial(&hub, addr, &links)).collect();

    let hammers: Vec<_> = (0..HAMMERS as u8)
        .map(|t| {
            let (hub, links) = (hub.clone(), links.clone());
            thread::Builder::new()
                .name(format!("hammer-{t}"))
                .spawn(move || hammer(t, hub, addr, links))
                .unwrap()
        })
        .collect();
    let hammers_ok = hammers.into_iter().all(|h| h.join().is_ok());
    assert!(hammers_ok, "a hammer panicked: {:#?}", panics::seen());

    for link in links.live.lock().unwrap().iter() {
        link.close();
    }
    let dialed = links.dialed.load(Ordering::SeqCst) as usize;
    wait_until("on_close of every link", || {
        closes.lock().unwrap().len() >= dialed
    });
    wait_until("every request to end", || {
        links.requests_done.load(Ordering::SeqCst) == links.requests_started.load(Ordering::SeqCst)
    });
    client
        .shutdown(Duration::from_secs(5))
        .expect("client shutdown");
    server
        .shutdown(Duration::from_secs(5))
        .expect("server shutdown");

    let closed = closes.lock().unwrap();
    let once: HashSet<_> = closed.iter().collect();
    assert_eq!(once.len(), closed.len(), "on_close twice for a link");
    assert_eq!(closed.len(), dialed, "on_close once for every link dialed");
    let violations = seen.violations.lock().unwrap();
    assert!(violations.is_empty(), "{violations:#?}");
    let p = panics::seen();
    assert!(p.is_empty(), "panics: {p:#?}");

    let load = |a: &AtomicU64| a.load(Ordering::SeqCst);
    eprintln!(
        "{dialed} links; {} delivered, {} kicks, {} reconnects, {} replies matched, \
         {} stale refusals",
        load(&seen.delivered),
        load(&seen.kicks),
        load(&links.reconnects),
        load(&links.replies_ok),
        load(&links.stale_refused),
    );
    // The scenario ran: links were kicked and came back, replies and
    // refusals happened, closed links' slots were dialed again.
    assert!(load(&seen.kicks) > 20, "hardly any kick");
    assert!(load(&links.reconnects) > 20, "hardly any reconnect");
    assert!(load(&links.replies_ok) > 0, "no request answered");
    assert!(load(&links.stale_refused) > 0, "no stale handle tried");
    assert!(dialed > LINKS, "no link closed for good and dialed again");
}
