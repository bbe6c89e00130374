//! What a profile's link does with the messages it receives: without
//! routes, only answers to its requests get through, anything else is an
//! unknown id by the profile's own policy; with routes, its own routes
//! and middleware run, never the server's (and the server's clients never
//! reach the profile's).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use netloom::{
    CloseReason, Context, Dial, HandlerResult, Next, Profile, SeqPacker, Server, UnknownIdPolicy,
};

use super::{next_peer, seq_peers, SeqPeer};
use crate::common::{start_tracked, wait_until, Client, TIMEOUT};

/// A request on `link` answered by hand by `peer`, with `answer`.
fn round_trip(link: &netloom::ConnHandle, peer: &mut SeqPeer, body: &str, answer: &str) {
    let pending = link.request(7, body, TIMEOUT).unwrap();
    let (id, seq, got) = peer.recv();
    assert_eq!((id, &got[..]), (7, body.as_bytes()));
    assert_ne!(seq, 0, "a request carries a sequence number");
    peer.send(7, seq, answer.as_bytes());
    let reply = pending.wait().unwrap();
    assert_eq!(
        (reply.id, reply.seq, &reply.body[..]),
        (7, seq, answer.as_bytes())
    );
}

/// Counts calls: a middleware that passes on, or a route.
fn counting(n: &Arc<AtomicUsize>) -> impl Fn(&mut Context<'_>, Next<'_>) -> HandlerResult {
    let n = n.clone();
    move |ctx, next| {
        n.fetch_add(1, Relaxed);
        next.run(ctx)
    }
}

#[test]
fn a_profile_without_routes_takes_replies_and_drops_or_closes_on_the_rest() {
    let (server_mw, server_route) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let routed = server_route.clone();
    let (gateway, mut closes) = start_tracked(
        Server::builder()
            .event_loops(2)
            .middleware(counting(&server_mw))
            .route(9, move |ctx: &mut Context<'_>| {
                routed.fetch_add(1, Relaxed);
                ctx.reply(9, b"server")
            })
            .profile("plain", Profile::new().packer(SeqPacker::default()))
            .profile(
                "strict",
                Profile::new()
                    .packer(SeqPacker::default())
                    .unknown_id(UnknownIdPolicy::Close),
            ),
    );
    let hub = gateway.hub();
    let ((plain_addr, plain_peers), (strict_addr, strict_peers)) = (seq_peers(), seq_peers());
    let plain = hub.dial(Dial::new(plain_addr).profile("plain")).unwrap();
    let strict = hub.dial(Dial::new(strict_addr).profile("strict")).unwrap();
    let (mut plain_peer, mut strict_peer) = (next_peer(&plain_peers), next_peer(&strict_peers));

    round_trip(&plain, &mut plain_peer, "ping", "pong");
    round_trip(&strict, &mut strict_peer, "ping", "pong");
    // Unsolicited: no request waits (seq 0), or none with that number.
    plain_peer.send(9, 0, b"unsolicited");
    plain_peer.send(9, 4242, b"stray");
    wait_until("two unknown ids counted", || hub.stats().unknown_ids == 2);
    round_trip(&plain, &mut plain_peer, "still", "open");

    // Under `Close`, the same closes that link, and only it.
    strict_peer.send(9, 0, b"unsolicited");
    let reason = closes.reason_for(strict_addr);
    assert!(matches!(reason, CloseReason::UnknownId(9)), "{reason:?}");
    assert!(strict_peer.try_recv().is_err(), "the link is closed");
    round_trip(&plain, &mut plain_peer, "after", "the close");

    // None of it went through the server's middleware or routes, which
    // still serve its clients.
    assert_eq!(
        (server_mw.load(Relaxed), server_route.load(Relaxed)),
        (0, 0)
    );
    let mut client = Client::connect(gateway.local_addr());
    client.send(9, b"hello");
    assert_eq!(client.recv(), (9, b"server".to_vec()));
    assert_eq!(
        (server_mw.load(Relaxed), server_route.load(Relaxed)),
        (1, 1)
    );
    assert_eq!(hub.stats().unknown_ids, 3);
    gateway.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_profiles_routes_and_middleware_are_its_own() {
    let (server_mw, profile_mw, group_mw) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let in_group = group_mw.clone();
    let rpc = Profile::new()
        .packer(SeqPacker::default())
        .middleware(counting(&profile_mw))
        .route(5, |ctx: &mut Context<'_>| {
            let mut body = ctx.body().to_vec();
            body.push(b'!');
            ctx.reply(5, body)
        })
        .group([], move |g| {
            g.middleware(counting(&in_group))
                .route(6, |ctx: &mut Context<'_>| ctx.reply(6, b"grouped"))
        })
        .fallback(|ctx: &mut Context<'_>| ctx.reply(ctx.msg_id(), b"fallback"));
    let (gateway, _closes) = start_tracked(
        Server::builder()
            .event_loops(2)
            .middleware(counting(&server_mw))
            .route(5, |ctx: &mut Context<'_>| ctx.reply(5, b"server"))
            .profile("rpc", rpc),
    );
    let (addr, peers) = seq_peers();
    let _link = gateway.hub().dial(Dial::new(addr).profile("rpc")).unwrap();
    let mut peer = next_peer(&peers);
    // The backend asks, the profile's routes answer in its format, with
    // the request's sequence number.
    peer.send(5, 77, b"hi");
    assert_eq!(peer.recv(), (5, 77, b"hi!".to_vec()));
    peer.send(6, 78, b"");
    assert_eq!(peer.recv(), (6, 78, b"grouped".to_vec()));
    peer.send(1234, 79, b"?");
    assert_eq!(peer.recv(), (1234, 79, b"fallback".to_vec()));
    let counts = || [&server_mw, &profile_mw, &group_mw].map(|n| n.load(Relaxed));
    assert_eq!(counts(), [0, 3, 1]);
    // A client of the server gets the server's route 5, not the profile's.
    let mut client = Client::connect(gateway.local_addr());
    client.send(5, b"hi");
    assert_eq!(client.recv(), (5, b"server".to_vec()));
    assert_eq!(counts(), [1, 3, 1]);
    gateway.shutdown(TIMEOUT).unwrap();
}
