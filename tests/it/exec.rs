//! Execution models (issue 21, item 1) over real connections: every model
//! keeps each connection's order under load on two loops (ids on the two
//! loops look alike), a blocking handler on the pool does not hold up
//! another connection of its loop, the logic thread never runs two
//! handlers at once, work that piles up pauses the reader (or closes a
//! link that may not pause), and a connection's data follows its work.

mod bound;
mod defects;
mod edges;
mod example;
mod lifecycle;
mod logic;
mod order;
#[cfg(target_os = "linux")]
mod workers;

use std::io::Write;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use netloom::{Context, Exec, Server};

use crate::common::{frame, start, Client, TIMEOUT};

/// Echo; a body starting with `s` sleeps 1 ms first (a handler that
/// blocks a little, shaking the order the pool finishes in).
fn echo_maybe_slow(ctx: &mut Context<'_>) -> netloom::Result<()> {
    if ctx.body().first() == Some(&b's') {
        thread::sleep(Duration::from_millis(1));
    }
    ctx.reply(ctx.msg_id(), ctx.body())
}

/// `clients` connections, each sending `per` messages in one burst, then
/// reading every reply: each reply must be its own message, in order.
fn order_holds(model: Exec, clients: usize, per: usize) {
    let server = start(
        Server::builder()
            .event_loops(2)
            .exec(model)
            // Small: the bound pauses and resumes reads during the run
            // (honest peers must never be closed or lose a message).
            .exec_backlog(4 << 10)
            .route(1, echo_maybe_slow),
    );
    let addr = server.local_addr();
    let threads: Vec<_> = (0..clients)
        .map(|c| thread::spawn(move || one_client(addr, c, per)))
        .collect();
    for t in threads {
        t.join().expect("client in order");
    }
    let stats = server.stats();
    assert_eq!(stats.messages_in, (clients * per) as u64);
    server.shutdown(TIMEOUT).unwrap();
}

fn one_client(addr: SocketAddr, c: usize, per: usize) {
    let mut client = Client::connect(addr);
    let mut burst = Vec::new();
    for i in 0..per {
        let slow = if i % 7 == 0 { "s" } else { "f" };
        burst.extend(frame(1, format!("{slow}{c}:{i}").as_bytes()));
    }
    // Written by another thread: the replies are read meanwhile (a peer
    // that writes everything before reading could fill both directions).
    let mut writer = client.stream.try_clone().unwrap();
    let w = thread::spawn(move || writer.write_all(&burst));
    for i in 0..per {
        let (id, body) = client.recv();
        let slow = if i % 7 == 0 { "s" } else { "f" };
        assert_eq!(
            (id, String::from_utf8(body).unwrap()),
            (1, format!("{slow}{c}:{i}")),
            "client {c}, reply {i}"
        );
    }
    w.join().unwrap().unwrap();
}

#[test]
fn inline_keeps_each_connections_order() {
    order_holds(Exec::Inline, 16, 400);
}

#[test]
fn the_pool_keeps_each_connections_order() {
    order_holds(Exec::Pool(4), 16, 400);
}

#[test]
fn the_logic_thread_keeps_each_connections_order() {
    order_holds(Exec::Single, 16, 400);
}

/// The 99th percentile of `n` round trips of a small echo on `client`.
fn p99(client: &mut Client, n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|i| {
            let t = Instant::now();
            client.send(1, format!("{i}").as_bytes());
            let (_, body) = client.recv();
            assert_eq!(body, format!("{i}").as_bytes());
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n * 99 / 100]
}

/// Route 2 sleeps the number of milliseconds its body says (a blocking
/// call), then answers; route 1 echoes.
fn blocking_server(model: Exec) -> netloom::ServerHandle {
    start(
        Server::builder()
            .event_loops(1)
            .exec(model)
            .route(1, |ctx: &mut Context<'_>| ctx.reply(1, ctx.body()))
            .route(2, |ctx: &mut Context<'_>| {
                let ms: u64 = std::str::from_utf8(ctx.body())?.parse()?;
                thread::sleep(Duration::from_millis(ms));
                ctx.reply(2, ctx.body())?;
                Ok::<(), netloom::BoxError>(())
            }),
    )
}

/// Connection A keeps a 300 ms blocking call in flight; connection B, on
/// the same loop, measures its echo's p99. On the pool B never waits for
/// A; inline (the contrast, which shows the measure can fail) it does.
#[test]
fn a_blocking_handler_on_the_pool_does_not_raise_another_connections_p99() {
    const BLOCK_MS: u64 = 300;
    let measure = |model: Exec| {
        let server = blocking_server(model);
        let mut a = Client::connect(server.local_addr());
        let mut b = Client::connect(server.local_addr());
        let quiet = p99(&mut b, 50);
        // A's calls, back to back, for as long as B measures.
        let mut a_writer = a.stream.try_clone().unwrap();
        for _ in 0..4 {
            a_writer
                .write_all(&frame(2, BLOCK_MS.to_string().as_bytes()))
                .unwrap();
        }
        let busy = p99(&mut b, 100);
        for _ in 0..4 {
            assert_eq!(a.recv().0, 2);
        }
        server.shutdown(TIMEOUT).unwrap();
        (quiet, busy)
    };
    let (quiet, busy) = measure(Exec::Pool(2));
    println!("pool: B's p99 {quiet:?} alone, {busy:?} beside A's blocking calls");
    assert!(
        busy < Duration::from_millis(BLOCK_MS / 2),
        "B waited for A on the pool: p99 {busy:?}"
    );
    let (_, inline_busy) = measure(Exec::Inline);
    println!("inline: B's p99 {inline_busy:?} beside A's blocking calls");
    assert!(
        inline_busy >= Duration::from_millis(BLOCK_MS / 2),
        "inline, B should have waited for A (p99 {inline_busy:?}): the measure is blind"
    );
}
