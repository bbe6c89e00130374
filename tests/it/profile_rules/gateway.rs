//! The issue's gateway, in one `Server` on two loops: clients speak the
//! default `LengthPacker` to it; it dials two backends with a `SeqPacker`
//! profile, a netloom server and a Python asyncio server that speaks
//! `SeqPacker`'s wire format from `struct.pack`; a client's message 1
//! goes to the first, message 2 to the second, through
//! `ConnHandle::request`, and the answer comes back to the client.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use bytes::BytesMut;
use crossbeam_channel::unbounded;
use netloom::{
    ConnHandle, Context, Dial, Error, HandlerResult, Message, PackError, Packer, Peek, Profile,
    SeqPacker, Server,
};

use crate::common::peers::{require, Peer};
use crate::common::{start, wait_until, Client, TIMEOUT};

/// A backend in Python's asyncio: every `SeqPacker` request is answered
/// with the same id and sequence number and the body upper-cased. It
/// exits after 60 s, or when the test kills it.
const PY_BACKEND: &str = r#"
import asyncio, struct

async def serve(reader, writer):
    try:
        while True:
            n, i, seq = struct.unpack("<III", await reader.readexactly(12))
            body = (await reader.readexactly(n)).upper()
            writer.write(struct.pack("<III", len(body), i, seq) + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print("ready", server.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"#;

/// A Python process killed and reaped however the test ends.
struct Py(Child);

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the Python backend; its address once it listens.
fn python_backend(py: &str) -> (Py, SocketAddr) {
    let mut child = Py(Command::new(py)
        .args(["-c", PY_BACKEND])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3"));
    let stdout = child.0.stdout.take().unwrap();
    let (tx, lines) = unbounded();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let line = lines
        .recv_timeout(TIMEOUT)
        .expect("python printed a line within TIMEOUT")
        .expect("python's stdout");
    let port = line
        .trim()
        .strip_prefix("ready ")
        .expect("python printed ready PORT");
    (child, format!("127.0.0.1:{port}").parse().unwrap())
}

/// A netloom backend speaking `SeqPacker`: message 1 is answered with its
/// body reversed.
fn netloom_backend() -> netloom::ServerHandle {
    start(
        Server::builder()
            .event_loops(1)
            .packer(SeqPacker::default())
            .route(1, |ctx: &mut Context<'_>| {
                let mut body = ctx.body().to_vec();
                body.reverse();
                ctx.reply(1, body)
            }),
    )
}

/// A client message relayed to `backend` as a request, its answer sent
/// back to the client under the same id.
fn relay(ctx: &mut Context<'_>, backend: &OnceLock<ConnHandle>) -> HandlerResult {
    let responder = ctx.responder();
    let id = ctx.msg_id();
    let backend = backend.get().ok_or(Error::Disconnected)?;
    backend.request_with(id, ctx.body(), TIMEOUT, move |answer| {
        let body = match answer {
            Ok(m) => m.body.to_vec(),
            Err(e) => format!("failed: {e}").into_bytes(),
        };
        let _ = responder.respond(id, body);
    })?;
    Ok(())
}

#[test]
fn a_gateway_speaks_length_packer_to_clients_and_seq_packer_to_two_backends() {
    let Some(py) = require(Peer::Python3) else {
        return;
    };
    let (_py, py_addr) = python_backend(&py);
    let backend = netloom_backend();
    let (a, b): (Arc<OnceLock<ConnHandle>>, Arc<OnceLock<ConnHandle>>) = Default::default();
    let (to_a, to_b) = (a.clone(), b.clone());
    let gateway = start(
        Server::builder()
            .event_loops(2)
            .profile("backend", Profile::new().packer(SeqPacker::default()))
            .route(1, move |ctx: &mut Context<'_>| relay(ctx, &to_a))
            .route(2, move |ctx: &mut Context<'_>| relay(ctx, &to_b)),
    );
    let hub = gateway.hub();
    let _ = a.set(
        hub.dial(Dial::new(backend.local_addr()).profile("backend"))
            .unwrap(),
    );
    let _ = b.set(hub.dial(Dial::new(py_addr).profile("backend")).unwrap());
    // The two links, dialed from outside the loops, are on both loops.
    let loops: HashSet<usize> = [&a, &b]
        .iter()
        .map(|h| h.get().unwrap().id().loop_index())
        .collect();
    assert_eq!(loops.len(), 2);

    let mut clients: Vec<Client> = (0..4)
        .map(|_| Client::connect(gateway.local_addr()))
        .collect();
    for round in 0..20 {
        for (n, client) in clients.iter_mut().enumerate() {
            let body = format!("client {n} round {round}");
            client.send(1, body.as_bytes());
            client.send(2, body.as_bytes());
            let mut answers = [client.recv(), client.recv()];
            answers.sort();
            let reversed: Vec<u8> = body.bytes().rev().collect();
            assert_eq!(answers[0], (1, reversed), "the netloom backend's answer");
            assert_eq!(
                answers[1],
                (2, body.to_uppercase().into_bytes()),
                "the Python backend's answer"
            );
        }
    }
    gateway.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

/// `SeqPacker`, noting the address of every instance that encodes.
struct Witness {
    inner: SeqPacker,
    seen: Arc<Mutex<HashSet<usize>>>,
}

impl Packer for Witness {
    fn peek(&self, buf: &[u8]) -> Result<Peek, PackError> {
        self.inner.peek(buf)
    }

    fn encode(&self, id: u32, seq: u32, body: &[u8], out: &mut BytesMut) -> Result<(), PackError> {
        self.seen
            .lock()
            .unwrap()
            .insert(self as *const Self as usize);
        self.inner.encode(id, seq, body, out)
    }
}

/// Two dials naming one profile, on two loops, share it: one packer
/// instance encodes for both (the profile is stored once in the server,
/// never copied per dial), and each link gets its own answers.
#[test]
fn dials_sharing_a_profile_share_one_packer() {
    let backend = netloom_backend();
    let seen: Arc<Mutex<HashSet<usize>>> = Arc::default();
    let witness = Witness {
        inner: SeqPacker::default(),
        seen: seen.clone(),
    };
    let server = Server::builder()
        .event_loops(2)
        .profile("backend", Profile::new().packer(witness))
        .start()
        .unwrap();
    let dial = || {
        let dial = Dial::new(backend.local_addr()).profile("backend");
        server.hub().dial(dial).unwrap()
    };
    let (one, two) = (dial(), dial());
    assert_ne!(one.id().loop_index(), two.id().loop_index());
    for (link, body) in [(&one, "one"), (&two, "two"), (&one, "again")] {
        let answer: Message = link.request(1, body, TIMEOUT).unwrap().wait().unwrap();
        let want: Vec<u8> = body.bytes().rev().collect();
        assert_eq!(answer.body, want);
    }
    assert_eq!(seen.lock().unwrap().len(), 1, "one packer for both links");
    server.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

/// A dial naming a profile the server does not have fails at once, with
/// a `Config` error naming it; so does a health check on a profile whose
/// packer carries no sequence number, even when the server's does.
#[test]
fn an_unknown_profile_or_a_seqless_one_is_refused_at_dial() {
    let server = Server::builder()
        .packer(SeqPacker::default())
        .profile("plain", Profile::new())
        .start()
        .unwrap();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    match server.hub().dial(Dial::new(addr).profile("nope")) {
        Err(Error::Config(why)) => assert!(why.contains("\"nope\""), "{why}"),
        other => panic!("expected a Config error, got {other:?}"),
    }
    let check = netloom::HealthCheck {
        id: 1,
        body: bytes::Bytes::new(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
    };
    let seqless = Dial::new(addr).profile("plain").health_check(check.clone());
    assert!(matches!(server.hub().dial(seqless), Err(Error::NoSeq)));
    // The server's own packer carries one: the same check without the
    // profile is accepted.
    let own = server
        .hub()
        .dial(Dial::new(addr).health_check(check))
        .unwrap();
    own.close();
    wait_until("the accepted dial to close", || {
        server.hub().connection_count() == 0
    });
    server.shutdown(TIMEOUT).unwrap();
}

/// More than 255 profiles, or a profile's invalid heartbeat, fail
/// `start` with a `Config` error (naming the profile).
#[test]
fn start_checks_the_profiles() {
    let mut many = Server::builder();
    for i in 0..256 {
        many = many.profile(format!("p{i}"), Profile::new());
    }
    assert!(matches!(many.start(), Err(Error::Config(_))));
    let mut most = Server::builder();
    for i in 0..255 {
        most = most.profile(format!("p{i}"), Profile::new());
    }
    most.start().unwrap().shutdown(TIMEOUT).unwrap();
    let bad = Server::builder().profile(
        "fast",
        Profile::new().heartbeat(Duration::from_secs(2), Duration::from_secs(1)),
    );
    match bad.start() {
        Err(Error::Config(why)) => assert!(why.contains("\"fast\""), "{why}"),
        other => panic!("expected a Config error, got {other:?}"),
    }
    let ping = Server::builder().profile(
        "p",
        Profile::new().ping_before_kick(Duration::from_secs(1), 9),
    );
    assert!(matches!(ping.start(), Err(Error::Config(_))));
}
