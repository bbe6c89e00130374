//! A server that closes with the peer's input unread reads and drops it
//! first, so that its close is a FIN, not a reset that could cost the
//! peer the last reply (found by mutation testing: a reader whose
//! scratch buffer was empty, so nothing was drained, passed every test).

use std::io::{ErrorKind, Read, Write};

use netloom::Server;

use crate::common::{frame, start, Client};

#[test]
fn input_unread_at_close_is_drained_so_the_peer_gets_its_reply_and_a_fin() {
    // More than the kernel's buffers hold on loopback (16 replies of
    // 1 MiB): the server still writes them when the input below arrives.
    const PART: usize = 1 << 20;
    const REPLY: usize = 16 * (8 + PART);
    let server = start(
        Server::builder()
            .write_high_water(32 << 20)
            .route(1, |ctx| {
                for _ in 0..16 {
                    ctx.reply(1, vec![7u8; PART])?;
                }
                ctx.close();
                Ok::<_, netloom::Error>(())
            }),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"");
    // The reply began: the server is closing (it reads no more) and waits
    // for the rest of its reply to drain, which the kernel's buffers
    // cannot hold: this input stays unread until the close.
    let mut head = [0u8; 8];
    c.stream.read_exact(&mut head).unwrap();
    c.stream.write_all(&vec![1u8; 48 << 10]).unwrap();
    c.stream.write_all(&frame(1, b"unread")).unwrap();
    let mut got = head.len();
    let mut buf = vec![0u8; 1 << 16];
    let end = loop {
        match c.stream.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => got += n,
            Err(e) => break Err(e),
        }
    };
    assert_eq!(got, REPLY, "the whole reply, then the end: {end:?}");
    if let Err(e) = end {
        assert_ne!(e.kind(), ErrorKind::ConnectionReset, "reset, not a FIN");
        panic!("{e}");
    }
}
