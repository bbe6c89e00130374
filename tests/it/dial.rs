//! Outbound connections on the loops (issue 12): dialing, request/response
//! matched by sequence number, reconnect with backoff, and a gateway that
//! relays between its clients and a backend it dialed. Every peer is a
//! real socket on loopback; the sequence packer's wire format is checked
//! against a Python peer built from literal bytes. `control`: reconnect
//! control, `health`: links found dead, `hosts`: host names (issue 19).

mod attempts;
mod control;
pub(crate) mod examples;
mod health;
mod hosts;
mod reconnect;
mod two_way;

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{CloseReason, Context, Error, SeqPacker, Server, ServerHandle};

use crate::common::{start, track_closes, Closes, TIMEOUT};

/// A backend answering id 1 with its body reversed, id 2 later from
/// another thread after the number of milliseconds the body says, and
/// never answering id 3.
fn backend() -> ServerHandle {
    start(
        Server::builder()
            .packer(SeqPacker::default())
            .route(1, |ctx: &mut Context<'_>| {
                let mut body = ctx.body().to_vec();
                body.reverse();
                ctx.reply(1, body)
            })
            .route(2, |ctx: &mut Context<'_>| {
                let responder = ctx.responder();
                let body = ctx.body_bytes();
                let ms = std::str::from_utf8(&body)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                thread::spawn(move || {
                    thread::sleep(Duration::from_millis(ms)); // the slow work
                    let _ = responder.respond(2, body);
                });
            })
            .route(3, |_ctx: &mut Context<'_>| {}),
    )
}

/// A server that only dials (no listener), with the sequence packer.
fn dialer() -> ServerHandle {
    crate::common::init_logs();
    Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .start()
        .expect("start")
}

/// A server that only dials (on the default number of loops), with the
/// sequence packer and its closes tracked.
fn dialer_tracking_closes() -> (ServerHandle, Closes) {
    let (builder, closes) = track_closes(Server::builder().packer(SeqPacker::default()));
    crate::common::init_logs();
    (builder.start().unwrap(), closes)
}

/// A backend with the sequence packer that sends every id-5 body it gets
/// to the returned channel.
fn sink_backend() -> (ServerHandle, Receiver<Vec<u8>>) {
    let (got_tx, got) = unbounded();
    let backend = start(Server::builder().packer(SeqPacker::default()).route(
        5,
        move |ctx: &mut Context<'_>| {
            let _ = got_tx.send(ctx.body().to_vec());
        },
    ));
    (backend, got)
}

/// A blocking client of `addr` speaking the sequence packer.
fn seq_client(addr: SocketAddr) -> netloom::client::Client {
    netloom::client::Client::connect(addr)
        .unwrap()
        .with_packer(SeqPacker::default())
}

/// A loopback listener on its own thread: every accepted socket goes to
/// the channel (kept open by the receiver until dropped).
fn counting_backend() -> (SocketAddr, Receiver<std::net::TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, accepted) = unbounded();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            if tx.send(stream).is_err() {
                return;
            }
        }
    });
    (addr, accepted)
}

/// A loopback port with nothing listening on it.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn many_threads_share_one_dialed_connection_and_each_gets_its_own_replies() {
    let backend = backend();
    let client = dialer();
    let conn = client.hub().connect(backend.local_addr()).unwrap();
    let threads: Vec<_> = (0..64u32)
        .map(|t| {
            let conn = conn.clone();
            thread::spawn(move || {
                // Many in flight at once: send a window, then collect it.
                for round in 0..10u32 {
                    let pending: Vec<_> = (0..100u32)
                        .map(|i| {
                            let body = format!("{t}-{round}-{i}");
                            let p = conn.request(1, &body, TIMEOUT).expect("request");
                            (body, p)
                        })
                        .collect();
                    for (body, p) in pending {
                        let reply = p.wait().expect("reply");
                        let mut want = body.into_bytes();
                        want.reverse();
                        assert_eq!(reply.body, want, "a reply reached the wrong caller");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = client.stats();
    assert_eq!(
        (stats.request_timeouts, stats.late_replies),
        (0, 0),
        "{stats}"
    );
    client.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

#[test]
fn slow_answers_time_out_and_their_late_replies_reach_nobody() {
    let backend = backend();
    let client = dialer();
    let conn = client.hub().connect(backend.local_addr()).unwrap();
    let started = Instant::now();
    // Every other request is answered after 600 ms, past its 200 ms
    // timeout; the others at once.
    let pending: Vec<_> = (0..20u32)
        .map(|i| {
            let body = if i % 2 == 0 {
                "600".to_string()
            } else {
                format!("0{i}")
            };
            (
                i,
                body.clone(),
                conn.request(2, body, Duration::from_millis(200)).unwrap(),
            )
        })
        .collect();
    for (i, body, p) in pending {
        match p.wait() {
            Ok(reply) => {
                assert_eq!(i % 2, 1, "request {i} was answered after its timeout");
                assert_eq!(
                    reply.body,
                    body.as_bytes(),
                    "a reply reached the wrong caller"
                );
            }
            Err(Error::Timeout) => assert_eq!(i % 2, 0, "request {i} timed out"),
            Err(e) => panic!("request {i}: {e}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    crate::common::wait_until("the late replies to be counted", || {
        client.stats().late_replies == 10
    });
    assert_eq!(client.stats().request_timeouts, 10);
    // The connection still works.
    let r = conn.request(1, b"ok", TIMEOUT).unwrap().wait().unwrap();
    assert_eq!(r.body, "ko");
    client.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_lost_connection_fails_every_waiting_request_at_once() {
    let backend = backend();
    let client = dialer();
    let conn = client.hub().connect(backend.local_addr()).unwrap();
    // Connected: one round trip.
    conn.request(1, b"x", TIMEOUT).unwrap().wait().unwrap();
    let pending: Vec<_> = (0..50)
        .map(|_| conn.request(3, b"never answered", TIMEOUT).unwrap())
        .collect();
    let (done_tx, done) = unbounded();
    let callback_tx = done_tx.clone();
    conn.request_with(3, b"never", TIMEOUT, move |r| {
        let _ = callback_tx.send(matches!(r, Err(Error::Disconnected)));
    })
    .unwrap();
    let lost = Instant::now();
    backend.shutdown(TIMEOUT).unwrap();
    for p in pending {
        assert!(matches!(p.wait(), Err(Error::Disconnected)));
    }
    assert!(
        done.recv_timeout(TIMEOUT).unwrap(),
        "the callback got Disconnected"
    );
    assert!(
        lost.elapsed() < Duration::from_secs(2),
        "{:?}",
        lost.elapsed()
    );
    drop(done_tx);
    client.shutdown(TIMEOUT).unwrap();
}

#[test]
fn messages_sent_before_the_connect_completes_arrive_in_order() {
    let (backend, got) = sink_backend();
    let client = dialer();
    let conn = client.hub().connect(backend.local_addr()).unwrap();
    for i in 0..100u32 {
        conn.send(5, i.to_le_bytes()).unwrap();
    }
    for i in 0..100u32 {
        assert_eq!(got.recv_timeout(TIMEOUT).unwrap(), i.to_le_bytes());
    }
    client.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

/// Dialed and sent to in one handler: the send is queued in the turn that
/// starts the connect, and the flush at the end of that turn must leave
/// the socket's WRITABLE interest alone (the connect completes with it).
#[test]
fn a_send_in_the_turn_that_dials_waits_for_the_connect() {
    let (backend, got) = sink_backend();
    let backend_addr = backend.local_addr();
    let gateway = start(Server::builder().packer(SeqPacker::default()).route(
        1,
        move |ctx: &mut Context<'_>| -> netloom::HandlerResult {
            let up = ctx.hub().connect(backend_addr)?;
            up.send(5, ctx.body())?;
            Ok(())
        },
    ));
    let mut client = seq_client(gateway.local_addr());
    client.send(1, b"relayed").unwrap();
    assert_eq!(got.recv_timeout(TIMEOUT).unwrap(), b"relayed");
    gateway.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_refused_dial_without_reconnect_closes_with_connect_failed() {
    let addr = free_port();
    let (client, mut closes) = dialer_tracking_closes();
    let conn = client.hub().connect(addr).unwrap();
    let reason = closes.reason_for(addr);
    assert!(
        matches!(reason, CloseReason::ConnectFailed(_)),
        "{reason:?}"
    );
    assert!(matches!(conn.send(1, b"x"), Err(Error::Closed) | Ok(())));
    assert_eq!(client.stats().connect_failures, 1);
    client.shutdown(TIMEOUT).unwrap();
}

/// The gateway case: a server dials a backend at start; every request a
/// client sends to the gateway is forwarded to the backend, and the
/// backend's reply relayed back to that client, with the client's own
/// sequence number.
#[test]
fn a_gateway_relays_between_its_clients_and_a_backend_it_dialed() {
    let backend = backend();
    let upstream: Arc<Mutex<Option<netloom::ConnHandle>>> = Arc::default();
    let up = upstream.clone();
    let gateway = start(Server::builder().packer(SeqPacker::default()).route(
        1,
        move |ctx: &mut Context<'_>| -> netloom::HandlerResult {
            let responder = ctx.responder();
            let backend = up.lock().unwrap().clone().ok_or("no backend yet")?;
            backend.request_with(1, ctx.body(), TIMEOUT, move |reply| {
                if let Ok(reply) = reply {
                    let _ = responder.respond(1, reply.body);
                }
            })?;
            Ok(())
        },
    ));
    *upstream.lock().unwrap() = Some(gateway.hub().connect(backend.local_addr()).unwrap());
    let mut clients: Vec<netloom::client::Client> =
        (0..4).map(|_| seq_client(gateway.local_addr())).collect();
    let mut seen = HashSet::new();
    for round in 0..25u32 {
        for (n, c) in clients.iter_mut().enumerate() {
            let body = format!("{n}:{round}");
            let reply = c.request(1, &body, TIMEOUT).expect("relayed reply");
            let mut want = body.clone().into_bytes();
            want.reverse();
            assert_eq!(reply.body, want);
            seen.insert(body);
        }
    }
    assert_eq!(seen.len(), 100);
    gateway.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

/// The sequence packer's wire format against a peer built from literal
/// bytes: Python reads our request's 12-byte header and answers with the
/// same id and sequence number, the body upper-cased.
#[test]
fn the_sequence_packer_talks_to_a_python_peer_built_from_bytes() {
    let Some(py) = crate::common::peers::require(crate::common::peers::Peer::Python3) else {
        return;
    };
    let script = r#"
import socket, struct, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(1)
srv.settimeout(10)
print("ready", srv.getsockname()[1], flush=True)
c, _ = srv.accept()
c.settimeout(10)
f = c.makefile("rb")
for _ in range(3):
    n, i, seq = struct.unpack("<III", f.read(12))
    body = f.read(n)
    c.sendall(struct.pack("<III", n, i, seq) + body.upper())
print("done", flush=True)
"#;
    // Killed and reaped however the test ends; its stdout read by a thread
    // into a channel, so every wait for a line has a deadline. (The bounded
    // `tls_support::Proc` exists only with the `tls` feature.)
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Killed(
        std::process::Command::new(&py)
            .args(["-c", script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (line_tx, lines) = unbounded();
    thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            if line_tx.send(line).is_err() {
                return;
            }
        }
    });
    let next_line = || {
        lines
            .recv_timeout(TIMEOUT)
            .expect("python printed a line within TIMEOUT (stdout still open)")
            .expect("read python's stdout")
    };
    let line = next_line();
    let port = line
        .trim()
        .strip_prefix("ready ")
        .expect("python printed ready PORT");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = dialer();
    let conn = client.hub().connect(addr).unwrap();
    let replies: Vec<_> = ["abc", "hello", "x"]
        .iter()
        .map(|b| conn.request(9, b, TIMEOUT).unwrap())
        .collect();
    for (p, want) in replies.into_iter().zip(["ABC", "HELLO", "X"]) {
        let m = p.wait().unwrap();
        assert_eq!((m.id, &m.body[..]), (9, want.as_bytes()));
        assert_ne!(m.seq, 0);
    }
    assert_eq!(next_line().trim(), "done");
    // Python closes its stdout as it exits: then it is reaped at once.
    assert!(
        lines.recv_timeout(TIMEOUT).is_err(),
        "python printed more than expected"
    );
    let status = child.0.wait().expect("wait for python");
    assert!(status.success(), "python failed: {status}");
    client.shutdown(TIMEOUT).unwrap();
}

/// The blocking client matches replies by sequence number too, and times
/// out a request that is never answered.
#[test]
fn the_blocking_client_requests_with_timeouts() {
    let backend = backend();
    let mut c = seq_client(backend.local_addr());
    let reply = c.request(1, b"abc", TIMEOUT).unwrap();
    assert_eq!((reply.id, &reply.body[..]), (1, &b"cba"[..]));
    let started = Instant::now();
    assert!(matches!(
        c.request(3, b"never", Duration::from_millis(200)),
        Err(Error::Timeout)
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
    // A reply that comes after its request timed out is skipped, never
    // taken for the next request's: the next request's own reply comes
    // later (500 ms after it) than the stale one (300 ms after its own).
    assert!(matches!(
        c.request(2, b"300", Duration::from_millis(100)),
        Err(Error::Timeout)
    ));
    let reply = c.request(2, b"500", TIMEOUT).unwrap();
    assert_eq!((reply.id, &reply.body[..]), (2, &b"500"[..]));
    let reply = c.request(1, b"next", TIMEOUT).unwrap();
    assert_eq!(&reply.body[..], b"txen");
    backend.shutdown(TIMEOUT).unwrap();
}

/// A broadcast goes to the server's clients, never to the backends it
/// dialed.
#[test]
fn a_broadcast_reaches_clients_but_not_dialed_connections() {
    let (got_tx, got) = unbounded();
    let backend = start(
        Server::builder()
            .packer(SeqPacker::default())
            .route(1, |ctx: &mut Context<'_>| ctx.reply(1, ctx.body_bytes()))
            .route(7, move |ctx: &mut Context<'_>| {
                let _ = got_tx.send(ctx.body().to_vec());
            }),
    );
    let server = start(Server::builder().packer(SeqPacker::default()));
    let up = server.hub().connect(backend.local_addr()).unwrap();
    up.request(1, b"up", TIMEOUT).unwrap().wait().unwrap();
    let mut client = seq_client(server.local_addr());
    client.set_timeout(Some(TIMEOUT)).unwrap();
    crate::common::wait_until("the client to be listed", || {
        server.hub().connections().len() == 2
    });
    server.hub().broadcast(7, b"news").unwrap();
    let m = client.recv().unwrap();
    assert_eq!((m.id, &m.body[..]), (7, &b"news"[..]));
    // The backend answers a request sent after the broadcast; had the
    // broadcast reached it, its id-7 message would have come first.
    up.request(1, b"after", TIMEOUT).unwrap().wait().unwrap();
    assert!(
        got.try_recv().is_err(),
        "the broadcast reached a dialed backend"
    );
    server.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}
