//! The inbound frame reader with arbitrary cut points: any packer (the
//! default on its fast path, the others through their vtable, a
//! decode-only one), any read size, plain or through a layer, and two
//! connections sharing the loop's reader, their reads interleaved, each
//! cut differently. Asserted: no panic; each connection's messages and
//! whether it closes are the same as for one read, and the same as
//! `Packer::decode` over the whole stream; what follows the last whole
//! frame is kept as the partial frame, whose allocation stays within
//! twice its bytes plus a few reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netloom::bench_internals::Reader;
use netloom::Message;
use netloom_fuzz::{chunks, packer, reference, Input};

/// One connection's progress: what it got, whether it closed.
#[derive(Default)]
struct Conn {
    got: Vec<Message>,
    failed: bool,
}

fn feed(reader: &mut Reader, id: usize, conn: &mut Conn, chunk: &[u8], read_size: usize) {
    if conn.failed {
        return;
    }
    let result = reader.feed(id, chunk, &mut conn.got);
    let (len, cap) = (reader.partial_len(id), reader.partial_capacity(id));
    assert!(
        cap <= 2 * len + 5 * read_size + 64,
        "{cap} bytes kept for a partial frame of {len} (reads of {read_size})"
    );
    conn.failed = result.is_err();
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let choice = input.byte();
    let read_size = match input.byte() {
        0 => 16 << 10,
        n => usize::from(n % 64) + 1,
    };
    let plain = input.byte() & 1 == 0;
    let (payload, lengths) = input.cuts();
    let reversed: Vec<usize> = lengths.iter().rev().copied().collect();

    let (server, client) = packer(choice);
    let (want, want_err) = reference(&*client, payload);

    let mut shared = Reader::new(server, read_size, plain, 2);
    let (mut a, mut b) = (Conn::default(), Conn::default());
    let mut cuts_a = chunks(payload, &lengths);
    let mut cuts_b = chunks(payload, &reversed);
    loop {
        let (ca, cb) = (cuts_a.next(), cuts_b.next());
        if ca.is_none() && cb.is_none() {
            break;
        }
        if let Some(c) = ca {
            feed(&mut shared, 0, &mut a, c, read_size);
        }
        if let Some(c) = cb {
            feed(&mut shared, 1, &mut b, c, read_size);
        }
    }
    for conn in [&a, &b] {
        assert_eq!(conn.got, want, "cut reads and decode disagree");
        assert_eq!(
            conn.failed, want_err,
            "cut reads and decode disagree on closing"
        );
    }

    let (server, _) = packer(choice);
    let mut whole = Reader::new(server, read_size, plain, 1);
    let mut one = Conn::default();
    feed(&mut whole, 0, &mut one, payload, read_size);
    assert_eq!(
        (one.got, one.failed),
        (a.got, a.failed),
        "one read and cut reads disagree"
    );
    if !a.failed {
        let mut enc = netloom::bytes::BytesMut::new();
        for m in &want {
            client
                .encode(m.id, m.seq, &m.body, &mut enc)
                .expect("encode");
        }
        let left = payload.len() - enc.len();
        assert_eq!(whole.partial_len(0), left, "partial frame kept (one read)");
        assert_eq!(
            shared.partial_len(0),
            left,
            "partial frame kept (cut reads)"
        );
        assert_eq!(
            shared.partial_len(1),
            left,
            "partial frame kept (other cuts)"
        );
    }
});
