//! What nodes say to each other on the broker's channels: an envelope
//! naming the node it came from (to drop one's own echoes) and what to do
//! with the message. Pure over bytes; anything on the broker may publish
//! to these channels, so decoding checks every length and never panics.
//!
//! ```text
//! kind u8 | node_len u8 | node | incarnation u64 LE | target | id u32 LE | body
//!   kind 1 (room):      target = room_len u16 LE | room
//!   kind 2 (broadcast): target = (nothing)
//!   kind 3 (send):      target = conn u128 LE (`ConnId::to_u128` on its node)
//! ```

use crate::id::ConnId;

/// What a message from another node asks this one to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// Publish to this node's members of the room.
    Room(&'a str),
    /// Broadcast to this node's connections.
    All,
    /// Send to one connection of this node.
    Conn(ConnId),
}

/// One decoded envelope.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub(crate) origin: &'a str,
    /// The origin's run (`NodeConnId::incarnation`): two live nodes given
    /// one name tell their echoes apart by it.
    pub(crate) incarnation: u64,
    pub(crate) target: Target<'a>,
    pub(crate) id: u32,
    pub(crate) body: &'a [u8],
}

const ROOM: u8 = 1;
const ALL: u8 = 2;
const CONN: u8 = 3;

/// Encode an envelope (`origin` at most 255 bytes, a room at most 65535:
/// both checked by the callers' limits).
pub(crate) fn encode(
    (origin, incarnation): (&str, u64),
    target: &Target<'_>,
    id: u32,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + origin.len() + 28 + body.len());
    let kind = match target {
        Target::Room(_) => ROOM,
        Target::All => ALL,
        Target::Conn(_) => CONN,
    };
    out.push(kind);
    out.push(origin.len() as u8);
    out.extend_from_slice(origin.as_bytes());
    out.extend_from_slice(&incarnation.to_le_bytes());
    match target {
        Target::Room(room) => {
            out.extend_from_slice(&(room.len() as u16).to_le_bytes());
            out.extend_from_slice(room.as_bytes());
        }
        Target::All => {}
        Target::Conn(conn) => out.extend_from_slice(&conn.to_u128().to_le_bytes()),
    }
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Split `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

/// Decode an envelope; `None` for anything malformed.
pub(crate) fn decode(bytes: &[u8]) -> Option<Envelope<'_>> {
    let mut rest = bytes;
    let head = take(&mut rest, 2)?;
    let (kind, node_len) = (head[0], head[1] as usize);
    let origin = std::str::from_utf8(take(&mut rest, node_len)?).ok()?;
    let incarnation: [u8; 8] = take(&mut rest, 8)?.try_into().ok()?;
    let target = match kind {
        ROOM => {
            let len = take(&mut rest, 2)?;
            let len = u16::from_le_bytes([len[0], len[1]]) as usize;
            Target::Room(std::str::from_utf8(take(&mut rest, len)?).ok()?)
        }
        ALL => Target::All,
        CONN => {
            let raw: [u8; 16] = take(&mut rest, 16)?.try_into().ok()?;
            Target::Conn(ConnId::from_u128(u128::from_le_bytes(raw))?)
        }
        _ => return None,
    };
    let id: [u8; 4] = take(&mut rest, 4)?.try_into().ok()?;
    Some(Envelope {
        origin,
        incarnation: u64::from_le_bytes(incarnation),
        target,
        id: u32::from_le_bytes(id),
        body: rest,
    })
}

/// A node's presence record: its connection count and its rooms with
/// their member counts on it.
///
/// ```text
/// connections u32 LE | (room_len u16 LE | room | members u32 LE)*
/// ```
pub(crate) fn encode_presence(connections: usize, rooms: &[(String, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + rooms.len() * 16);
    let sat = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    out.extend_from_slice(&sat(connections).to_le_bytes());
    for (room, n) in rooms {
        out.extend_from_slice(&(room.len() as u16).to_le_bytes());
        out.extend_from_slice(room.as_bytes());
        out.extend_from_slice(&sat(*n).to_le_bytes());
    }
    out
}

/// Decode a presence record; `None` if malformed.
pub(crate) fn decode_presence(bytes: &[u8]) -> Option<(usize, Vec<(String, usize)>)> {
    let mut rest = bytes;
    let n: [u8; 4] = take(&mut rest, 4)?.try_into().ok()?;
    let connections = u32::from_le_bytes(n) as usize;
    let mut rooms = Vec::new();
    while !rest.is_empty() {
        let len = take(&mut rest, 2)?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        let room = std::str::from_utf8(take(&mut rest, len)?).ok()?.to_string();
        let n: [u8; 4] = take(&mut rest, 4)?.try_into().ok()?;
        rooms.push((room, u32::from_le_bytes(n) as usize));
    }
    Some((connections, rooms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let conn = ConnId::new(7, 1, 42, 3);
        for target in [Target::Room("lobby"), Target::All, Target::Conn(conn)] {
            let bytes = encode(("node-a", 0xfeed), &target, 9, b"hi\n");
            let env = decode(&bytes).expect("decodes");
            assert_eq!((env.origin, env.incarnation), ("node-a", 0xfeed));
            assert_eq!(env.target, target);
            assert_eq!((env.id, env.body), (9, &b"hi\n"[..]));
        }
    }

    #[test]
    fn every_truncation_and_garbage_is_refused_without_panic() {
        let bytes = encode(("n", 1), &Target::Conn(ConnId::new(1, 0, 0, 1)), 1, b"");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        assert!(decode(&[9, 0, 0, 0, 0, 0]).is_none(), "unknown kind");
        assert!(decode(&[2, 1, 0xff, 0, 0, 0, 0]).is_none(), "bad UTF-8");
        let zero_tag = [&[3u8, 0][..], &[0; 8], &[0; 16], &[0; 4]].concat();
        assert!(decode(&zero_tag).is_none(), "an id no connection has");
    }

    #[test]
    fn presence_round_trips() {
        let rooms = vec![("a".to_string(), 2), ("b\nc".to_string(), 1)];
        let bytes = encode_presence(5, &rooms);
        assert_eq!(decode_presence(&bytes), Some((5, rooms)));
        assert!(decode_presence(&bytes[..bytes.len() - 1]).is_none());
        assert!(decode_presence(&[1, 0]).is_none());
    }
}
