//! `ConnHandle::traffic` over two loops: read from a handler of a
//! connection on the other loop (through that loop's inbox), from the
//! connection's own handler (at once), and from a thread outside the
//! loops; a closed connection answers `Closed`.

use std::sync::{Arc, Mutex};

use netloom::{ConnHandle, Context, Error, Server, Traffic};

use crate::common::{echo, start, Client, TIMEOUT};

/// Message 9 asks for a connection's traffic: body "other" for the
/// other connection's (on the other loop), "self" for its own. The reply
/// carries bytes_in, bytes_out, messages_in, messages_out (u64 LE).
fn report(conns: Arc<Mutex<Vec<ConnHandle>>>) -> impl Fn(&mut Context<'_>) -> netloom::Result<()> {
    move |ctx| {
        let me = ctx.handle();
        let target = match ctx.body() {
            b"self" => me.clone(),
            _ => {
                let list = conns.lock().unwrap();
                list.iter()
                    .find(|h| h.id() != me.id())
                    .expect("the other")
                    .clone()
            }
        };
        assert_ne!(
            target.id().loop_index() == me.id().loop_index(),
            ctx.body() == b"other",
            "two connections on two loops"
        );
        let t = target
            .traffic()
            .wait_timeout(TIMEOUT)
            .expect("the loop answered")
            .expect("the connection is open");
        ctx.reply(9, encode(t))
    }
}

fn encode(t: Traffic) -> Vec<u8> {
    [t.bytes_in, t.bytes_out, t.messages_in, t.messages_out]
        .iter()
        .flat_map(|n| n.to_le_bytes())
        .collect()
}

fn decode(body: &[u8]) -> [u64; 4] {
    let mut out = [0; 4];
    for (i, chunk) in body.chunks(8).enumerate() {
        out[i] = u64::from_le_bytes(chunk.try_into().unwrap());
    }
    out
}

#[test]
fn traffic_is_read_from_the_other_loop_its_own_and_outside() {
    let conns = Arc::new(Mutex::new(Vec::new()));
    let opened = conns.clone();
    let server = start(
        Server::builder()
            .event_loops(2)
            .on_open(move |s| opened.lock().unwrap().push(s.handle()))
            .route(9, report(conns.clone()))
            .fallback(echo),
    );
    // Round-robin: a on loop 0, b on loop 1.
    let mut a = Client::connect(server.local_addr());
    a.send(1, b"hello");
    a.recv();
    let mut b = Client::connect(server.local_addr());
    b.send(1, b"0123456789");
    b.recv();
    b.send(1, b"x");
    b.recv();
    // a asks for b's (its loop waits for b's loop to answer).
    a.send(9, b"other");
    let (id, body) = a.recv();
    assert_eq!(id, 9);
    // b: 3 frames in (8 + 10, 8 + 1) = 27 bytes; 2 echoes out, flushed.
    assert_eq!(decode(&body), [27, 27, 2, 2]);
    // b asks for its own: its request counted in (8 + 4), its reply
    // queued but not flushed yet when read.
    b.send(9, b"self");
    let (_, body) = b.recv();
    assert_eq!(decode(&body), [39, 27, 3, 2]);
    // From a thread outside the loops: b's reply (8 + 32) is written now.
    let b_handle = {
        let list = conns.lock().unwrap();
        list.iter()
            .find(|h| h.id().loop_index() == 1)
            .unwrap()
            .clone()
    };
    let t = b_handle.traffic().wait_timeout(TIMEOUT).unwrap().unwrap();
    assert_eq!(
        (t.bytes_in, t.bytes_out, t.messages_in, t.messages_out),
        (39, 27 + 40, 3, 3)
    );
    // The server's stats count the same bytes (a's and b's together).
    let stats = server.stats();
    assert_eq!(stats.bytes_in, 39 + 13 + 13, "{stats}");
    drop(b);
    let mut gone = None;
    for _ in 0..500 {
        match b_handle.traffic().wait_timeout(TIMEOUT).unwrap() {
            Err(e) => {
                gone = Some(e);
                break;
            }
            Ok(_) => std::thread::yield_now(),
        }
    }
    assert!(matches!(gone, Some(Error::Closed)), "{gone:?}");
    server.shutdown(TIMEOUT).unwrap();
}
