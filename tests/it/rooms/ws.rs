//! A room whose members speak different protocols: WebSocket clients
//! (message mode, over `ws://`) and a raw TCP client on the default
//! packer. One publish, encoded once per protocol: a text frame for the
//! WebSocket members, a packer frame for the TCP one; `publish_except`
//! skips a WebSocket sender.

use netloom::{ws, Context, Server};

use crate::common::{Client, TIMEOUT};
use crate::ws_raw::RawWs;

#[test]
fn websocket_and_tcp_members_share_a_room() {
    crate::common::init_logs();
    let server = Server::builder()
        .event_loops(2)
        // A text message `ROOM`: join it (answered "joined");
        // a binary one `ROOM\nTEXT`: to every other member, as text.
        .route(ws::TEXT, |ctx: &mut Context<'_>| -> netloom::Result<()> {
            let room = String::from_utf8_lossy(ctx.body()).into_owned();
            ctx.join(&room)?;
            ctx.reply(ws::TEXT, b"joined")
        })
        .route(ws::BINARY, |ctx: &mut Context<'_>| -> netloom::Result<()> {
            let body = ctx.body();
            let Some(at) = body.iter().position(|b| *b == b'\n') else {
                return Ok(());
            };
            let room = String::from_utf8_lossy(&body[..at]).into_owned();
            ctx.hub()
                .publish_except(&room, ctx.id(), ws::TEXT, &body[at + 1..])
        })
        .bind("127.0.0.1:0")
        .unwrap()
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let (tcp_addr, ws_addr) = (server.local_addrs()[0], server.local_addrs()[1]);
    let mut w1 = RawWs::connect(ws_addr, "/");
    let mut w2 = RawWs::connect(ws_addr, "/");
    let mut tcp = Client::connect(tcp_addr);
    for w in [&mut w1, &mut w2] {
        w.send_frame(0x81, b"lobby", true);
        assert_eq!(w.recv(), Some((0x81, b"joined".to_vec())));
    }
    tcp.send(ws::TEXT, b"lobby");
    assert_eq!(tcp.recv(), (ws::TEXT, b"joined".to_vec()));
    assert_eq!(server.hub().room_len("lobby"), 3);

    w1.send_frame(0x82, b"lobby\nfrom w1", true);
    assert_eq!(w2.recv(), Some((0x81, b"from w1".to_vec())));
    assert_eq!(tcp.recv(), (ws::TEXT, b"from w1".to_vec()));
    server.hub().publish("lobby", ws::TEXT, "to all").unwrap();
    assert_eq!(
        w1.recv(),
        Some((0x81, b"to all".to_vec())),
        "w1 skipped its own"
    );
    assert_eq!(w2.recv(), Some((0x81, b"to all".to_vec())));
    assert_eq!(tcp.recv(), (ws::TEXT, b"to all".to_vec()));
    // (Raw clients answer no close handshake: gone before the shutdown.)
    drop((w1, w2, tcp));
    server.shutdown(TIMEOUT).unwrap();
}
