//! MessagePack (rmp-serde) for handlers. Structs go as maps with their
//! field names (what other MessagePack peers, and hotpot's, expect).

use serde::{Deserialize, Serialize};

use super::{with_scratch, DecodeError};
use crate::dispatch::context::{Context, Session};
use crate::error::Result;

impl<'a> Context<'a> {
    /// The body decoded from MessagePack as a `T`, which may borrow from
    /// it. See [`json`](Self::json).
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the body is not MessagePack of type `T`.
    pub fn msgpack<T: Deserialize<'a>>(&self) -> std::result::Result<T, DecodeError> {
        // rmp-serde's own bound (1 024 levels) overflows a loop thread's
        // stack in a debug build, and it does not count the one-entry maps
        // of nested enums at all: the body's nesting is checked first,
        // without recursion (serde_json's bound is 128 too).
        if !nesting_within(self.body, MAX_DEPTH) {
            return Err(DecodeError::new(
                "msgpack",
                self.id,
                format_args!("nested deeper than {MAX_DEPTH}"),
            ));
        }
        let mut de = rmp_serde::Deserializer::from_read_ref(self.body);
        de.set_max_depth(MAX_DEPTH);
        T::deserialize(&mut de).map_err(|e| DecodeError::new("msgpack", self.id, e))
    }

    /// Answer this message with `value` encoded as MessagePack.
    ///
    /// # Errors
    ///
    /// As [`reply_json`](Self::reply_json).
    pub fn reply_msgpack<T: Serialize + ?Sized>(&self, id: u32, value: &T) -> Result<()> {
        with_scratch(|buf| encode(buf, value), |body| self.reply(id, body))
    }
}

impl Session<'_> {
    /// Send `value` encoded as MessagePack with message id `id`.
    ///
    /// # Errors
    ///
    /// As [`Context::reply_json`].
    pub fn send_msgpack<T: Serialize + ?Sized>(&self, id: u32, value: &T) -> Result<()> {
        with_scratch(|buf| encode(buf, value), |body| self.send(id, body))
    }
}

/// How deep a MessagePack body may nest (arrays and maps in each other).
const MAX_DEPTH: usize = 128;

/// Whether the arrays and maps of a MessagePack `body` nest at most `max`
/// deep (walked without recursion: each value costs at least a byte, so
/// the walk ends with the body). A body cut short or malformed passes:
/// the decoder says what is wrong with it.
fn nesting_within(mut body: &[u8], max: usize) -> bool {
    use rmp::Marker;
    // Values still to read in each open array or map (the root first).
    let mut open: Vec<u64> = vec![1];
    while let Some(left) = open.last_mut() {
        if *left == 0 {
            open.pop();
            continue;
        }
        *left -= 1;
        let Some((&byte, rest)) = body.split_first() else {
            return true;
        };
        body = rest;
        let be = |n: usize, b: &[u8]| -> Option<u64> {
            b.get(..n)
                .map(|x| x.iter().fold(0u64, |acc, &d| acc << 8 | u64::from(d)))
        };
        // Bytes the value takes after its marker, or the values it holds.
        let (skip, holds) = match Marker::from_u8(byte) {
            Marker::FixArray(n) => (0, Some(u64::from(n))),
            Marker::FixMap(n) => (0, Some(2 * u64::from(n))),
            Marker::Array16 => (2, be(2, body)),
            Marker::Array32 => (4, be(4, body)),
            Marker::Map16 => (2, be(2, body).map(|n| 2 * n)),
            Marker::Map32 => (4, be(4, body).map(|n| 2 * n)),
            Marker::FixStr(n) => (usize::from(n), None),
            Marker::Str8 | Marker::Bin8 => (1 + be(1, body).unwrap_or(0) as usize, None),
            Marker::Str16 | Marker::Bin16 => (2 + be(2, body).unwrap_or(0) as usize, None),
            Marker::Str32 | Marker::Bin32 => (4 + be(4, body).unwrap_or(0) as usize, None),
            Marker::Ext8 => (2 + be(1, body).unwrap_or(0) as usize, None),
            Marker::Ext16 => (3 + be(2, body).unwrap_or(0) as usize, None),
            Marker::Ext32 => (5 + be(4, body).unwrap_or(0) as usize, None),
            Marker::FixExt1 => (2, None),
            Marker::FixExt2 => (3, None),
            Marker::FixExt4 => (5, None),
            Marker::FixExt8 => (9, None),
            Marker::FixExt16 => (17, None),
            Marker::U8 | Marker::I8 => (1, None),
            Marker::U16 | Marker::I16 => (2, None),
            Marker::U32 | Marker::I32 | Marker::F32 => (4, None),
            Marker::U64 | Marker::I64 | Marker::F64 => (8, None),
            _ => (0, None),
        };
        let Some(rest) = body.get(skip.min(body.len())..) else {
            return true;
        };
        body = rest;
        if let Some(n) = holds {
            open.push(n);
            // The root is not a level.
            if open.len() > max + 1 {
                return false;
            }
        }
    }
    true
}

fn encode<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) -> std::result::Result<(), String> {
    value
        .serialize(&mut rmp_serde::Serializer::new(buf).with_struct_map())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::nesting_within;

    #[test]
    fn nesting_counts_arrays_and_maps_and_skips_everything_else() {
        // [[1]] is two levels; {"a": [1, "xy"]} two; 128 arrays pass.
        assert!(nesting_within(&[0x91, 0x91, 0x01], 2));
        assert!(!nesting_within(&[0x91, 0x91, 0x01], 1));
        assert!(nesting_within(
            &[0x81, 0xa1, b'a', 0x92, 0x01, 0xa2, b'x', b'y'],
            2
        ));
        let deep = |n: usize| [vec![0x91; n], vec![0xc0]].concat();
        assert!(nesting_within(&deep(128), 128));
        assert!(!nesting_within(&deep(129), 128));
        // Enums nest as one-entry maps.
        let enums: Vec<u8> = (0..200).flat_map(|_| [0x81, 0xa1, b'N']).collect();
        assert!(!nesting_within(&enums, 128));
        // A str8 holding bytes that look like arrays is skipped whole.
        let mut s = vec![0xd9, 200];
        s.extend([0x91; 200]);
        assert!(nesting_within(&s, 1));
        // Cut short, or a count no body holds: the decoder's to refuse.
        assert!(nesting_within(&[0xdd, 0xff, 0xff, 0xff, 0xff], 1));
        assert!(nesting_within(&[], 1));
    }

    /// Found by mutation testing: the sized containers and strings, and
    /// a container's later values, went unchecked.
    #[test]
    fn every_marker_is_walked_by_its_size() {
        let deep = |n: usize| [vec![0x91; n], vec![0xc0]].concat();
        // Siblings: [[1], [1]] is two levels, not three.
        assert!(nesting_within(&[0x92, 0x91, 0x01, 0x91, 0x01], 2));
        // Each sized container holding 256 values (or 128 pairs) whose
        // last nests 128 more: too deep only if all its values are read.
        for head in [
            &[0xdc, 0x01, 0x00][..],
            &[0xdd, 0x00, 0x00, 0x01, 0x00],
            &[0xde, 0x00, 0x80],
            &[0xdf, 0x00, 0x00, 0x00, 0x80],
        ] {
            let body = [head, &[0xc0; 255], &deep(128)].concat();
            assert!(!nesting_within(&body, 128), "{head:x?}");
            assert!(nesting_within(&body, 129), "{head:x?}");
        }
        // Strings, binaries and extensions of 255 bytes (the 8-bit sizes)
        // or 300 (big-endian) that look like arrays are skipped whole.
        for head in [
            &[0xd9, 0xff][..],
            &[0xc4, 0xff],
            &[0xda, 0x01, 0x2c],
            &[0xc5, 0x01, 0x2c],
            &[0xdb, 0x00, 0x00, 0x01, 0x2c],
            &[0xc6, 0x00, 0x00, 0x01, 0x2c],
            &[0xc7, 0xff, 0x01],
            &[0xc8, 0x01, 0x2c, 0x01],
            &[0xc9, 0x00, 0x00, 0x01, 0x2c, 0x01],
        ] {
            let size = if head[0] == 0xd9 || head[0] == 0xc4 || head[0] == 0xc7 {
                0xff
            } else {
                300
            };
            let body = [head, &vec![0x91; size][..]].concat();
            assert!(nesting_within(&body, 1), "{head:x?}");
            // And what follows them is read: a root array of two.
            let two = [&[0x92][..], &body, &deep(2)].concat();
            assert!(!nesting_within(&two, 2), "{head:x?}");
            assert!(nesting_within(&two, 3), "{head:x?}");
        }
        // Scalars and fixed extensions of each size: their bytes (nils
        // here) are skipped, and the deep array after them is read.
        for (marker, size) in [
            (0xa3, 3),
            (0xcc, 1),
            (0xd0, 1),
            (0xcd, 2),
            (0xd1, 2),
            (0xce, 4),
            (0xd2, 4),
            (0xca, 4),
            (0xcf, 8),
            (0xd3, 8),
            (0xcb, 8),
            (0xd4, 2),
            (0xd5, 3),
            (0xd6, 5),
            (0xd7, 9),
            (0xd8, 17),
        ] {
            let two = [&[0x92, marker][..], &vec![0xc0; size], &deep(2)].concat();
            assert!(!nesting_within(&two, 2), "{marker:x}");
            assert!(nesting_within(&two, 3), "{marker:x}");
        }
    }
}
