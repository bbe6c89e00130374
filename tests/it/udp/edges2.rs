//! Edges of UDP found in the second review of issue 23 (the client side,
//! `Dial::udp`, and the fixes of 38ad836): each test names a behaviour
//! that must hold, and failed on 7825af3.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netloom::{DatagramDrop, Dial, Error, Exec, SeqPacker, Server};

use super::start_udp;
use crate::common::{echo, init_logs, wait_until, TIMEOUT};

#[test]
fn a_udp_dial_to_the_unspecified_address_hears_its_replies_or_is_refused() {
    // A TCP dial to 0.0.0.0:port reaches the local host (Linux connects
    // it to 127.0.0.1); a UDP dial's datagrams do too (the server below
    // answers them), but its socket is connected to 127.0.0.1, the
    // replies come from there, and the dial's session is keyed by
    // 0.0.0.0:port: every reply is dropped as `Closing`. Either the dial
    // works or `Hub::dial` refuses it as `bind_udp` refuses a wildcard.
    let (server, addr) = start_udp(
        Server::builder()
            .packer(SeqPacker::default())
            .route(1, echo),
    );
    let client = Server::builder()
        .packer(SeqPacker::default())
        .start()
        .unwrap();
    let wild: SocketAddr = format!("0.0.0.0:{}", addr.port()).parse().unwrap();
    let got = match client.hub().dial(Dial::new(wild).udp()) {
        Err(Error::Config(_)) => None,
        Err(e) => panic!("{e}"),
        Ok(link) => Some(
            link.request(1, b"hi", Duration::from_secs(1))
                .unwrap()
                .wait(),
        ),
    };
    let (stats, answered) = (client.stats(), server.stats().datagrams_out);
    client.shutdown(TIMEOUT).unwrap();
    server.shutdown(TIMEOUT).unwrap();
    if let Some(got) = got {
        assert!(
            got.is_ok(),
            "the server answered {answered} datagram(s), the dial got {got:?}: {stats}"
        );
    }
}

#[test]
fn a_udp_dials_replies_are_matched_while_its_push_handlers_are_behind() {
    // Replies to a dial's requests are matched on the loop and run no
    // handler (dispatch/mod.rs), so a backlog of *pushes* waiting for the
    // logic thread has nothing to do with them. Yet a UDP dial over
    // `exec_backlog` drops whole datagrams (`DatagramDrop::Backlog`),
    // replies included: its requests time out although every reply came
    // (and a pool with `close_after_timeouts` closes the link). A TCP
    // dial is never paused for it (`ConnTable::may_pause`).
    init_logs();
    let (server, addr) = start_udp(
        Server::builder()
            .packer(SeqPacker::default())
            .route(1, echo)
            .route(2, |ctx| {
                ctx.validate_udp_peer();
                (0..40).try_for_each(|_| ctx.send(5, [1u8; 1000]))
            }),
    );
    let (gate_tx, gate_rx) = crossbeam_channel::unbounded::<()>();
    let (started_tx, started_rx) = crossbeam_channel::unbounded::<()>();
    let client = Server::builder()
        .packer(SeqPacker::default())
        .exec(Exec::Single)
        .exec_backlog(8 << 10)
        .route(5, move |_ctx| {
            let _ = started_tx.send(());
            let _ = gate_rx.recv_timeout(TIMEOUT);
            Ok::<_, Error>(())
        })
        .start()
        .unwrap();
    let link = client.hub().dial(Dial::new(addr).udp()).unwrap();
    link.send(2, b"").unwrap();
    started_rx.recv_timeout(TIMEOUT).unwrap();
    wait_until("the pushes came", || client.stats().datagrams_in >= 40);
    let t = Instant::now();
    let during = link
        .request(1, b"during", Duration::from_secs(1))
        .unwrap()
        .wait();
    let took = t.elapsed();
    for _ in 0..40 {
        let _ = gate_tx.send(());
    }
    let (stats, answered) = (client.stats(), server.stats().datagrams_out);
    client.shutdown(TIMEOUT).unwrap();
    server.shutdown(TIMEOUT).unwrap();
    assert!(
        during.is_ok(),
        "{during:?} after {took:?}; the server sent {answered} datagrams, \
         {} dropped for the backlog: {stats}",
        stats.datagrams_dropped(DatagramDrop::Backlog)
    );
}
