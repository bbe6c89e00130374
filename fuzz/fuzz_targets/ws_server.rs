//! The WebSocket layer as a server, over its in-memory adapter: an
//! upgrade request (a valid one put first, or the fuzzer's own), then
//! frames, in message or packer mode, cut into reads anywhere. Asserted:
//! no panic; what is held for an unfinished head, frame or message
//! stays within twice the bytes received (plus 4 KiB); the messages delivered, the packer stream and whether the
//! connection closes are the same however the bytes are cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netloom::bench_internals::WsServer;
use netloom::Message;
use netloom_fuzz::{chunks, Input};

const REQUEST: &[u8] = b"GET /p?q=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

fn run(
    packer: bool,
    max: usize,
    stream: &[u8],
    lengths: &[usize],
) -> (Vec<Message>, Vec<u8>, bool) {
    let mut ws = WsServer::new(packer, max).expect("settings");
    let mut got = Vec::new();
    let mut bytes = Vec::new();
    let mut failed = false;
    let mut fed = 0;
    for chunk in chunks(stream, lengths) {
        let result = ws.feed(chunk, &mut got);
        fed += chunk.len();
        // What is held for an unfinished head, frame or message follows
        // the bytes that arrived.
        assert!(
            ws.held() <= 2 * fed + 4096,
            "{} bytes held after {fed} received",
            ws.held()
        );
        bytes.extend_from_slice(&ws.take_stream());
        ws.take_output();
        if result.is_err() {
            failed = true;
            break;
        }
    }
    (got, bytes, failed)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let packer = flags & 1 != 0;
    let max = if flags & 2 != 0 { 64 } else { 1 << 20 };
    let with_request = flags & 4 == 0;
    let (payload, lengths) = input.cuts();
    let mut stream = Vec::new();
    if with_request {
        stream.extend_from_slice(REQUEST);
    }
    stream.extend_from_slice(payload);
    // The request's bytes go in the first chunk.
    let mut lengths = lengths;
    match lengths.first_mut() {
        Some(first) if with_request => *first += REQUEST.len(),
        None if with_request => lengths.push(REQUEST.len()),
        _ => {}
    }

    let cut = run(packer, max, &stream, &lengths);
    let whole = run(packer, max, &stream, &[stream.len()]);
    assert_eq!(cut, whole, "cut points changed what the session delivered");
});
