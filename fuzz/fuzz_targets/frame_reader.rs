//! The inbound frame reader with arbitrary cut points: any packer (the
//! default on its fast path, the others through their vtable, a
//! decode-only one), any read size, plain or through a layer. Asserted:
//! no panic; the messages and whether the connection closes are the same
//! however the stream is cut into reads, and the same as
//! `Packer::decode` over the whole stream; what follows the last whole
//! frame is kept as the partial frame, whose allocation stays within
//! twice its bytes plus a few reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netloom::bench_internals::Reader;
use netloom_fuzz::{chunks, packer, reference, Input};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let choice = input.byte();
    let read_size = match input.byte() {
        0 => 16 << 10,
        n => usize::from(n % 64) + 1,
    };
    let plain = input.byte() & 1 == 0;
    let (payload, lengths) = input.cuts();

    let (server, client) = packer(choice);
    let (want, want_err) = reference(&*client, payload);

    let mut cut = Reader::new(server, read_size, plain);
    let mut got = Vec::new();
    let mut failed = false;
    for chunk in chunks(payload, &lengths) {
        let result = cut.feed(chunk, &mut got);
        // A partial frame's memory follows the bytes that arrived (at
        // most doubling), plus a few reads' worth of room.
        let (len, cap) = (cut.partial_len(), cut.partial_capacity());
        assert!(
            cap <= 2 * len + 5 * read_size + 64,
            "{cap} bytes kept for a partial frame of {len} (reads of {read_size})"
        );
        if result.is_err() {
            failed = true;
            break;
        }
    }
    assert_eq!(got, want, "cut reads and decode disagree");
    assert_eq!(failed, want_err, "cut reads and decode disagree on closing");

    let (server, _) = packer(choice);
    let mut whole = Reader::new(server, read_size, plain);
    let mut one = Vec::new();
    let one_failed = whole.feed(payload, &mut one).is_err();
    assert_eq!(
        (one, one_failed),
        (got, failed),
        "one read and cut reads disagree"
    );
    if !failed {
        let consumed: usize = {
            let mut enc = netloom::bytes::BytesMut::new();
            for m in &want {
                client
                    .encode(m.id, m.seq, &m.body, &mut enc)
                    .expect("encode");
            }
            enc.len()
        };
        assert_eq!(
            whole.partial_len(),
            payload.len() - consumed,
            "partial frame kept"
        );
    }
});
