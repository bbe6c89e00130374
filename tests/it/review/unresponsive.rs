//! Review of issue 26's `Ending::Unresponsive` (a connection closed by its
//! heartbeat, a failed health check or repeated request timeouts does not
//! linger to flush): what `Stats::unflushed_closes` says for a dialed link.

use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, unbounded};
use netloom::{CloseReason, Context, Dial, Profile, Reconnect, SeqPacker, Server};

use crate::common::{init_logs, wait_until, TIMEOUT};

/// A dialed link whose backend accepted and then reads nothing (a naive
/// backend, or a vanished one: the same from here) is dropped by its
/// heartbeat with far more queued than the socket takes. That is one
/// close that dropped data: `unflushed_closes` must say 1, not count the
/// same close twice (once in the flush that gives up on an unresponsive
/// peer, once again when the link keeps its unstarted frames for the next
/// socket).
#[test]
fn a_link_dropped_by_its_heartbeat_with_data_queued_counts_one_unflushed_close() {
    init_logs();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop) = bounded::<()>(1);
    // Accepts the link and holds it without reading a byte.
    let backend = thread::spawn(move || {
        let (held, _) = listener.accept().unwrap();
        let _ = stop.recv_timeout(TIMEOUT * 3);
        drop((held, listener));
    });
    let (down_tx, downs) = unbounded();
    let server = Server::builder()
        .event_loops(1)
        .packer(SeqPacker::default())
        .close_linger(Duration::from_secs(5))
        .write_high_water(64 << 20)
        .profile(
            "link",
            Profile::new()
                .packer(SeqPacker::default())
                .heartbeat(Duration::from_millis(50), Duration::from_millis(400))
                .route(2, |_ctx: &mut Context<'_>| ()),
        )
        .on_disconnect(move |_s, d| {
            let _ = down_tx.send(d.clone());
        })
        .start()
        .unwrap();
    let hub = server.hub();
    // Its next attempt is far off: only the heartbeat's drop is looked at.
    let policy = Reconnect {
        initial: Duration::from_secs(60),
        factor: 1.0,
        max: Duration::from_secs(60),
        jitter: 0.0,
        max_attempts: None,
    };
    let link = hub
        .dial(Dial::new(addr).profile("link").reconnect(policy))
        .unwrap();
    wait_until("the link open", || hub.stats().connects == 1);
    // 16 MiB: more than the socket buffers of both ends hold.
    for _ in 0..64 {
        link.send(2, vec![7u8; 256 << 10]).unwrap();
    }
    let down = downs.recv_timeout(TIMEOUT).expect("on_disconnect");
    assert!(
        matches!(down.reason, CloseReason::IdleTimeout),
        "{:?}",
        down.reason
    );
    let stats = hub.stats();
    assert_eq!(
        stats.unflushed_closes, 1,
        "one close dropped data (a frame cut in the middle): {stats}"
    );
    link.close();
    server.shutdown(TIMEOUT).unwrap();
    let _ = stop_tx.send(());
    backend.join().unwrap();
}
