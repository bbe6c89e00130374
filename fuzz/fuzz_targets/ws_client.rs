//! The WebSocket layer as a dial's client, over its in-memory adapter: a
//! valid 101 answer to its request (with the accept key of its fresh
//! key) put first, or the fuzzer's own answer, then the server's frames,
//! in message or packer mode, cut into reads anywhere. Asserted: no
//! panic; what is held for an unfinished head, frame or message stays
//! within twice the bytes received (plus 4 KiB); the messages delivered,
//! the packer stream and whether the connection closes are the same
//! however the bytes are cut.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netloom::bench_internals::WsClient;
use netloom::Message;
use netloom_fuzz::{chunks, Input};

/// A 101 answer to `request`, accepting its key.
fn answer(request: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(request);
    let key = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("sec-websocket-key: ")
                .or_else(|| l.strip_prefix("Sec-WebSocket-Key: "))
        })
        .expect("a key in the request");
    let accept = tungstenite::handshake::derive_accept_key(key.trim().as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

fn run(
    packer: bool,
    valid: bool,
    payload: &[u8],
    lengths: &[usize],
) -> (Vec<Message>, Vec<u8>, bool) {
    let mut ws = WsClient::new(packer).expect("dial");
    let request = ws.take_request();
    let mut stream = Vec::new();
    let mut lengths = lengths.to_vec();
    if valid {
        stream = answer(&request);
        match lengths.first_mut() {
            Some(first) => *first += stream.len(),
            None => lengths.push(stream.len()),
        }
    }
    stream.extend_from_slice(payload);
    let mut got = Vec::new();
    let mut bytes = Vec::new();
    let mut failed = false;
    let mut fed = 0;
    for chunk in chunks(&stream, &lengths) {
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
    let valid = flags & 2 == 0;
    let (payload, lengths) = input.cuts();
    let cut = run(packer, valid, payload, &lengths);
    let whole = run(packer, valid, payload, &[payload.len()]);
    assert_eq!(cut, whole, "cut points changed what the session delivered");
});
