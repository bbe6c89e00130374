//! The deprecated names of 0.1.0, kept for one release, still do what
//! they did, over a real server on two loops: `Session::set_data` and
//! `remove_data` (now `data_mut().insert` / `remove`), `Context::set`,
//! `get` and `take` (now `values_mut().insert`, `values().get`,
//! `values_mut().remove`).
#![allow(deprecated)]

use netloom::{Context, HandlerResult, Next, Server};

use crate::common::{start, Client, TIMEOUT};

struct Visits(u32);
struct UserId(u64);

/// Passes the user id down with the old `ctx.set`.
fn auth(ctx: &mut Context<'_>, next: Next<'_>) -> HandlerResult {
    ctx.set(UserId(7));
    next.run(ctx)
}

#[test]
fn the_deprecated_data_and_value_names_still_work() {
    let server = start(
        Server::builder()
            .event_loops(2)
            .on_open(|session| {
                session.set_data(Visits(0));
            })
            .middleware(auth)
            // Replies "uid visits", counting visits in the connection's data.
            .route(1, |ctx| {
                let uid = ctx.get::<UserId>().map_or(0, |u| u.0);
                let visits = ctx.data().get::<Visits>().map_or(0, |v| v.0) + 1;
                ctx.set_data(Visits(visits));
                ctx.reply(1, format!("{uid} {visits}"))
            })
            // Takes the value (then it is gone) and the data (likewise).
            .route(2, |ctx| {
                let taken = ctx.take::<UserId>().map(|u| u.0);
                let again = ctx.get::<UserId>().is_some();
                let data = ctx.remove_data::<Visits>().map(|v| v.0);
                let data_again = ctx.data().get::<Visits>().is_some();
                ctx.reply(2, format!("{taken:?} {again} {data:?} {data_again}"))
            }),
    );
    // One client per loop.
    for _ in 0..2 {
        let mut c = Client::connect(server.local_addr());
        c.send(1, b"");
        assert_eq!(c.recv(), (1, b"7 1".to_vec()));
        c.send(1, b"");
        assert_eq!(c.recv(), (1, b"7 2".to_vec()));
        c.send(2, b"");
        assert_eq!(c.recv(), (2, b"Some(7) false Some(2) false".to_vec()));
    }
    server.shutdown(TIMEOUT).unwrap();
}
