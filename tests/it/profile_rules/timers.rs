//! A profile's heartbeat is its own: it kicks an idle link of the profile
//! while the server's clients, under a longer heartbeat, stay; and a
//! profile without one keeps its idle link while the server's heartbeat
//! kicks idle clients.

use std::time::{Duration, Instant};

use netloom::{CloseReason, Dial, Profile, SeqPacker, Server};

use super::{next_peer, seq_peers};
use crate::common::{echo, start_tracked, Client, TIMEOUT};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_profiles_heartbeat_kicks_its_idle_link_and_leaves_the_servers_clients() {
    let (gateway, mut closes) = start_tracked(
        Server::builder()
            .event_loops(2)
            .heartbeat(Duration::from_secs(1), Duration::from_secs(60))
            .route(1, echo)
            .profile(
                "backend",
                Profile::new()
                    .packer(SeqPacker::default())
                    .heartbeat(ms(20), ms(300)),
            ),
    );
    // Clients on both loops, silent from now on.
    let mut clients: Vec<Client> = (0..2)
        .map(|_| Client::connect(gateway.local_addr()))
        .collect();
    let (addr, peers) = seq_peers();
    let started = Instant::now();
    let _link = gateway
        .hub()
        .dial(Dial::new(addr).profile("backend"))
        .unwrap();
    let mut peer = next_peer(&peers);
    let reason = closes.reason_for(addr);
    assert!(matches!(reason, CloseReason::IdleTimeout), "{reason:?}");
    let idle = started.elapsed();
    assert!(
        idle >= ms(300),
        "kicked after {idle:?}, before its idle timeout"
    );
    assert!(peer.try_recv().is_err(), "the link was closed");
    // The clients, silent at least as long, are served as ever.
    for client in &mut clients {
        client.send(1, b"still here");
        assert_eq!(client.recv(), (1, b"still here".to_vec()));
    }
    assert!(closes.rx.try_recv().is_err(), "nothing else was closed");
    gateway.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_profile_without_heartbeat_keeps_its_link_while_the_server_kicks_clients() {
    let (gateway, mut closes) = start_tracked(
        Server::builder()
            .event_loops(2)
            .heartbeat(ms(20), ms(300))
            .profile("backend", Profile::new().packer(SeqPacker::default())),
    );
    let (addr, peers) = seq_peers();
    let link = gateway
        .hub()
        .dial(Dial::new(addr).profile("backend"))
        .unwrap();
    let mut peer = next_peer(&peers);
    let mut client = Client::connect(gateway.local_addr());
    let client_addr = client.stream.local_addr().unwrap();
    let reason = closes.reason_for(client_addr);
    assert!(matches!(reason, CloseReason::IdleTimeout), "{reason:?}");
    client.expect_closed();
    // The link, silent for longer than that, is still open.
    link.send(3, b"alive").unwrap();
    assert_eq!(peer.recv(), (3, 0, b"alive".to_vec()));
    assert!(closes.rx.try_recv().is_err(), "the link was not closed");
    gateway.shutdown(TIMEOUT).unwrap();
}
