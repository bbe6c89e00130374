//! The blocking client's timeouts, over real sockets: every operation that
//! runs out of time (`recv`, `round_trip`, `request`, `send`) fails with
//! `Error::Timeout`, whichever kind the OS gave the socket call
//! (`WouldBlock` on Linux, `TimedOut` elsewhere), and a timed-out `recv`
//! can be retried without losing bytes. (`connect_timeout`'s is in
//! `features/flow.rs`.)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use netloom::client::Client;
use netloom::{Error, Message, SeqPacker};

use crate::common::{frame, TIMEOUT};

/// The timeout the client is given: long enough to tell "waited" from
/// "failed at once", short next to `TIMEOUT`.
const SHORT: Duration = Duration::from_millis(200);

/// A client connected to a loopback peer that does only what the test
/// tells it to, with `SHORT` read and write timeouts.
fn client_and_peer() -> (Client, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = Client::connect(listener.local_addr().unwrap()).unwrap();
    client.set_timeout(Some(SHORT)).unwrap();
    let (peer, _) = listener.accept().unwrap();
    (client, peer)
}

/// Run `op` and check that it failed with `Error::Timeout` after about
/// `SHORT` (not at once, not after `TIMEOUT`).
fn expect_timeout<T: std::fmt::Debug>(what: &str, op: impl FnOnce() -> netloom::Result<T>) {
    let started = Instant::now();
    let result = op();
    let took = started.elapsed();
    assert!(
        matches!(result, Err(Error::Timeout)),
        "{what}: expected Err(Timeout), got {result:?}"
    );
    assert!(
        took >= SHORT && took < TIMEOUT,
        "{what}: gave up after {took:?}, the timeout was {SHORT:?}"
    );
}

#[test]
fn a_recv_that_times_out_is_a_timeout_and_can_be_retried() {
    let (mut client, mut peer) = client_and_peer();
    expect_timeout("recv from a silent peer", || client.recv());

    // Half a message, a timeout, then the rest: nothing is lost.
    let whole = frame(7, b"hello");
    peer.write_all(&whole[..6]).unwrap();
    expect_timeout("recv of half a message", || client.recv());
    peer.write_all(&whole[6..]).unwrap();
    let m = client.recv().expect("the retried recv");
    assert_eq!((m.id, &m.body[..]), (7, &b"hello"[..]));
}

#[test]
fn a_round_trip_without_an_answer_is_a_timeout() {
    let (mut client, mut peer) = client_and_peer();
    expect_timeout("round_trip to a silent peer", || {
        client.round_trip(1, b"ping")
    });
    let mut got = [0u8; 12];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(got.to_vec(), frame(1, b"ping"), "the request was sent");
}

#[test]
fn a_request_without_a_reply_and_a_recv_after_it_are_both_timeouts() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut client = Client::connect(listener.local_addr().unwrap())
        .unwrap()
        .with_packer(SeqPacker::default());
    client.set_timeout(Some(SHORT)).unwrap();
    let (_peer, _) = listener.accept().unwrap();
    expect_timeout("request to a silent peer", || {
        client.request(1, b"ping", SHORT)
    });
    // The request restored the client's own read timeout.
    expect_timeout("recv after the request", || client.recv());
}

#[test]
fn a_send_to_a_peer_that_never_reads_is_a_timeout() {
    let (mut client, _peer) = client_and_peer();
    let body = vec![0u8; 64 << 10];
    // Loopback buffers hold a few MiB; 64 MiB is far past them.
    let mut result = Ok(());
    for _ in 0..1024 {
        result = client.send(1, &body);
        if result.is_err() {
            break;
        }
    }
    assert!(
        matches!(result, Err(Error::Timeout)),
        "a send the peer never reads: expected Err(Timeout), got {result:?}"
    );
}

#[cfg(feature = "tls")]
#[test]
fn a_recv_over_tls_that_times_out_is_a_timeout() {
    use std::sync::Arc;

    use crate::tls_support::{client_config, server_config, test_cert};

    let cert = test_cert();
    let server = crate::common::start(
        netloom::Server::builder()
            .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)))
            .route(0, |ctx| ctx.reply(0, ctx.body())),
    );
    let mut client =
        Client::connect_tls(server.local_addr(), "localhost", client_config(&cert)).unwrap();
    client.set_timeout(Some(SHORT)).unwrap();
    expect_timeout("recv over TLS from a server with nothing to say", || {
        client.recv()
    });
    // Still usable afterwards.
    let reply: Message = client.round_trip(0, b"still there").unwrap();
    assert_eq!(&reply.body[..], b"still there");
    server.shutdown(TIMEOUT).unwrap();
}
