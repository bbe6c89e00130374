//! Rooms on one node: join and leave from handlers and handles, a publish
//! reaching each member once on two loops, `publish_except`, counts, the
//! end of a closed connection's memberships, stale and twin ids, bad
//! names. Over loopback, with Rust clients and a Python `socket` peer.
//!
//! The test server speaks `examples/cluster_chat`'s protocol, with
//! answers to joins and leaves so that a client knows when they are done:
//! id 1 joins the room named by the body (answered with id 1, `ok` or the
//! error), id 2 leaves it (id 2, `ok`), id 3 `ROOM\nTEXT` goes to every
//! other member of ROOM as id 3, id 5 the same to every member including
//! the sender, id 4 asks for a room's member count (id 4, decimal).

mod delivery;
mod identity;
mod python;
#[cfg(feature = "ws")]
mod ws;

use std::net::SocketAddr;

use crossbeam_channel::Receiver;
use netloom::{Builder, ConnHandle, Context, Server};

use crate::common::{Client, TIMEOUT};

/// The room and text of an id 3 or 5 body (`ROOM\nTEXT`).
fn split(body: &[u8]) -> Option<(&str, &[u8])> {
    let at = body.iter().position(|b| *b == b'\n')?;
    let room = std::str::from_utf8(&body[..at]).ok()?;
    Some((room, &body[at + 1..]))
}

fn answer(ctx: &Context<'_>, id: u32, done: netloom::Result<()>) -> netloom::Result<()> {
    match done {
        Ok(()) => ctx.reply(id, b"ok"),
        Err(e) => ctx.reply(id, format!("err: {e}")),
    }
}

/// The rooms protocol's routes on `loops` event loops, reporting every
/// opened connection's handle.
pub(crate) fn rooms_builder(loops: usize) -> (Builder, Receiver<(SocketAddr, ConnHandle)>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let builder = Server::builder()
        .event_loops(loops)
        .on_open(move |s| {
            let _ = tx.send((s.peer_addr(), s.handle()));
        })
        .route(1, |ctx: &mut Context<'_>| {
            let done = match std::str::from_utf8(ctx.body()) {
                Ok(room) => ctx.join(room),
                Err(_) => Err(netloom::Error::RoomName(0)),
            };
            answer(ctx, 1, done)
        })
        .route(2, |ctx: &mut Context<'_>| {
            let room = String::from_utf8_lossy(ctx.body()).into_owned();
            answer(ctx, 2, ctx.leave(&room))
        })
        .route(3, |ctx: &mut Context<'_>| -> netloom::Result<()> {
            if let Some((room, _)) = split(ctx.body()) {
                ctx.hub().publish_except(room, ctx.id(), 3, ctx.body())?;
            }
            Ok(())
        })
        .route(5, |ctx: &mut Context<'_>| -> netloom::Result<()> {
            if let Some((room, _)) = split(ctx.body()) {
                ctx.hub().publish(room, 3, ctx.body())?;
            }
            Ok(())
        })
        .route(4, |ctx: &mut Context<'_>| {
            let room = String::from_utf8_lossy(ctx.body()).into_owned();
            ctx.reply(4, ctx.hub().room_len(&room).to_string())
        });
    (builder, rx)
}

/// The handle of the connection `client` made (the next one opened).
pub(crate) fn handle_of(opens: &Receiver<(SocketAddr, ConnHandle)>, c: &Client) -> ConnHandle {
    let (peer, handle) = opens.recv_timeout(TIMEOUT).expect("on_open ran");
    assert_eq!(peer, c.stream.local_addr().unwrap());
    handle
}

/// Join `room` through the protocol and wait for the answer.
pub(crate) fn join(c: &mut Client, room: &str) {
    c.send(1, room.as_bytes());
    assert_eq!(c.recv(), (1, b"ok".to_vec()), "join {room}");
}

/// Leave `room` through the protocol and wait for the answer.
pub(crate) fn leave(c: &mut Client, room: &str) {
    c.send(2, room.as_bytes());
    assert_eq!(c.recv(), (2, b"ok".to_vec()), "leave {room}");
}

/// The room's member count, asked through the protocol.
pub(crate) fn count(c: &mut Client, room: &str) -> usize {
    c.send(4, room.as_bytes());
    let (id, body) = c.recv();
    assert_eq!(id, 4);
    String::from_utf8(body).unwrap().parse().unwrap()
}
