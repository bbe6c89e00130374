//! An honest WebSocket client sending messages each well under the
//! partial-frame budget, back to back, must not be closed as a memory hog:
//! tungstenite's buffer for the frame it already finished must not stay
//! held (and counted) while the next frame arrives.

use std::time::Duration;

use netloom::{ws, CloseReason, Server};

use crate::common::{track_closes, TIMEOUT};
use crate::ws_raw::RawWs;

#[test]
fn messages_under_the_budget_back_to_back_are_echoed() {
    crate::common::init_logs();
    let (builder, mut closes) = track_closes(
        Server::builder()
            .event_loops(2)
            .max_partial_bytes(1 << 20)
            .ws_max_message(4 << 20)
            .route(ws::BINARY, |ctx| ctx.reply(ws::BINARY, ctx.body())),
    );
    let server = builder.bind_ws("127.0.0.1:0").unwrap().start().unwrap();
    let mut raw = RawWs::connect(server.local_addr(), "/");
    raw.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    // Three messages of 600 KiB (each 60% of the budget), in one write.
    let body = vec![0x5a; 600 << 10];
    let mut frames = Vec::new();
    for _ in 0..3 {
        frames.extend(masked(&body));
    }
    let writer = {
        let mut stream = raw.stream.try_clone().unwrap();
        std::thread::spawn(move || std::io::Write::write_all(&mut stream, &frames))
    };
    for i in 0..3 {
        match raw.recv() {
            Some((0x82, echoed)) => assert!(echoed == body, "echo {i} differs"),
            other => {
                let reason = closes.next().1;
                panic!(
                    "echo {i}: {:?} (closed: {reason}); {}",
                    other.map(|(f, p)| (f, p.len())),
                    server.stats()
                );
            }
        }
    }
    let _ = writer.join();
    assert_eq!(server.stats().closed_by(&CloseReason::MemoryLimit), 0);
    drop(raw);
    server.shutdown(Duration::from_secs(5)).unwrap();
}

/// A masked binary frame (mask key 0: the payload goes as it is).
fn masked(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x82, 0x80 | 127];
    f.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(payload);
    f
}
