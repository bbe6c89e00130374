//! What a profile decides for its connections and nothing else: its
//! routes and unknown-id policy, its heartbeat, its SO_LINGER, the packer
//! `send_to` encodes with; and the configuration errors. Backends are
//! `std::net` sockets reading the raw bytes, or netloom servers; the
//! dialing server runs two loops.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};
use netloom::{
    CloseReason, ConnId, Context, Dial, Error, Profile, SeqPacker, Server, ServerHandle,
    UnknownIdPolicy,
};

use crate::common::{init_logs, start, Client, TIMEOUT};

/// The closes a dialer reports.
type Closes = Receiver<(ConnId, CloseReason)>;

/// A dialing server on two loops with the given profile as "p" and an
/// echo route (id 1) for its own clients; every close reported, and every
/// open.
fn dialer_with_opens(profile: Profile) -> (ServerHandle, Closes, Receiver<ConnId>) {
    init_logs();
    let (tx, closes) = unbounded();
    let (open_tx, opens) = unbounded();
    let server = Server::builder()
        .event_loops(2)
        .route(1, |ctx: &mut Context<'_>| ctx.reply(1, ctx.body_bytes()))
        .on_open(move |s| {
            let _ = open_tx.send(s.id());
        })
        .on_close(move |s, reason| {
            let _ = tx.send((s.id(), reason.clone()));
        })
        .profile("p", profile)
        .bind("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    (server, closes, opens)
}

fn dialer(profile: Profile) -> (ServerHandle, Closes) {
    let (server, closes, _opens) = dialer_with_opens(profile);
    (server, closes)
}

/// Wait until `id` has opened.
fn opened(opens: &Receiver<ConnId>, id: ConnId) {
    while opens.recv_timeout(TIMEOUT).expect("an open") != id {}
}

/// A netloom `SeqPacker` backend: message 5 is answered, and also
/// followed by an unsolicited message 77 (no sequence number).
fn chatty_backend() -> ServerHandle {
    start(
        Server::builder()
            .packer(SeqPacker::default())
            .route(5, |ctx: &mut Context<'_>| {
                ctx.reply(5, ctx.body_bytes())?;
                ctx.send(77, b"unasked")
            }),
    )
}

/// The reason `id` closed with, waiting at most `TIMEOUT`.
fn close_of(closes: &Closes, id: ConnId) -> CloseReason {
    loop {
        let (who, why) = closes.recv_timeout(TIMEOUT).expect("a close");
        if who == id {
            return why;
        }
    }
}

#[test]
fn a_profile_without_routes_carries_replies_and_drops_the_rest() {
    let backend = chatty_backend();
    let (server, _closes) = dialer(Profile::new().packer(SeqPacker::default()));
    let link = server
        .hub()
        .dial(Dial::new(backend.local_addr()).profile("p"))
        .unwrap();
    for round in 0..3u8 {
        let answer = link.request(5, [round], TIMEOUT).unwrap().wait().unwrap();
        assert_eq!((answer.id, &answer.body[..]), (5, &[round][..]));
    }
    // Each unsolicited 77 was dropped and counted; the link stays open.
    crate::common::wait_until("three unknown ids counted", || {
        server.stats().unknown_ids == 3
    });
    assert!(server.hub().connection_ids().contains(&link.id()));
    server.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_profiles_close_policy_closes_only_its_link() {
    let backend = chatty_backend();
    let profile = Profile::new()
        .packer(SeqPacker::default())
        .unknown_id(UnknownIdPolicy::Close);
    let (server, closes) = dialer(profile);
    let mut client = Client::connect(server.local_addr());
    let link = server
        .hub()
        .dial(Dial::new(backend.local_addr()).profile("p"))
        .unwrap();
    let answer = link.request(5, b"x", TIMEOUT).unwrap().wait().unwrap();
    assert_eq!(&answer.body[..], b"x");
    assert!(matches!(
        close_of(&closes, link.id()),
        CloseReason::UnknownId(77)
    ));
    // The server's own client, with the server's (drop) policy, carries on.
    client.send(1, b"still here");
    assert_eq!(client.recv(), (1, b"still here".to_vec()));
    client.send(99, b"unknown to the server");
    client.send(1, b"and again");
    assert_eq!(client.recv(), (1, b"and again".to_vec()));
    server.shutdown(TIMEOUT).unwrap();
    backend.shutdown(TIMEOUT).unwrap();
}

/// A backend that accepts and reads everything, never answering; each
/// accepted socket goes to the channel.
fn silent_backend() -> (SocketAddr, Receiver<TcpStream>) {
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

#[test]
fn a_profiles_heartbeat_kicks_its_idle_link_and_no_client() {
    let (addr, _accepted) = silent_backend();
    let profile = Profile::new().heartbeat(Duration::from_millis(50), Duration::from_millis(300));
    let (server, closes) = dialer(profile);
    let mut client = Client::connect(server.local_addr());
    let link = server.hub().dial(Dial::new(addr).profile("p")).unwrap();
    assert!(matches!(
        close_of(&closes, link.id()),
        CloseReason::IdleTimeout
    ));
    // The client was as silent, for longer: the server has no heartbeat.
    client.send(1, b"alive");
    assert_eq!(client.recv(), (1, b"alive".to_vec()));
    server.shutdown(TIMEOUT).unwrap();
}

/// Read until the peer ends the stream: `Ok` for an orderly close (FIN),
/// the error for a reset.
fn end_of(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!("the link was not closed within {TIMEOUT:?}")
            }
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn linger_zero_on_a_profile_resets_its_links_and_only_them() {
    let (addr, accepted) = silent_backend();
    let (server, _closes, opens) = dialer_with_opens(Profile::new().linger(Some(Duration::ZERO)));
    let hub = server.hub();
    let reset = hub.dial(Dial::new(addr).profile("p")).unwrap();
    let stream = accepted.recv_timeout(TIMEOUT).expect("accepted");
    // Options are set once the loop sees the connect complete (`on_open`).
    opened(&opens, reset.id());
    reset.close();
    let err = end_of(stream).expect_err("SO_LINGER 0 resets");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    // A dial without the profile closes in order.
    let orderly = hub.dial(Dial::new(addr)).unwrap();
    let stream = accepted.recv_timeout(TIMEOUT).expect("accepted");
    opened(&opens, orderly.id());
    orderly.close();
    end_of(stream).expect("FIN, not a reset");
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn send_to_encodes_for_each_recipient_with_its_own_packer() {
    let (addr, accepted) = silent_backend();
    let (server, _closes, opens) = dialer_with_opens(Profile::new().packer(SeqPacker::default()));
    let hub = server.hub();
    let link = hub.dial(Dial::new(addr).profile("p")).unwrap();
    let mut backend = accepted.recv_timeout(TIMEOUT).expect("accepted");
    opened(&opens, link.id());
    let mut client = Client::connect(server.local_addr());
    let client_id = opens.recv_timeout(TIMEOUT).expect("the client opens");
    hub.send_to([client_id, link.id()], 9, b"hi").unwrap();
    // The client: the 8-byte header. The link: SeqPacker's 12 bytes.
    assert_eq!(client.recv(), (9, b"hi".to_vec()));
    backend.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut frame = [0u8; 14];
    backend.read_exact(&mut frame).expect("the link's frame");
    assert_eq!(frame, [2, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, b'h', b'i']);
    // A broadcast reaches the client only.
    hub.broadcast(3, b"all").unwrap();
    assert_eq!(client.recv(), (3, b"all".to_vec()));
    link.send(4, b"after").unwrap();
    let mut next = [0u8; 17];
    backend
        .read_exact(&mut next)
        .expect("the link's next frame");
    assert_eq!(&next[4..8], &4u32.to_le_bytes(), "no broadcast in between");
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn profile_mistakes_are_config_errors() {
    init_logs();
    let twice = Server::builder()
        .profile("a", Profile::new())
        .profile("a", Profile::new())
        .start();
    assert!(matches!(twice, Err(Error::Config(m)) if m.contains("two profiles")));
    let ping = Server::builder()
        .profile(
            "a",
            Profile::new().ping_before_kick(Duration::from_secs(1), 0),
        )
        .start();
    assert!(matches!(ping, Err(Error::Config(m)) if m.contains("needs heartbeat")));
    let bad_hb = Server::builder()
        .profile(
            "a",
            Profile::new().heartbeat(Duration::from_secs(5), Duration::from_secs(1)),
        )
        .start();
    assert!(matches!(bad_hb, Err(Error::Config(m)) if m.contains("\"a\"")));
    let zero = Server::builder()
        .profile("a", Profile::new().recv_buffer_size(0))
        .start();
    assert!(matches!(zero, Err(Error::Config(_))));
    // A positive SO_LINGER would block the loop in close(): refused, for
    // a profile and for the server.
    let blocking = Server::builder()
        .profile("a", Profile::new().linger(Some(Duration::from_millis(500))))
        .start();
    assert!(matches!(blocking, Err(Error::Config(m)) if m.contains("block")));
    let blocking = Server::builder()
        .linger(Some(Duration::from_secs(1)))
        .start();
    assert!(matches!(blocking, Err(Error::Config(m)) if m.contains("block")));
    let many = (0..256).fold(Server::builder(), |b, i| {
        b.profile(i.to_string(), Profile::new())
    });
    assert!(matches!(many.start(), Err(Error::Config(m)) if m.contains("255")));
    let server = Server::builder()
        .profile("known", Profile::new())
        .start()
        .unwrap();
    let unknown = server
        .hub()
        .dial(Dial::new("127.0.0.1:9".parse().unwrap()).profile("unknown"));
    assert!(matches!(unknown, Err(Error::Config(m)) if m.contains("unknown")));
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn hooks_see_which_protocol_a_connection_speaks() {
    init_logs();
    let (tx, seen) = unbounded();
    let server = Server::builder()
        .event_loops(2)
        .on_open(move |s| {
            let _ = tx.send((s.id(), s.profile().map(str::to_string)));
        })
        .profile("backend", Profile::new())
        .bind("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let (addr, _accepted) = silent_backend();
    let link = server
        .hub()
        .dial(Dial::new(addr).profile("backend"))
        .unwrap();
    assert_eq!(
        seen.recv_timeout(TIMEOUT).unwrap(),
        (link.id(), Some("backend".to_string()))
    );
    let _client = Client::connect(server.local_addr());
    assert_eq!(seen.recv_timeout(TIMEOUT).unwrap().1, None);
    server.shutdown(TIMEOUT).unwrap();
}
