//! A UDP session's life: opened by its first datagram (or refused by
//! `on_open`), kicked when quiet, closed by the application or by
//! shutdown, `on_close` once each; sessions on two loops whose slots look
//! alike keep apart.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netloom::{CloseReason, ConnId, Server, UdpConfig, UdpSession};

use super::{nothing_within, peer, recv_frames, start_udp, PEER};
use crate::common::peers::{require, Peer};
use crate::common::{echo, frame, track_closes, TIMEOUT};

#[test]
fn a_quiet_python_peer_is_closed_for_idle_timeout() {
    let Some(py) = require(Peer::Python3) else {
        return;
    };
    let mut udp = UdpConfig::default();
    udp.idle_timeout = Duration::from_millis(300);
    let (builder, mut closes) = track_closes(Server::builder().udp(udp).fallback(echo));
    let (server, addr) = start_udp(builder);
    let mut child = Command::new(py)
        .args([
            PEER,
            "once",
            &addr.ip().to_string(),
            &addr.port().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().trim_start_matches("local ").parse().unwrap();
    let python_addr = format!("127.0.0.1:{port}").parse().unwrap();
    // The reason arrives within TIMEOUT or the test fails.
    assert!(matches!(
        closes.reason_for(python_addr),
        CloseReason::IdleTimeout
    ));
    let _ = child.stdin.take().unwrap().write_all(b"bye\n");
    let _ = child.wait();
    assert_eq!(server.stats().connections, 0);
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn a_server_heartbeat_pings_a_udp_session_then_kicks_it() {
    let (builder, mut closes) = track_closes(
        Server::builder()
            .heartbeat(Duration::from_millis(20), Duration::from_millis(400))
            .ping_before_kick(Duration::from_millis(100), 77)
            .fallback(echo),
    );
    let (server, addr) = start_udp(builder);
    let s = peer();
    s.send_to(&frame(1, b"x"), addr).unwrap();
    assert_eq!(recv_frames(&s), vec![(1, b"x".to_vec())]);
    assert_eq!(recv_frames(&s), vec![(77, vec![])], "the ping");
    assert!(matches!(
        closes.reason_for(s.local_addr().unwrap()),
        CloseReason::IdleTimeout
    ));
    server.shutdown(TIMEOUT).unwrap();
}

#[test]
fn on_open_refuses_a_peer_and_its_datagram_goes_unhandled() {
    let refuse = Arc::new(AtomicBool::new(true));
    let r = refuse.clone();
    let (builder, mut closes) = track_closes(
        Server::builder()
            .on_open(move |s| {
                assert!(s.data().get::<UdpSession>().is_some(), "marked as UDP");
                if r.load(Ordering::SeqCst) {
                    Err(CloseReason::Rejected("not now".into()))
                } else {
                    Ok(())
                }
            })
            .fallback(echo),
    );
    let (server, addr) = start_udp(builder);
    let s = peer();
    s.send_to(&frame(1, b"first"), addr).unwrap();
    let me = s.local_addr().unwrap();
    assert!(matches!(closes.reason_for(me), CloseReason::Rejected(_)));
    assert!(
        nothing_within(&s, Duration::from_millis(200)),
        "a refused datagram was answered"
    );
    assert_eq!(server.stats().messages_in, 0);
    refuse.store(false, Ordering::SeqCst);
    s.send_to(&frame(1, b"again"), addr).unwrap();
    assert_eq!(recv_frames(&s), vec![(1, b"again".to_vec())]);
    server.shutdown(TIMEOUT).unwrap();
    assert!(matches!(closes.reason_for(me), CloseReason::Shutdown));
}

#[test]
fn shutdown_closes_every_session_once() {
    let (builder, mut closes) = track_closes(Server::builder().event_loops(2).fallback(echo));
    let (server, addr) = start_udp(builder);
    let peers: Vec<_> = (0..20).map(|_| peer()).collect();
    for p in &peers {
        p.send_to(&frame(1, b"hi"), addr).unwrap();
        assert_eq!(recv_frames(p).len(), 1);
    }
    server.shutdown(TIMEOUT).unwrap();
    let mut seen: Vec<_> = (0..20).map(|_| closes.next()).collect();
    assert!(
        seen.iter().all(|(_, r)| matches!(r, CloseReason::Shutdown)),
        "{seen:?}"
    );
    seen.sort_by_key(|(a, _)| *a);
    seen.dedup_by_key(|(a, _)| *a);
    assert_eq!(seen.len(), 20, "once each");
    assert!(closes.rx.try_recv().is_err(), "no second on_close");
}

#[test]
fn sessions_on_two_loops_with_alike_slots_stay_apart() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let (builder, mut closes) = track_closes(
        Server::builder()
            .event_loops(2)
            .on_open(move |s| {
                let _ = tx.send((s.peer_addr(), s.handle()));
                Ok::<_, CloseReason>(())
            })
            .fallback(echo),
    );
    let (server, addr) = start_udp(builder);
    // Peers until both loops have one in the same slot.
    let mut peers = Vec::new();
    let mut handles = Vec::new();
    let twins = loop {
        assert!(peers.len() < 200, "no twins on two loops");
        let p = peer();
        // Twice: the second datagram validates the peer, so the pushes
        // below are not held to three times what it sent.
        for _ in 0..2 {
            p.send_to(&frame(1, b"hi"), addr).unwrap();
            assert_eq!(recv_frames(&p).len(), 1);
        }
        let (at, handle) = rx.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(at, p.local_addr().unwrap());
        peers.push(p);
        handles.push(handle);
        let ids: Vec<ConnId> = handles.iter().map(|h| h.id()).collect();
        let last = *ids.last().unwrap();
        let twin = ids[..ids.len() - 1].iter().position(|id| {
            id.loop_index() != last.loop_index()
                && id.to_string().split(':').nth(1) == last.to_string().split(':').nth(1)
        });
        if let Some(i) = twin {
            break (i, ids.len() - 1);
        }
    };
    let (a, b) = twins;
    handles[a].send(2, b"to a").unwrap();
    handles[b].send(2, b"to b").unwrap();
    assert_eq!(recv_frames(&peers[a]), vec![(2, b"to a".to_vec())]);
    assert_eq!(recv_frames(&peers[b]), vec![(2, b"to b".to_vec())]);
    handles[a].close();
    assert!(matches!(
        closes.reason_for(peers[a].local_addr().unwrap()),
        CloseReason::Local
    ));
    handles[b].send(3, b"still here").unwrap();
    assert_eq!(recv_frames(&peers[b]), vec![(3, b"still here".to_vec())]);
    // The closed one's stale handle reaches nobody (what it sends is
    // dropped before the datagram below is even sent); its peer gets a new
    // session with its next datagram.
    let _ = handles[a].send(4, b"stale");
    handles[a].hub().stats(); // a round on no loop: just the order of sends
    peers[a].send_to(&frame(1, b"back"), addr).unwrap();
    assert_eq!(
        recv_frames(&peers[a]),
        vec![(1, b"back".to_vec())],
        "the stale send arrived"
    );
    let (_, fresh) = rx.recv_timeout(TIMEOUT).unwrap();
    assert_ne!(fresh.id(), handles[a].id());
    server.shutdown(TIMEOUT).unwrap();
}
