//! Backpressure on a side that waits for replies (issue 25, item 14): a
//! dialed connection, or an accepted one the server sends requests on,
//! over its high-water mark refuses new requests with `BufferFull` and
//! keeps reading the replies. Paused reads would jam it against a naive
//! peer that blocks in `sendall` while we do not read: the peer stops
//! reading requests, our queue never drains, and neither side moves again.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{Builder, ConnHandle, Error, SeqPacker, Server, ServerHandle};

use crate::common::peers::{require, Peer};
use crate::common::{init_logs, TIMEOUT};

/// A naive blocking peer that answers requests: read one (the sequence
/// packer's 12-byte header, then the body), `sendall` the same frame
/// back, repeat; at end of file print how many it answered. It listens
/// (`listen`: a backend we dial) or connects (`connect PORT`: a client
/// our server sends requests to). Its sockets time out, so it ends by
/// itself even if the test is gone. Its socket buffers are small
/// (64 KiB), as a peer's may be: then a side that stops reading blocks
/// its `sendall` long before its own queue drains, whatever the kernel's
/// autotuning does for our socket.
const NAIVE_PEER: &str = r#"
import socket, struct, sys
def small(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
if sys.argv[1] == "listen":
    srv = socket.socket()
    small(srv)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(60)
    print("ready", srv.getsockname()[1], flush=True)
    c, _ = srv.accept()
else:
    c = socket.socket()
    small(c)
    c.settimeout(60)
    c.connect(("127.0.0.1", int(sys.argv[2])))
    print("ready", c.getsockname()[1], flush=True)
c.settimeout(60)
f = c.makefile("rb")
answered = 0
while True:
    head = f.read(12)
    if len(head) < 12:
        break
    n, i, seq = struct.unpack("<III", head)
    body = f.read(n)
    if len(body) < n:
        break
    c.sendall(head + body)
    answered += 1
print("done", answered, flush=True)
"#;

/// The Python peer, killed (by pid) and reaped when dropped; its stdout
/// lines come through a channel, so every wait for one has a deadline.
struct Naive {
    child: Child,
    lines: Receiver<std::io::Result<String>>,
    /// Its address: where it listens, or where it connects from.
    addr: SocketAddr,
}

impl Naive {
    /// Start it with `args` (`["listen"]` or `["connect", PORT]`).
    fn start(python: &str, args: &[&str]) -> Naive {
        let mut child = Command::new(python)
            .args(["-c", NAIVE_PEER])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let stdout = child.stdout.take().expect("python's stdout");
        let (tx, lines) = unbounded();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut peer = Naive {
            child,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = peer.next_line();
        let port = line
            .strip_prefix("ready ")
            .expect("python printed ready PORT");
        peer.addr.set_port(port.parse().expect("a port"));
        peer
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .expect("python printed a line in time")
            .expect("read python's stdout")
            .trim()
            .to_string()
    }
}

impl Drop for Naive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests in flight at once.
const WINDOW: usize = 512;
/// Replies to collect: 64 MiB each way, far more than the socket buffers
/// between the two sides hold.
const WANTED: usize = 1024;
const BODY: usize = 64 << 10;
/// A reply that takes longer means the link jammed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A refusal comes as soon as the loop applies the request.
const PROMPT: Duration = Duration::from_secs(3);

/// A server with the sequence packer, one loop and `high_water` as its
/// write queues' mark.
fn server(high_water: usize) -> Builder {
    init_logs();
    Server::builder()
        .event_loops(1)
        .packer(SeqPacker::default())
        .write_high_water(high_water)
}

/// Against a naive backend, with a small high-water mark and with the
/// default one (4 MiB; it jammed after a handful of replies): 64 KiB
/// requests, up to 512 in flight, until 1024 are answered. Each one is
/// answered or promptly refused with `BufferFull`; the link never jams,
/// and stays usable.
#[test]
fn a_dialed_link_keeps_reading_replies_from_a_backend_that_blocks_in_sendall() {
    let Some(python) = require(Peer::Python3) else {
        return;
    };
    for high_water in [256 << 10, 4 << 20] {
        let backend = Naive::start(&python, &["listen"]);
        let client = server(high_water).start().unwrap();
        let conn = client.hub().connect(backend.addr).unwrap();
        let answered = flood(&conn, high_water);
        assert_eq!(client.stats().connects, 1);
        finish(client, &backend, answered);
    }
}

/// The same from the accepting side: a server that sends requests to a
/// naive client reads its replies whatever its queue holds.
#[test]
fn a_server_sending_requests_keeps_reading_replies_from_a_client_that_blocks_in_sendall() {
    let Some(python) = require(Peer::Python3) else {
        return;
    };
    let (opened_tx, opened) = unbounded();
    let high_water = 4 << 20;
    let server = server(high_water)
        .on_open(move |s| {
            let _ = opened_tx.send(s.handle());
        })
        .bind("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let port = server.local_addr().port().to_string();
    let client = Naive::start(&python, &["connect", &port]);
    let conn: ConnHandle = opened.recv_timeout(TIMEOUT).expect("the client connects");
    let answered = flood(&conn, high_water);
    finish(server, &client, answered);
}

/// Shut `server` down; `peer` must have answered exactly `answered`
/// requests: nothing refused was sent.
fn finish(server: ServerHandle, peer: &Naive, answered: usize) {
    server.shutdown(TIMEOUT).unwrap();
    assert_eq!(peer.next_line(), format!("done {answered}"));
}

/// Send requests on `conn` until `WANTED` are answered; returns how many
/// the peer answered in all (one more, after them, shows the link works).
fn flood(conn: &ConnHandle, high_water: usize) -> usize {
    let started = Instant::now();
    let (tx, outcomes) = unbounded();
    let mut issued: HashMap<u64, Instant> = HashMap::new();
    let (mut next, mut ok, mut refused) = (0u64, 0usize, 0usize);
    // Requests allowed in flight: one fewer after each refusal, one more
    // after each reply (up to WINDOW), so the queue stays at its mark
    // without a storm of refusals.
    let mut window = WINDOW;
    let mut body = vec![b'x'; BODY];
    while ok < WANTED || !issued.is_empty() {
        while ok < WANTED && issued.len() < window {
            body[..8].copy_from_slice(&next.to_le_bytes());
            let tx = tx.clone();
            let n = next;
            conn.request_with(7, &body, REQUEST_TIMEOUT, move |r| {
                let _ = tx.send((n, Instant::now(), r));
            })
            .expect("request sent to the loop");
            issued.insert(next, Instant::now());
            next += 1;
        }
        let (n, at, outcome) = outcomes
            .recv_timeout(REQUEST_TIMEOUT + TIMEOUT)
            .expect("an outcome for every request");
        let since = issued.remove(&n).expect("one outcome per request");
        match outcome {
            Ok(reply) => {
                assert_eq!(reply.body.len(), BODY);
                assert_eq!(reply.body[..8], n.to_le_bytes(), "a reply for another");
                ok += 1;
                window = (window + 1).min(WINDOW);
            }
            Err(Error::BufferFull) => {
                assert!(at - since < PROMPT, "refused after {:?}", at - since);
                refused += 1;
                window = window.saturating_sub(1).max(1);
            }
            Err(e) => panic!(
                "mark {high_water}: request {n}: {e} after {:?} ({ok} answered, \
                 {refused} refused): the link jammed",
                at - since
            ),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{ok} answered, {refused} refused in {:?}",
            started.elapsed()
        );
    }
    assert!(
        refused > 0,
        "the high-water mark {high_water} was never reached"
    );
    // The link still works.
    let reply = conn.request(7, b"after", TIMEOUT).unwrap().wait().unwrap();
    assert_eq!(&reply.body[..], b"after");
    ok + 1
}
