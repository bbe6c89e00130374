//! The UDP datagram path (`transport::udp::decode_datagram`): any packer,
//! any datagram. Asserted: no panic; a datagram is handled whole or not
//! at all: accepted exactly when `Packer::decode` reads it to its end
//! without an error, with the same messages; a dropped one leaves none.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netloom::bench_internals::Datagrams;
use netloom_fuzz::{packer, reference, Input};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let (server, client) = packer(input.byte());
    let datagram = input.rest();
    let (want, want_err) = reference(&*client, datagram);
    let mut whole = netloom::bytes::BytesMut::new();
    for m in &want {
        client
            .encode(m.id, m.seq, &m.body, &mut whole)
            .expect("encode");
    }
    let complete = !want_err && whole.len() == datagram.len();

    let (got, result) = Datagrams::new(server).decode(datagram);
    match result {
        Ok(()) => {
            assert!(complete, "a datagram with a bad or cut frame was accepted");
            assert_eq!(got, want);
        }
        Err(_) => {
            assert!(!complete, "a datagram of whole frames was dropped");
            assert!(got.is_empty(), "a dropped datagram left messages");
        }
    }
});
