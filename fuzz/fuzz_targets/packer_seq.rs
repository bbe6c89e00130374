//! `SeqPacker`: decode any bytes (default limit, or a small one that makes
//! `TooLong` reachable); see `check_packer` for what is asserted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netloom::SeqPacker;
use netloom_fuzz::{check_packer, Input};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let packer = if input.byte() & 1 == 0 {
        SeqPacker::default()
    } else {
        SeqPacker::new(64)
    };
    check_packer(&packer, input.rest(), true);
});
