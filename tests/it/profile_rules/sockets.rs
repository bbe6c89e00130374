//! A profile's socket options reach its sockets: with `linger(Some(0))`
//! closing its link resets it (the peer's read fails with "connection
//! reset"), while the server's own dial, without SO_LINGER, ends with an
//! ordinary FIN (the peer reads end of file). The options themselves are
//! read back from real sockets by `sys`'s unit tests.

use std::io::{ErrorKind, Read};
use std::time::Duration;

use netloom::{CloseReason, Dial, Profile, SeqPacker, Server};

use super::{next_peer, seq_peers, SeqPeer};
use crate::common::{start_tracked, TIMEOUT};

/// What `peer` reads once the other side closed: end of file (`Ok`) or
/// the error.
fn read_after_close(peer: &mut SeqPeer) -> std::io::Result<usize> {
    let mut buf = [0u8; 64];
    peer.stream.read(&mut buf)
}

#[test]
fn linger_zero_on_a_profile_resets_its_link_and_only_its() {
    let (gateway, mut closes) = start_tracked(
        Server::builder()
            .event_loops(2)
            .packer(SeqPacker::default())
            .profile(
                "abrupt",
                Profile::new()
                    .packer(SeqPacker::default())
                    .linger(Some(Duration::ZERO))
                    .keepalive(Duration::from_secs(30))
                    .recv_buffer_size(64 << 10)
                    .send_buffer_size(64 << 10),
            ),
    );
    let hub = gateway.hub();
    let ((abrupt_addr, abrupt_peers), (plain_addr, plain_peers)) = (seq_peers(), seq_peers());
    let abrupt = hub.dial(Dial::new(abrupt_addr).profile("abrupt")).unwrap();
    let plain = hub.dial(Dial::new(plain_addr)).unwrap();
    let (mut abrupt_peer, mut plain_peer) = (next_peer(&abrupt_peers), next_peer(&plain_peers));
    // Both are open (and carry messages) before they are closed.
    abrupt.send(1, b"a").unwrap();
    plain.send(1, b"p").unwrap();
    assert_eq!(abrupt_peer.recv(), (1, 0, b"a".to_vec()));
    assert_eq!(plain_peer.recv(), (1, 0, b"p".to_vec()));

    abrupt.close();
    plain.close();
    let reason = closes.reason_for(abrupt_addr);
    assert!(matches!(reason, CloseReason::Local), "{reason:?}");
    let reason = closes.reason_for(plain_addr);
    assert!(matches!(reason, CloseReason::Local), "{reason:?}");
    match read_after_close(&mut abrupt_peer) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(n) => panic!("read {n} bytes, not a reset"),
    }
    assert_eq!(
        read_after_close(&mut plain_peer).unwrap(),
        0,
        "an ordinary close"
    );
    gateway.shutdown(TIMEOUT).unwrap();
}
