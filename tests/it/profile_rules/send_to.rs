//! One message from the `Hub` to a client and to a profile's link:
//! encoded once per format, each recipient decoding its own (the client
//! `LengthPacker`'s 8-byte header, the link `SeqPacker`'s 12-byte one),
//! small bodies copied and large ones shared. `Hub::broadcast` leaves
//! dialed links out, whatever their profile. A message the profile's
//! packer refuses misses the link only (counted), and what follows still
//! reaches it whole.

use bytes::Bytes;
use crossbeam_channel::unbounded;
use netloom::{ConnId, Dial, Profile, SeqPacker, Server};

use super::{next_peer, seq_peers};
use crate::common::{start, wait_until, Client, TIMEOUT};

#[test]
fn send_to_reaches_a_client_and_a_profile_link_each_in_its_format() {
    let (opened_tx, opened) = unbounded();
    let gateway = start(
        Server::builder()
            .event_loops(2)
            .on_open(move |s| {
                let _ = opened_tx.send(s.id());
            })
            .profile("seq", Profile::new().packer(SeqPacker::new(64 << 10))),
    );
    let hub = gateway.hub();
    let (addr, peers) = seq_peers();
    let link = hub.dial(Dial::new(addr).profile("seq")).unwrap();
    let mut peer = next_peer(&peers);
    let mut client = Client::connect(gateway.local_addr());
    let client_id: ConnId = loop {
        let id = opened
            .recv_timeout(TIMEOUT)
            .expect("on_open for the client");
        if id != link.id() {
            break id;
        }
    };
    let both = [client_id, link.id()];

    hub.send_to(both, 42, b"news").unwrap();
    assert_eq!(client.recv(), (42, b"news".to_vec()));
    assert_eq!(peer.recv(), (42, 0, b"news".to_vec()));

    let large: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    hub.send_to_bytes(both, 43, Bytes::from(large.clone()))
        .unwrap();
    assert_eq!(client.recv(), (43, large.clone()));
    assert_eq!(peer.recv(), (43, 0, large));

    // A broadcast reaches the client only.
    hub.broadcast(44, b"clients only").unwrap();
    assert_eq!(client.recv(), (44, b"clients only".to_vec()));

    // Over the profile's body limit (64 KiB), not the server's (1 MiB).
    let errors = hub.stats().send_errors;
    let huge = vec![7u8; 100 << 10];
    hub.send_to(both, 45, &huge).unwrap();
    assert_eq!(client.recv(), (45, huge));
    wait_until("the link's miss to be counted", || {
        hub.stats().send_errors == errors + 1
    });
    hub.send_to(both, 46, b"after").unwrap();
    assert_eq!(client.recv(), (46, b"after".to_vec()));
    assert_eq!(
        peer.recv(),
        (46, 0, b"after".to_vec()),
        "nothing of 45 reached it"
    );
    gateway.shutdown(TIMEOUT).unwrap();
}
