//! Random loss on the path: namespace B drops each packet in and each
//! packet out with probability LOSS % (`numgen random mod 100 < LOSS`),
//! so about a fifth of the round trips lose a packet.

use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use netloom::{Context, Dial, Error, SeqPacker, Server};

use super::Env;
use crate::netns::Fault;
use crate::probe::{check_drained, wait_for, Baseline};

/// Percent of packets dropped, each direction.
const LOSS: u32 = 10;
/// Messages echoed over TCP, and how many may be in flight.
const TCP_MESSAGES: usize = 600;
const WINDOW: usize = 64;
/// UDP requests, in batches in flight at once, and their timeout.
const UDP_REQUESTS: usize = 300;
const BATCH: usize = 50;
const UDP_TIMEOUT: Duration = Duration::from_millis(500);

/// TCP segments this namespace (A) retransmitted so far (`RetransSegs`
/// of /proc/net/snmp, which is per network namespace).
fn retransmitted() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").expect("read /proc/net/snmp");
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "RetransSegs")
        .expect("RetransSegs");
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

/// Message `i`'s body: its number, then filler of a length that varies
/// up to a few segments, so frames straddle lost segments.
fn body(i: usize) -> Vec<u8> {
    let mut b = format!("{i}:").into_bytes();
    let len = (i * 997) % 3000;
    b.extend((0..len).map(|k| b'a' + ((i + k) % 26) as u8));
    b
}

/// TCP under loss: 600 messages (up to 3 KB) sent on a dialed link and
/// echoed by the backend all come back, complete and in order, on the
/// same connection (nothing closed, no protocol error). UDP under loss:
/// each of 300 requests either gets its own body back or fails with
/// `Error::Timeout`; some of each happen, `Stats::request_timeouts`
/// counts every lost one, and the UDP session stays usable (every
/// request answered once the loss stops).
pub fn tcp_and_udp(env: &Env) {
    let base = Baseline::take();
    let echo = env.server_peer("echo-tcp", &[]);
    let udp_echo = env.server_peer("echo-udp", &[]);
    let (echo_tx, echoes) = unbounded();
    let server = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .route(2, move |ctx: &mut Context<'_>| {
            let _ = echo_tx.send(ctx.body().to_vec());
        })
        .start()
        .unwrap();
    let hub = server.hub();
    let link = hub.dial(Dial::new(echo.addr())).unwrap();
    let udp = hub.dial(Dial::new(udp_echo.addr()).udp()).unwrap();
    let r = link
        .request(1, b"up", Duration::from_secs(5))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(&r.body[..], b"up");

    env.fault(Fault::Loss(LOSS));
    let retrans = retransmitted();
    let start = Instant::now();
    let expect = |k: usize| {
        let got = echoes
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("echo {k} of {TCP_MESSAGES} never came"));
        assert!(
            got == body(k),
            "echo {k} is not message {k}'s body ({} bytes)",
            got.len()
        );
    };
    for i in 0..TCP_MESSAGES {
        if i >= WINDOW {
            expect(i - WINDOW);
        }
        link.send(2, body(i)).unwrap();
    }
    for k in TCP_MESSAGES - WINDOW..TCP_MESSAGES {
        expect(k);
    }
    let took = start.elapsed();
    let stats = hub.stats();
    assert_eq!(
        stats.closed_total(),
        0,
        "a connection closed under loss: {stats}"
    );
    // The loss acted on the stream: A's kernel had to resend segments.
    let resent = retransmitted() - retrans;
    assert!(
        resent > 0,
        "no TCP segment was retransmitted: the loss did not act"
    );
    println!(
        "  TCP: {TCP_MESSAGES} messages echoed complete and in order under {LOSS}% loss each way in {took:.2?} ({} bytes out, {resent} segments retransmitted by A)",
        stats.bytes_out
    );

    let before = hub.stats().request_timeouts;
    let (mut answered, mut lost) = (0u64, 0u64);
    for batch in 0..UDP_REQUESTS / BATCH {
        let (tx, rx) = unbounded();
        for i in 0..BATCH {
            let tx = tx.clone();
            let sent = format!("udp-{batch}-{i}").into_bytes();
            udp.request_with(1, sent.clone(), UDP_TIMEOUT, move |r| {
                let _ = tx.send((sent, r.map(|m| m.body)));
            })
            .unwrap();
        }
        for _ in 0..BATCH {
            let (sent, outcome) = rx
                .recv_timeout(UDP_TIMEOUT + Duration::from_secs(5))
                .expect("a UDP request never ended");
            match outcome {
                Ok(got) => {
                    assert_eq!(got, sent, "a UDP reply matched another request");
                    answered += 1;
                }
                Err(Error::Timeout) => lost += 1,
                Err(e) => panic!("UDP request: {e:?}"),
            }
        }
    }
    let counted = hub.stats().request_timeouts - before;
    println!("  UDP: {answered} answered, {lost} timed out (counted: {counted}) of {UDP_REQUESTS}");
    assert!(
        answered > 0 && lost > 0,
        "loss did not act on UDP: {answered} answered, {lost} lost"
    );
    assert_eq!(counted, lost);

    env.heal();
    for i in 0..20 {
        let sent = format!("after-{i}");
        let r = udp
            .request(1, &sent, Duration::from_secs(2))
            .unwrap()
            .wait();
        assert_eq!(r.map(|m| m.body).unwrap(), sent.as_bytes());
    }
    println!("  UDP: the session answers every request once the loss stops");
    assert_eq!(hub.stats().connections, 2);
    assert_eq!(hub.stats().closed_total(), 0);

    link.close();
    udp.close();
    wait_for("every connection closed", Duration::from_secs(5), || {
        hub.stats().connections == 0
    });
    check_drained(&hub.stats(), "after closing the link and the UDP peer");
    server.shutdown(Duration::from_secs(5)).unwrap();
    drop((hub, link, udp, echo, udp_echo));
    base.check_fds("after shutdown");
}
