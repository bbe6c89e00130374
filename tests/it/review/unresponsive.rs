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

/// A live `wss://` client that only listens (it sends nothing, so the
/// heartbeat kicks it) answers the server's close frame at once, as
/// RFC 6455 asks, and then expects the TLS session to end with the
/// server's close_notify: nothing is queued, the socket is fine, the
/// goodbyes fit. Python's `ssl` over memory BIOs (tests/it/tls_peer.py)
/// says "EOF without close_notify" if the stream ends without one.
#[cfg(all(feature = "tls", feature = "ws"))]
const PY_IDLE_WSS: &str = r#"
import ssl
import sys
from tls_peer import Bio, context
port, cafile = int(sys.argv[1]), sys.argv[2]
bio = Bio(port, context(cafile, "1.3"))
bio.obj.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
bio.flush()
got = b""
while b"\r\n\r\n" not in got:
    got += bio.read()
assert got.startswith(b"HTTP/1.1 101"), got
rest = got[got.index(b"\r\n\r\n") + 4:]
# Silent from here on: wait for the heartbeat's close frame.
while len(rest) < 2 or len(rest) < 2 + (rest[1] & 0x7f):
    rest += bio.read()
assert rest[0] == 0x88, rest
code = rest[2:4]
# Answer it at once (masked, key 0), as an honest peer does.
bio.obj.write(b"\x88\x82\x00\x00\x00\x00" + code)
bio.flush()
# Then the server's close_notify (`read` gives b"" once it came) and the
# end of the stream; an end without it is a truncation.
after = b""
while True:
    data = bio.sock.recv(65536)
    if data:
        bio.inc.write(data)
    else:
        bio.inc.write_eof()
    try:
        while True:
            chunk = bio.obj.read(65536)
            if not chunk:
                print("clean close, code %d, %r after it" % (int.from_bytes(code, "big"), after))
                sys.exit(0)
            after += chunk
    except ssl.SSLWantReadError:
        if not data:
            sys.exit("EOF without close_notify")
    except ssl.SSLZeroReturnError:
        print("clean close, code %d, %r after it" % (int.from_bytes(code, "big"), after))
        sys.exit(0)
    except ssl.SSLEOFError as e:
        sys.exit("EOF without close_notify: %s" % e)
"#;

/// The heartbeat's kick of a live, listening `wss://` peer ends the TLS
/// session properly: close frame, the peer's answer, close_notify. (With
/// `Ending::Unresponsive` the WebSocket layer waits for the peer's close
/// frame, so close_notify is held back, and the flush finalizes at once:
/// the session ends without close_notify although everything was written.
/// Closed by the server for any `Ending::Ours` reason it ends cleanly.)
#[cfg(all(feature = "tls", feature = "ws"))]
#[test]
fn a_heartbeat_kick_of_a_live_wss_peer_ends_with_close_notify() {
    use std::sync::Arc;

    use crate::common::peers::{require, Peer};
    use crate::tls_support::{run_python, server_config, test_cert, TempFile};

    let Some(py) = require(Peer::Python3) else {
        return;
    };
    init_logs();
    let cert = test_cert();
    let ca = TempFile::new("ca.pem", &cert.cert_pem);
    let builder = Server::builder()
        .event_loops(1)
        .heartbeat(Duration::from_millis(50), Duration::from_millis(300))
        .close_linger(Duration::from_secs(5))
        .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)));
    let (builder, mut closes) = crate::common::track_closes(builder);
    let server = builder.bind_ws("127.0.0.1:0").unwrap().start().unwrap();
    let port = server.local_addr().port().to_string();
    let out = run_python(&py, PY_IDLE_WSS, &[&port, ca.arg()]);
    assert!(out.starts_with("clean close"), "{out}");
    let (_, reason) = closes.next();
    assert!(matches!(reason, CloseReason::IdleTimeout), "{reason}");
    server.shutdown(TIMEOUT).unwrap();
}
