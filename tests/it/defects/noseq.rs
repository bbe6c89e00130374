//! A request needs a sequence number on the wire to find its reply. On a
//! connection whose framing carries none (the default `LengthPacker`, a
//! WebSocket connection in message mode) `request` fails at once with
//! `Error::NoSeq`, instead of waiting out its timeout while the reply
//! goes to the routes.

use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::{Context, Error, LengthPacker, Packer, SeqPacker, Server, TlvPacker};

use crate::common::{echo, start, TIMEOUT};

/// Long enough that waiting it out cannot pass for "at once".
const LONG: Duration = Duration::from_secs(5);
/// What "at once" allows (a loaded machine included).
const AT_ONCE: Duration = Duration::from_secs(1);

#[test]
fn the_shipped_packers_say_whether_they_carry_a_sequence_number() {
    assert!(!LengthPacker::default().carries_seq());
    assert!(SeqPacker::default().carries_seq());
    assert!(TlvPacker::default().carries_seq());
}

#[test]
fn a_request_over_the_length_packer_fails_at_once_with_no_seq() {
    let backend = start(Server::builder().route(1, echo));
    let (routed_tx, routed) = unbounded();
    let (inside_tx, inside) = unbounded();
    let client = start(
        Server::builder()
            .event_loops(2)
            .route(1, move |ctx: &mut Context<'_>| {
                // On the connection's own loop: the error comes back at once.
                let r = ctx.handle().request_with(1, b"x", LONG, |_| {});
                let _ = inside_tx.send(r);
                let _ = routed_tx.send(ctx.body().to_vec());
            }),
    );
    let conn = client.hub().connect(backend.local_addr()).unwrap();
    let asked = Instant::now();
    let outcome = conn.request(1, b"x", LONG).and_then(|p| p.wait());
    assert!(asked.elapsed() < AT_ONCE, "{:?}", asked.elapsed());
    assert!(matches!(outcome, Err(Error::NoSeq)), "{outcome:?}");
    let outcome = conn.request_with(1, b"x", LONG, |_| panic!("never called"));
    assert!(matches!(outcome, Err(Error::NoSeq)), "{outcome:?}");
    // Nothing was sent: a plain send is what reaches the backend and
    // comes back to the routes, first.
    conn.send(1, b"plain").unwrap();
    assert_eq!(routed.recv_timeout(TIMEOUT).unwrap(), b"plain");
    let r = inside.recv_timeout(TIMEOUT).unwrap();
    assert!(matches!(r, Err(Error::NoSeq)), "{r:?}");
    client.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_request_over_the_sequence_packer_gets_its_reply() {
    let backend = start(
        Server::builder()
            .packer(SeqPacker::default())
            .route(1, echo),
    );
    let client = start(Server::builder().packer(SeqPacker::default()));
    let conn = client.hub().connect(backend.local_addr()).unwrap();
    let reply = conn.request(1, b"x", LONG).unwrap().wait().unwrap();
    assert_eq!(&reply.body[..], b"x");
    client.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

/// A packer of the application's own without `carries_seq`: the default
/// probe finds out from the packer itself.
#[test]
fn the_default_probe_tells_a_packer_with_seq_from_one_without() {
    struct Delegate<P>(P);
    impl<P: Packer> Packer for Delegate<P> {
        fn peek(&self, buf: &[u8]) -> Result<netloom::Peek, netloom::PackError> {
            self.0.peek(buf)
        }
        fn encode(
            &self,
            id: u32,
            seq: u32,
            body: &[u8],
            out: &mut bytes::BytesMut,
        ) -> Result<(), netloom::PackError> {
            self.0.encode(id, seq, body, out)
        }
    }
    assert!(!Delegate(LengthPacker::default()).carries_seq());
    assert!(Delegate(SeqPacker::default()).carries_seq());
    assert!(Delegate(TlvPacker::default()).carries_seq());

    let backend = start(
        Server::builder()
            .packer(Delegate(SeqPacker::default()))
            .route(1, echo),
    );
    let client = start(Server::builder().packer(Delegate(LengthPacker::default())));
    let conn = client.hub().connect(backend.local_addr()).unwrap();
    let outcome = conn.request(1, b"x", LONG).and_then(|p| p.wait());
    assert!(matches!(outcome, Err(Error::NoSeq)), "{outcome:?}");
    client.shutdown(TIMEOUT).unwrap();
    let client = start(Server::builder().packer(Delegate(SeqPacker::default())));
    let conn = client.hub().connect(backend.local_addr()).unwrap();
    let reply = conn.request(1, b"y", LONG).unwrap().wait().unwrap();
    assert_eq!(&reply.body[..], b"y");
    client.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

/// WebSocket message mode carries bodies only: a request to such a
/// connection fails at once, whatever the packer.
#[cfg(feature = "ws")]
#[test]
fn a_request_to_a_websocket_connection_in_message_mode_fails_at_once() {
    use crate::ws_raw::RawWs;

    let (up_tx, up) = unbounded();
    crate::common::init_logs();
    let server = Server::builder()
        .packer(SeqPacker::default())
        .ws_on_upgrade(move |session, _| {
            let _ = up_tx.send(session.handle());
            Ok(())
        })
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let peer = RawWs::connect(server.local_addr(), "/");
    let handle = up.recv_timeout(TIMEOUT).unwrap();
    let asked = Instant::now();
    let outcome = handle.request(1, b"x", LONG).and_then(|p| p.wait());
    assert!(asked.elapsed() < AT_ONCE, "{:?}", asked.elapsed());
    assert!(matches!(outcome, Err(Error::NoSeq)), "{outcome:?}");
    let (tx, rx) = unbounded();
    let returned = handle.request_with(1, b"x", LONG, move |r| {
        let _ = tx.send(r.map(|m| m.body));
    });
    let outcome = returned.and_then(|()| rx.recv_timeout(TIMEOUT).unwrap());
    assert!(matches!(outcome, Err(Error::NoSeq)), "{outcome:?}");
    drop(peer);
    server.shutdown(TIMEOUT).unwrap();
}

/// In packer mode a WebSocket binary message carries a whole packer frame,
/// sequence number included: requests work there.
#[cfg(feature = "ws")]
#[test]
fn a_request_to_a_websocket_connection_in_packer_mode_gets_its_reply() {
    use crate::ws_raw::RawWs;
    use netloom::ws::WsMode;

    let (up_tx, up) = unbounded();
    crate::common::init_logs();
    let server = Server::builder()
        .packer(SeqPacker::default())
        .ws_mode(WsMode::Packer)
        .ws_on_upgrade(move |session, _| {
            let _ = up_tx.send(session.handle());
            Ok(())
        })
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut peer = RawWs::connect(server.local_addr(), "/");
    let handle = up.recv_timeout(TIMEOUT).unwrap();
    let pending = handle.request(7, b"question", LONG).unwrap();
    // The request: one binary message holding `len | id | seq | body`.
    let (opcode, frame) = peer.recv().expect("the request");
    assert_eq!(opcode, 0x82);
    assert_eq!(&frame[..4], &8u32.to_le_bytes());
    assert_eq!(&frame[4..8], &7u32.to_le_bytes());
    assert_eq!(&frame[12..], b"question");
    let mut answer = 6u32.to_le_bytes().to_vec();
    answer.extend_from_slice(&7u32.to_le_bytes());
    answer.extend_from_slice(&frame[8..12]);
    answer.extend_from_slice(b"answer");
    peer.send_frame(0x82, &answer, true);
    let reply = pending.wait().unwrap();
    assert_eq!((reply.id, &reply.body[..]), (7, &b"answer"[..]));
    drop(peer);
    server.shutdown(TIMEOUT).unwrap();
}
