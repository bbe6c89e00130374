//! The gateway of issue 19 in one `Server` on two loops: its clients speak
//! the default 8-byte packer, and it relays their messages as requests to
//! two backends dialed with a `SeqPacker` profile: a netloom server
//! (answers reversed) and a Python asyncio server (answers upper-cased).
//! Every answer reaches the client that asked, with the right body.

use std::sync::{Arc, OnceLock};
use std::thread;

use netloom::{ConnHandle, Context, Dial, Error, Profile, SeqPacker, Server, ServerHandle};

use super::PyBackend;
use crate::common::{start, Client, TIMEOUT};

/// A netloom backend on `SeqPacker`: message 7 answered reversed.
fn reversing_backend() -> ServerHandle {
    start(
        Server::builder()
            .event_loops(1)
            .packer(SeqPacker::default())
            .route(7, |ctx: &mut Context<'_>| {
                let mut body = ctx.body().to_vec();
                body.reverse();
                ctx.reply(7, body)
            }),
    )
}

/// The gateway: a client's message 1 starting with `p` goes to the
/// second link (Python), anything else to the first (netloom); the answer
/// comes back as message 1, a failure as message 2 with the error.
fn gateway(links: Arc<OnceLock<[ConnHandle; 2]>>) -> ServerHandle {
    start(
        Server::builder()
            .event_loops(2)
            .route(1, move |ctx: &mut Context<'_>| {
                let links = links.get().ok_or(Error::Disconnected)?;
                let link = &links[usize::from(ctx.body().first() == Some(&b'p'))];
                let reply = ctx.responder();
                link.request_with(7, ctx.body(), TIMEOUT, move |answer| {
                    let _ = match answer {
                        Ok(m) => reply.respond(1, &m.body),
                        Err(e) => reply.respond(2, e.to_string()),
                    };
                })
            })
            .profile("backend", Profile::new().packer(SeqPacker::default())),
    )
}

#[test]
fn one_server_speaks_the_length_packer_to_clients_and_seq_packer_to_backends() {
    let Some(python) = PyBackend::start() else {
        return;
    };
    let backend = reversing_backend();
    let links = Arc::new(OnceLock::new());
    let gateway = gateway(links.clone());
    let hub = gateway.hub();
    let dial = |addr| hub.dial(Dial::new(addr).profile("backend")).expect("dial");
    let dialed = [dial(backend.local_addr()), dial(python.addr)];
    // Two loops: the links may sit on either, and the clients on both.
    assert!(links.set(dialed).is_ok());
    let addr = gateway.local_addr();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                for i in 0..50 {
                    let to_python = (c + i) % 2 == 0;
                    let body = format!("{}{c}-{i}-hello", if to_python { 'p' } else { 'n' });
                    client.send(1, body.as_bytes());
                    let want = if to_python {
                        body.to_uppercase()
                    } else {
                        body.chars().rev().collect()
                    };
                    let (id, got) = client.recv();
                    let got = String::from_utf8(got).expect("utf-8 answer");
                    assert_eq!(
                        (id, got.as_str()),
                        (1, want.as_str()),
                        "client {c}, message {i}"
                    );
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    let stats = gateway.stats();
    assert_eq!(stats.request_timeouts, 0);
    assert_eq!(stats.unknown_ids, 0);
    gateway.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

/// Requests need a packer that carries sequence numbers: on a server
/// whose own packer does not, a dial without a profile is refused the
/// request-based features, one with a `SeqPacker` profile is not.
#[test]
fn requests_follow_the_profile_packer_not_the_servers() {
    let backend = reversing_backend();
    let server = start(
        Server::builder()
            .event_loops(2)
            .profile("seq", Profile::new().packer(SeqPacker::default())),
    );
    let hub = server.hub();
    let plain = Dial::new(backend.local_addr()).reconnect_after_timeouts(3);
    assert!(matches!(hub.dial(plain), Err(Error::NoSeq)));
    let link = hub
        .dial(
            Dial::new(backend.local_addr())
                .profile("seq")
                .reconnect_after_timeouts(3),
        )
        .expect("a SeqPacker profile carries sequence numbers");
    let answer = link.request(7, b"abc", TIMEOUT).unwrap().wait().unwrap();
    assert_eq!(&answer.body[..], b"cba");
    // A client of the server's own packer cannot be asked.
    let client = Client::connect(server.local_addr());
    // (`connection_count` counts a socket on its way to a loop; the
    // loop's roster lists it once the loop adopted it.)
    crate::common::wait_until("the client is listed", || hub.connection_ids().len() == 2);
    let id = hub
        .connection_ids()
        .into_iter()
        .find(|id| *id != link.id())
        .expect("the client's id");
    assert!(matches!(
        hub.conn(id)
            .request(7, b"x", TIMEOUT)
            .and_then(|p| p.wait()),
        Err(Error::NoSeq)
    ));
    drop(client);
    server.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}
