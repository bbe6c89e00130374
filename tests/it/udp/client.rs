//! UDP's client side: the blocking `client::UdpClient`, and a UDP peer
//! dialed on the loops (`Dial::udp`), each against a netloom UDP server
//! and against a Python UDP echo server nobody on the team wrote.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netloom::client::UdpClient;
use netloom::{CloseReason, Dial, Error, Reconnect, SeqPacker, Server, UdpConfig};

use super::{peer, start_udp};
use crate::common::peers::{require, Peer};
use crate::common::{echo, init_logs, track_closes, TIMEOUT};

/// A Python UDP server that sends every datagram back as it came (frames,
/// sequence numbers and all). Killed (by pid) when dropped.
struct PyEcho {
    child: Child,
    addr: SocketAddr,
}

impl PyEcho {
    fn start() -> Option<PyEcho> {
        let py = require(Peer::Python3)?;
        let script = "import socket, sys\n\
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
            s.bind(('127.0.0.1', 0))\n\
            s.settimeout(60)\n\
            print(s.getsockname()[1], flush=True)\n\
            while True:\n\
            \x20   d, a = s.recvfrom(65535)\n\
            \x20   s.sendto(d, a)\n";
        let mut child = Command::new(py)
            .args(["-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = format!("127.0.0.1:{}", line.trim()).parse().unwrap();
        Some(PyEcho { child, addr })
    }
}

impl Drop for PyEcho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_blocking_client_sends_batches_and_matches_requests_by_sequence_number() {
    let (server, addr) = start_udp(
        Server::builder()
            .packer(SeqPacker::default())
            .route(1, echo)
            .route(2, |ctx| {
                ctx.send(9, b"push").and_then(|()| ctx.reply(2, ctx.body()))
            }),
    );
    let mut c = UdpClient::connect(addr)
        .unwrap()
        .with_packer(SeqPacker::default());
    c.set_timeout(Some(TIMEOUT)).unwrap();
    c.send_batch(&[(1, &b"a"[..]), (1, b"bb"), (1, b"ccc")])
        .unwrap();
    for body in [&b"a"[..], b"bb", b"ccc"] {
        assert_eq!(&c.recv().unwrap().body[..], body);
    }
    // The push (seq 0) comes before the reply: kept for `recv`.
    let reply = c.request(2, b"req", TIMEOUT).unwrap();
    assert_eq!((reply.id, &reply.body[..]), (2, &b"req"[..]));
    assert_eq!(&c.recv().unwrap().body[..], b"push");
    // Nothing answers id 3: a typed timeout, not a hang.
    let lost = c.request(3, b"nobody", Duration::from_millis(100));
    assert!(matches!(lost, Err(Error::Timeout)), "{lost:?}");
    let big = c.send(1, vec![0; 70_000]);
    assert!(
        matches!(big, Err(Error::DatagramTooLarge { .. })),
        "{big:?}"
    );
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn the_blocking_client_talks_to_a_python_udp_echo() {
    let Some(py) = PyEcho::start() else {
        return;
    };
    let mut c = UdpClient::connect(py.addr)
        .unwrap()
        .with_packer(SeqPacker::default());
    c.set_timeout(Some(TIMEOUT)).unwrap();
    for i in 0..20u32 {
        let reply = c.request(4, i.to_le_bytes(), TIMEOUT).unwrap();
        assert_eq!(&reply.body[..], &i.to_le_bytes());
    }
}

#[test]
fn a_udp_dial_on_the_loops_requests_pushes_and_routes_like_a_tcp_dial() {
    let (server, addr) = start_udp(
        Server::builder()
            .packer(SeqPacker::default())
            .route(1, echo)
            .route(2, |ctx| ctx.send(5, b"pushed")),
    );
    init_logs();
    let (tx, rx) = crossbeam_channel::unbounded();
    let opened = tx.clone();
    let client = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .on_open(move |s| {
            let _ = opened.send(format!("open {}", s.peer_addr()));
        })
        .route(5, move |ctx| {
            let _ = tx.send(format!("route 5 {:?}", String::from_utf8_lossy(ctx.body())));
        })
        .start()
        .unwrap();
    let link = client.hub().dial(Dial::new(addr).udp()).unwrap();
    // Sent before its socket is made: queued, then sent.
    link.send(2, b"").unwrap();
    let reply = link.request(1, b"hello", TIMEOUT).unwrap().wait().unwrap();
    assert_eq!(&reply.body[..], b"hello");
    let mut said: Vec<String> = (0..2).map(|_| rx.recv_timeout(TIMEOUT).unwrap()).collect();
    said.sort();
    assert_eq!(
        said,
        [format!("open {addr}"), r#"route 5 "pushed""#.to_string()]
    );
    // Broadcasts are for clients: the dial is the server's own link.
    client.hub().broadcast(5, b"not for a dial").unwrap();
    let again = link.request(1, b"still", TIMEOUT).unwrap().wait().unwrap();
    assert_eq!(&again.body[..], b"still");
    assert_eq!(
        server.stats().messages_in,
        3,
        "no broadcast reached the server"
    );
    client.shutdown(TIMEOUT).unwrap();
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_udp_dial_requests_from_a_python_udp_echo_and_times_out_on_silence() {
    let Some(py) = PyEcho::start() else {
        return;
    };
    init_logs();
    let client = Server::builder()
        .packer(SeqPacker::default())
        .start()
        .unwrap();
    let link = client.hub().dial(Dial::new(py.addr).udp()).unwrap();
    for i in 0..10u32 {
        let reply = link
            .request(7, i.to_be_bytes(), TIMEOUT)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(&reply.body[..], &i.to_be_bytes());
    }
    let silent = peer();
    let hole = client
        .hub()
        .dial(Dial::new(silent.local_addr().unwrap()).udp())
        .unwrap();
    let lost = hole
        .request(7, b"anyone?", Duration::from_millis(100))
        .unwrap()
        .wait();
    assert!(matches!(lost, Err(Error::Timeout)), "{lost:?}");
    client.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_quiet_udp_dial_is_kicked_and_a_reconnecting_one_refused() {
    let mut udp = UdpConfig::default();
    udp.idle_timeout = Duration::from_millis(300);
    let (builder, mut closes) = track_closes(Server::builder().udp(udp));
    init_logs();
    let client = builder.start().unwrap();
    let silent = peer();
    let to = silent.local_addr().unwrap();
    let _link = client.hub().dial(Dial::new(to).udp()).unwrap();
    assert!(matches!(closes.reason_for(to), CloseReason::IdleTimeout));
    let refused = client
        .hub()
        .dial(Dial::new(to).udp().reconnect(Reconnect::default()));
    assert!(matches!(refused, Err(Error::Config(_))), "{refused:?}");
    assert_eq!(client.stats().connections, 0);
    client.shutdown(TIMEOUT).unwrap();
}

#[test]
fn the_blocking_client_reports_an_oversized_datagram_and_goes_on() {
    let server = peer();
    let mut c = UdpClient::connect(server.local_addr().unwrap())
        .unwrap()
        .with_max_datagram(1_000);
    c.set_timeout(Some(TIMEOUT)).unwrap();
    c.send(1, b"hi").unwrap();
    let mut buf = [0; 64];
    let (_, client) = server.recv_from(&mut buf).unwrap();
    server
        .send_to(&crate::common::frame(1, &[0; 2_000]), client)
        .unwrap();
    server
        .send_to(&crate::common::frame(2, b"fits"), client)
        .unwrap();
    let big = c.recv();
    assert!(
        matches!(
            big,
            Err(Error::DatagramTooLarge {
                len: 2_008,
                max: 1_000
            })
        ),
        "{big:?}"
    );
    let next = c.recv().unwrap();
    assert_eq!((next.id, &next.body[..]), (2, &b"fits"[..]));
}
