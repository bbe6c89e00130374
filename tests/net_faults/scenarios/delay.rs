//! Latency and reordering from user-space relays in namespace B (this
//! kernel has no qdiscs, so no `tc netem`): a TCP relay that forwards
//! every chunk 40 ms late each way, in front of an echo server whose
//! replies wait a random 0-30 ms (so they overtake one another); a UDP
//! relay that forwards every datagram 10-50 ms late each way, so
//! datagrams overtake one another on the path.

use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::{ConnHandle, Dial, SeqPacker, Server};

use super::{assert_between, Env, SLACK};
use crate::netns::ADDR_B;
use crate::probe::{check_drained, wait_for, Baseline};

/// The TCP relay's delay each way, and the echo's random reply delay.
const TCP_DELAY_MS: u64 = 40;
const SHUFFLE_MS: u64 = 30;
/// The UDP relay's delay each way: DELAY plus up to JITTER.
const UDP_DELAY_MS: u64 = 10;
const UDP_JITTER_MS: u64 = 40;
const REQUESTS: usize = 200;
const TIMEOUT: Duration = Duration::from_secs(5);

/// Send `REQUESTS` requests at once with `request_with` and collect, in
/// the order their replies came: (request number, round trip). Each
/// reply must be its own request's body.
fn burst(conn: &ConnHandle, tag: &str) -> Vec<(usize, Duration)> {
    let (tx, rx) = unbounded();
    for i in 0..REQUESTS {
        let tx = tx.clone();
        let sent = format!("{tag}-{i}").into_bytes();
        let start = Instant::now();
        conn.request_with(1, sent.clone(), TIMEOUT, move |r| {
            let _ = tx.send((i, sent, start.elapsed(), r));
        })
        .unwrap();
    }
    (0..REQUESTS)
        .map(|_| {
            let (i, sent, rtt, reply) = rx
                .recv_timeout(TIMEOUT + Duration::from_secs(5))
                .expect("a request never ended");
            let reply = reply.unwrap_or_else(|e| panic!("{tag} request {i}: {e:?}"));
            assert_eq!(
                reply.body, sent,
                "{tag} request {i} got another request's reply"
            );
            (i, rtt)
        })
        .collect()
}

/// Replies that came before one of a lower number (overtaking).
fn overtakes(order: &[(usize, Duration)]) -> usize {
    let mut highest = 0;
    let mut n = 0;
    for &(i, _) in order {
        if i < highest {
            n += 1;
        }
        highest = highest.max(i);
    }
    n
}

/// Through the delaying TCP relay, 200 requests in flight at once each
/// get their own reply though many replies overtake others (counted,
/// must be some), and every round trip is at least the relay's two
/// delays. Through the reordering UDP relay, 200 UDP requests each get
/// their own reply though datagrams overtook one another (counted, must
/// be some), and every round trip is at least the relay's two minimum
/// delays. No request times out; nothing is left open.
pub fn latency_and_reordering(env: &Env) {
    let base = Baseline::take();
    let echo = env.peer(
        "echo-tcp",
        &["127.0.0.1".into(), "0".into(), SHUFFLE_MS.to_string()],
    );
    let relay = env.server_peer(
        "relay-tcp",
        &[
            "127.0.0.1".into(),
            echo.port.to_string(),
            TCP_DELAY_MS.to_string(),
        ],
    );
    let udp_echo = env.peer("echo-udp", &["127.0.0.1".into(), "0".into()]);
    let udp_relay = env.server_peer(
        "relay-udp",
        &[
            "127.0.0.1".into(),
            udp_echo.port.to_string(),
            UDP_DELAY_MS.to_string(),
            UDP_JITTER_MS.to_string(),
        ],
    );
    assert_eq!(relay.addr().ip().to_string(), ADDR_B);
    let server = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .start()
        .unwrap();
    let hub = server.hub();
    let link = hub.dial(Dial::new(relay.addr())).unwrap();
    let udp = hub.dial(Dial::new(udp_relay.addr()).udp()).unwrap();

    let tcp = burst(&link, "tcp");
    let min = tcp.iter().map(|(_, rtt)| *rtt).min().unwrap();
    let max = tcp.iter().map(|(_, rtt)| *rtt).max().unwrap();
    let floor = Duration::from_millis(2 * TCP_DELAY_MS);
    assert_between(
        "TCP: shortest round trip through the relay",
        min,
        floor,
        floor + Duration::from_millis(SHUFFLE_MS) + SLACK,
    );
    let overtaken = overtakes(&tcp);
    println!("  TCP: {REQUESTS} replies matched; {overtaken} overtook an earlier request's; round trips {min:.2?}..{max:.2?}");
    assert!(
        overtaken > 0,
        "no TCP reply overtook another: the matching was not exercised"
    );

    let dgrams = burst(&udp, "udp");
    let min = dgrams.iter().map(|(_, rtt)| *rtt).min().unwrap();
    let max = dgrams.iter().map(|(_, rtt)| *rtt).max().unwrap();
    let floor = Duration::from_millis(2 * UDP_DELAY_MS);
    assert!(
        min >= floor,
        "UDP round trip {min:?} shorter than the relay's delays"
    );
    let reordered = overtakes(&dgrams);
    println!("  UDP: {REQUESTS} replies matched; {reordered} came before an earlier request's; round trips {min:.2?}..{max:.2?}");
    assert!(
        reordered > 0,
        "no UDP datagram was reordered: the relay did not act"
    );
    let stats = hub.stats();
    assert_eq!(
        (stats.request_timeouts, stats.late_replies),
        (0, 0),
        "{stats}"
    );

    link.close();
    udp.close();
    wait_for("every connection closed", Duration::from_secs(5), || {
        hub.stats().connections == 0
    });
    check_drained(&hub.stats(), "after closing the link and the UDP peer");
    server.shutdown(Duration::from_secs(5)).unwrap();
    drop((hub, link, udp, relay, echo, udp_relay, udp_echo));
    base.check_fds("after shutdown");
}
