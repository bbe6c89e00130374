//! Middleware and user data: global then group middleware around the
//! handler, an auth middleware that short-circuits, and user data set in
//! `on_open`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::unbounded;
use netloom::{CloseReason, Context, Next, Server};

use super::{assert_eof, local_addr};
use crate::common::{frame, start, start_tracked, Client, TIMEOUT};

type Log = Arc<Mutex<Vec<&'static str>>>;

fn logging(
    log: &Log,
    before: &'static str,
    after: &'static str,
) -> impl Fn(&mut Context<'_>, Next<'_>) -> netloom::HandlerResult + Send + Sync + 'static {
    let log = log.clone();
    move |ctx: &mut Context<'_>, next: Next<'_>| {
        log.lock().unwrap().push(before);
        let result = next.run(ctx);
        log.lock().unwrap().push(after);
        result
    }
}

#[test]
fn middleware_runs_global_then_group_in_order_around_the_handler() {
    let log: Log = Arc::default();
    let (h1, h2) = (log.clone(), log.clone());
    let server = start(
        Server::builder()
            .event_loops(2)
            .middleware(logging(&log, "g1-before", "g1-after"))
            // A route declared between global middleware still gets both.
            .route(11, move |ctx| {
                h1.lock().unwrap().push("plain-handler");
                ctx.reply(11, b"plain")
            })
            .middleware(logging(&log, "g2-before", "g2-after"))
            // Middleware that captures goes in with `Group::middleware`.
            .group([], |g| {
                g.middleware(logging(&log, "grp-before", "grp-after"))
                    .middleware(logging(&log, "grp2-before", "grp2-after"))
                    .route(10, move |ctx| {
                        h2.lock().unwrap().push("handler");
                        ctx.reply(10, b"grouped")
                    })
            }),
    );
    let mut c = Client::connect(server.local_addr());

    c.send(10, b"");
    assert_eq!(c.recv(), (10, b"grouped".to_vec()));
    assert_eq!(
        std::mem::take(&mut *log.lock().unwrap()),
        [
            "g1-before",
            "g2-before",
            "grp-before",
            "grp2-before",
            "handler",
            "grp2-after",
            "grp-after",
            "g2-after",
            "g1-after"
        ]
    );

    c.send(11, b"");
    assert_eq!(c.recv(), (11, b"plain".to_vec()));
    assert_eq!(
        std::mem::take(&mut *log.lock().unwrap()),
        [
            "g1-before",
            "g2-before",
            "plain-handler",
            "g2-after",
            "g1-after"
        ]
    );
}

struct LoggedIn(u64);
struct UserId(u64);

#[test]
fn auth_middleware_short_circuits_and_passes_values_to_the_handler() {
    let handled = Arc::new(AtomicUsize::new(0));
    let seen = handled.clone();
    let logins = Arc::new(AtomicUsize::new(0));
    let login_count = logins.clone();
    let auth = |ctx: &mut Context<'_>, next: Next<'_>| -> netloom::HandlerResult {
        match ctx.data().get::<LoggedIn>().map(|l| l.0) {
            Some(uid) => {
                ctx.values_mut().insert(UserId(uid));
                next.run(ctx)
            }
            None => {
                ctx.reply(401, b"login first")?;
                ctx.close();
                Ok(())
            }
        }
    };
    let (server, mut closes) = start_tracked(
        Server::builder()
            .event_loops(2)
            .route(21, move |ctx| {
                login_count.fetch_add(1, Ordering::SeqCst);
                let uid = u64::from_le_bytes(ctx.body()[..].try_into()?);
                ctx.data_mut().insert(LoggedIn(uid));
                ctx.reply(21, b"welcome")?;
                Ok::<(), netloom::BoxError>(())
            })
            .group([auth], |g| {
                g.route(20, move |ctx| {
                    seen.fetch_add(1, Ordering::SeqCst);
                    let uid = ctx.values().get::<UserId>().map(|u| u.0);
                    ctx.reply(20, format!("secret for {uid:?}"))
                })
            }),
    );

    // Not logged in: 401, then the server closes; the handler never ran.
    let mut anon = Client::connect(server.local_addr());
    // A login pipelined behind the refused request is dropped with it
    // ("messages already received but not yet handled are dropped").
    let mut wire = frame(20, b"");
    wire.extend_from_slice(&frame(21, &9u64.to_le_bytes()));
    anon.send_raw(&wire);
    assert_eq!(anon.recv(), (401, b"login first".to_vec()));
    assert_eof(&mut anon);
    assert!(matches!(
        closes.reason_for(local_addr(&anon)),
        CloseReason::Local
    ));
    assert_eq!(handled.load(Ordering::SeqCst), 0);
    assert_eq!(logins.load(Ordering::SeqCst), 0, "pipelined login ran");

    // Logged in: the middleware's value reaches the handler.
    let mut user = Client::connect(server.local_addr());
    user.send(21, &7u64.to_le_bytes());
    assert_eq!(user.recv(), (21, b"welcome".to_vec()));
    user.send(20, b"");
    assert_eq!(user.recv(), (20, b"secret for Some(7)".to_vec()));
    assert_eq!(handled.load(Ordering::SeqCst), 1);
}

/// Set by on_open: the client's port as the server sees it.
struct OpenedAs(u16);

#[test]
fn user_data_set_in_on_open_is_seen_by_handlers_and_on_close() {
    let (closed_tx, closed) = unbounded::<(SocketAddr, Option<u16>)>();
    let server = start(
        Server::builder()
            .event_loops(2)
            .on_open(|session| {
                let port = session.peer_addr().port();
                session.data_mut().insert(OpenedAs(port));
            })
            .on_close(move |session, _| {
                let _ = closed_tx.send((
                    session.peer_addr(),
                    session.data().get::<OpenedAs>().map(|d| d.0),
                ));
            })
            .route(30, |ctx| {
                let port = ctx.data().get::<OpenedAs>().map_or(0, |d| d.0);
                ctx.reply(30, port.to_le_bytes())
            }),
    );
    let mut clients: Vec<Client> = (0..4)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    for c in clients.iter_mut() {
        let port = local_addr(c).port();
        c.send(30, b"");
        assert_eq!(c.recv(), (30, port.to_le_bytes().to_vec()));
    }
    let mut expected: HashSet<SocketAddr> = clients.iter().map(local_addr).collect();
    drop(clients);
    while !expected.is_empty() {
        let (addr, data) = closed.recv_timeout(TIMEOUT).expect("on_close ran");
        assert!(expected.remove(&addr), "unexpected on_close for {addr}");
        assert_eq!(data, Some(addr.port()), "user data lost before on_close");
    }
}
