//! Issue 14, what a newcomer porting the seeds' servers had to work
//! around: sends to a set of connections (`Hub::send_to`), shared
//! application state (`Builder::state`), code run on a connection's own
//! loop from another thread (`ConnHandle::run`) and sends whose fate the
//! caller learns (`ConnHandle::send_confirmed`). Real loopback sockets,
//! frames from literal bytes, every wait bounded.

use crossbeam_channel::{unbounded, Sender};
use netloom::{CloseReason, Context, HandlerResult, Next, Server};

use crate::common::{start, Client, TIMEOUT};

// ---------------------------------------------------------------------------
// Shared application state.
// ---------------------------------------------------------------------------

/// Where the state's users report that they saw it.
struct Seen(Sender<&'static str>);
struct Greeting(&'static str);

/// `Builder::state` values reach `on_open`, global and group middleware,
/// handlers on both loops and `on_close` through their session, with no
/// `Arc` captured by any closure. Without the state every lookup gives
/// `None` and nothing is reported.
#[test]
fn state_reaches_hooks_middleware_and_handlers_on_every_loop() {
    fn guard(ctx: &mut Context<'_>, next: Next<'_>) -> HandlerResult {
        if let Some(seen) = ctx.state::<Seen>() {
            let _ = seen.0.send("group middleware");
        }
        next.run(ctx)
    }
    let (tx, seen) = unbounded();
    let server = start(
        Server::builder()
            .event_loops(2)
            .state(Seen(tx))
            .state(Greeting("first"))
            .state(Greeting("hello")) // replaces the first
            .on_open(|s| {
                let _ = s.state::<Seen>().map(|t| t.0.send("on_open"));
            })
            .on_close(|s, _reason: &CloseReason| {
                let _ = s.state::<Seen>().map(|t| t.0.send("on_close"));
            })
            .middleware(|ctx, next| {
                let _ = ctx.state::<Seen>().map(|t| t.0.send("middleware"));
                next.run(ctx)
            })
            .group([guard], |g| {
                g.route(1, |ctx| {
                    let greeting = ctx.state::<Greeting>().map_or("none", |g| g.0);
                    // Held across a change to the connection's data.
                    ctx.data_mut().insert(7u32);
                    let _ = ctx.state::<Seen>().map(|t| t.0.send("handler"));
                    ctx.reply(1, greeting)
                })
            }),
    );
    let next = || seen.recv_timeout(TIMEOUT).expect("a report");
    for _ in 0..2 {
        let mut c = Client::connect(server.local_addr());
        assert_eq!(next(), "on_open");
        c.send(1, b"");
        assert_eq!(c.recv(), (1, b"hello".to_vec()));
        assert_eq!(
            [next(), next(), next()],
            ["middleware", "group middleware", "handler"]
        );
        drop(c);
        assert_eq!(next(), "on_close");
    }
    server.shutdown(TIMEOUT).unwrap();
}
