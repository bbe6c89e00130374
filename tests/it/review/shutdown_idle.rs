//! review32: `close_all_now` counts TLS records not yet written
//! (`Conn::unsent`). A shutdown with a short deadline must still say `Ok`
//! for connections that have nothing left to write: idle tls:// and wss://
//! clients that read everything, and a wss:// client that never answers
//! the close frame (it holds its connection to the deadline).

use std::io::Read;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use netloom::ws;
use netloom::Server;

use crate::common::echo;
use crate::tls_support::{client_config, server_config, test_cert, TlsPeer, ECHO};
use crate::ws_raw::upgrade_request;

#[test]
fn shutdown_with_an_idle_tls_client_that_read_everything_is_ok() {
    crate::common::init_logs();
    let cert = test_cert();
    let server = Server::builder()
        .event_loops(1)
        .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)))
        .route(ECHO, echo)
        .bind("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut peers: Vec<TlsPeer> = (0..4)
        .map(|_| TlsPeer::connect(server.local_addr(), client_config(&cert)))
        .collect();
    for p in &mut peers {
        p.assert_echoes(&vec![7u8; 256 << 10]);
    }
    // Readers that take everything, close_notify included.
    let readers: Vec<_> = peers
        .into_iter()
        .map(|mut p| thread::spawn(move || p.read_to_end().map(|r| r.len())))
        .collect();
    let stats_before = server.stats();
    assert_eq!(stats_before.unflushed_closes, 0);
    let result = server.shutdown(Duration::from_millis(500));
    for r in readers {
        assert_eq!(r.join().unwrap().expect("close_notify"), 0);
    }
    assert!(result.is_ok(), "{result:?}");
}

/// A wss:// client that reads everything and never answers the server's
/// close frame: the connection waits for it until the deadline, with
/// nothing left to write.
#[test]
fn shutdown_with_a_wss_client_that_never_answers_the_close_frame_is_ok() {
    crate::common::init_logs();
    let cert = test_cert();
    let server = Server::builder()
        .event_loops(1)
        .tls(Arc::new(server_config(&cert, rustls::ALL_VERSIONS)))
        .route(ws::BINARY, |ctx| {
            ctx.reply(ws::BINARY, vec![5u8; 100 << 10])
        })
        .bind_ws("127.0.0.1:0")
        .unwrap()
        .start()
        .unwrap();
    let mut peer = TlsPeer::connect(server.local_addr(), client_config(&cert));
    peer.send_raw(upgrade_request("/").as_bytes());
    // "go", masked with key 0.
    peer.send_raw(&[0x82, 0x82, 0, 0, 0, 0, b'g', b'o']);
    // The 101, then the reply (10 bytes of frame header).
    let mut got = Vec::new();
    let mut chunk = [0u8; 16 << 10];
    loop {
        let n = peer.s.read(&mut chunk).expect("the reply");
        assert!(n > 0, "closed before the reply");
        got.extend_from_slice(&chunk[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() - end - 4 >= (100 << 10) + 10 {
                break;
            }
        }
    }
    let reader = thread::spawn(move || {
        let mut got = 0usize;
        let mut chunk = [0u8; 16 << 10];
        loop {
            match peer.s.read(&mut chunk) {
                Ok(0) => return Ok(got),
                Ok(n) => got += n,
                Err(e) => return Err((e, got)),
            }
        }
    });
    let result = server.shutdown(Duration::from_millis(500));
    let read = reader.join().unwrap();
    println!("read: {read:?}; shutdown: {result:?}");
    assert!(result.is_ok(), "{result:?}");
}
