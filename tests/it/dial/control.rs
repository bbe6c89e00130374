//! Reconnect control (issue 19): `ConnHandle::reconnect_now` skips the
//! rest of a backoff, and the skipped backoff's timer, firing later, never
//! starts a second attempt. The backend is a `std::net` listener whose
//! accepts are counted.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{Dial, Disconnect, Error, Reconnect, SeqPacker, Server, ServerHandle};

use super::counting_backend;
use crate::common::{init_logs, start, wait_until, TIMEOUT};

/// A dialing server on two loops reporting every `on_disconnect` and
/// every `on_reconnect`.
fn dialer() -> (ServerHandle, Receiver<Disconnect>, Receiver<u32>) {
    init_logs();
    let (down_tx, downs) = unbounded();
    let (up_tx, ups) = unbounded();
    let server = Server::builder()
        .event_loops(2)
        .packer(SeqPacker::default())
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send(d.clone());
        })
        .on_reconnect(move |_s, attempts| {
            let _ = up_tx.send(attempts);
        })
        .start()
        .expect("start the dialer");
    (server, downs, ups)
}

/// A fixed backoff of `delay`, forever.
fn fixed(delay: Duration) -> Reconnect {
    Reconnect {
        initial: delay,
        factor: 1.0,
        max: delay,
        jitter: 0.0,
        max_attempts: None,
    }
}

#[test]
fn reconnect_now_skips_a_long_backoff() {
    let (addr, accepted) = counting_backend();
    let (client, downs, ups) = dialer();
    let conn = client
        .hub()
        .dial(Dial::new(addr).reconnect(fixed(Duration::from_secs(30))))
        .unwrap();
    let first = accepted.recv_timeout(TIMEOUT).expect("the first connect");
    // The backend drops the link: the dialer waits 30 s before the next
    // attempt.
    drop(first);
    let down = downs.recv_timeout(TIMEOUT).expect("on_disconnect");
    assert_eq!(down.retry_in, Duration::from_secs(30));
    let asked = Instant::now();
    assert!(conn.reconnect_now().wait().unwrap(), "an attempt started");
    let _second = accepted
        .recv_timeout(TIMEOUT)
        .expect("connected again long before the backoff's end");
    assert_eq!(ups.recv_timeout(TIMEOUT).unwrap(), 1);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    // Open: left alone.
    assert!(!conn.reconnect_now().wait().unwrap());
    assert!(
        accepted.try_recv().is_err(),
        "an open link was dialed again"
    );
    conn.close();
    wait_until("the closed link to refuse reconnect_now", || {
        matches!(conn.reconnect_now().wait(), Err(Error::Closed))
    });
    client.shutdown(TIMEOUT).unwrap();
}

#[test]
fn the_skipped_backoffs_timer_does_not_connect_a_second_time() {
    let (addr, accepted) = counting_backend();
    let (client, downs, ups) = dialer();
    let backoff = Duration::from_millis(500);
    let conn = client
        .hub()
        .dial(Dial::new(addr).reconnect(fixed(backoff)))
        .unwrap();
    drop(accepted.recv_timeout(TIMEOUT).expect("the first connect"));
    downs.recv_timeout(TIMEOUT).expect("on_disconnect");
    let down_at = Instant::now();
    assert!(conn.reconnect_now().wait().unwrap());
    let _second = accepted.recv_timeout(TIMEOUT).expect("the second connect");
    assert_eq!(ups.recv_timeout(TIMEOUT).unwrap(), 1);
    // The skipped timer fires `backoff` after the loss; give it three
    // times that (bounded) to make a second connect, which it must not.
    let quiet = (down_at + backoff * 3).saturating_duration_since(Instant::now());
    assert!(
        accepted.recv_timeout(quiet).is_err(),
        "the stale timer connected again"
    );
    assert!(downs.try_recv().is_err(), "the open link was dropped");
    client.shutdown(TIMEOUT).unwrap();
}

#[test]
fn reconnect_now_on_an_accepted_connection_is_a_config_error() {
    let server = start(Server::builder().packer(SeqPacker::default()));
    let _peer = TcpStream::connect(server.local_addr()).unwrap();
    wait_until("the peer to be accepted", || {
        server.hub().connections().len() == 1
    });
    let accepted = server.hub().connections().remove(0);
    assert!(matches!(
        accepted.reconnect_now().wait(),
        Err(Error::Config(_))
    ));
    server.shutdown(TIMEOUT).unwrap();
}

/// The case where the skipped timer would act: the attempt `reconnect_now`
/// starts fails too, and the connection waits out a longer backoff when
/// the first one's timer fires. That timer belongs to an earlier attempt
/// and must start nothing.
#[test]
fn a_failed_early_attempt_is_not_followed_by_the_skipped_timer() {
    let addr = super::free_port();
    let (client, downs, _ups) = dialer();
    let policy = Reconnect {
        initial: Duration::from_millis(300),
        factor: 10.0,
        max: Duration::from_secs(30),
        jitter: 0.0,
        max_attempts: None,
    };
    let conn = client
        .hub()
        .dial(Dial::new(addr).reconnect(policy))
        .unwrap();
    let first = downs
        .recv_timeout(TIMEOUT)
        .expect("the refused first connect");
    let down_at = Instant::now();
    assert_eq!((first.attempt, first.retry_in), (1, policy.initial));
    assert!(conn.reconnect_now().wait().unwrap());
    let second = downs
        .recv_timeout(TIMEOUT)
        .expect("the refused early attempt");
    assert_eq!(
        (second.attempt, second.retry_in),
        (2, Duration::from_secs(3))
    );
    // The skipped timer fires 300 ms after the first loss; the next real
    // attempt is 3 s after the second. Nothing may happen in between.
    let quiet = (down_at + Duration::from_millis(1500)).saturating_duration_since(Instant::now());
    let early = downs.recv_timeout(quiet);
    assert!(early.is_err(), "the stale timer made an attempt: {early:?}");
    assert_eq!(client.stats().connect_failures, 2);
    conn.close();
    client.shutdown(TIMEOUT).unwrap();
}
