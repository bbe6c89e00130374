//! A read's messages on their way into a connection's lane: gathered
//! while the batch is dispatched, queued after it.

use bytes::{Bytes, BytesMut};

use crate::buf::queue::SHARE_MIN;
use crate::id::ConnId;
use crate::runtime::exec::{trimmed, Item, Queued, Target, ITEM_COST};
use crate::runtime::LoopCore;

/// A read's messages for a connection's lane, gathered while its batch
/// is dispatched: small bodies are copied into one buffer (one allocation
/// a batch, not one a message); a large one is shared when it is most of
/// what it would pin. Each counts what it holds.
#[derive(Default)]
pub(crate) struct Intake {
    copied: BytesMut,
    items: Vec<(u32, u32, Body, Target)>,
}

enum Body {
    /// A range of `copied`.
    Copied(usize, usize),
    /// Shared with the receive buffer; counts `alloc` bytes.
    Shared(Bytes, usize),
}

/// The most items room is made for ahead.
const MAX_RESERVE_ITEMS: usize = 16;

impl Intake {
    /// Take message `(id, seq)` with `body` (lying in `source`, which
    /// pins `alloc` bytes), for `target`; `left` messages of the read,
    /// this one included, remain.
    pub(crate) fn take(
        &mut self,
        (id, seq): (u32, u32),
        body: &[u8],
        (source, alloc): (&Bytes, usize),
        target: Target,
        left: usize,
    ) {
        if self.items.is_empty() {
            // Room for the rest of the read if its messages are of this
            // size: one allocation in the usual case, none to trim for a
            // read of one message.
            let left = left.clamp(1, MAX_RESERVE_ITEMS);
            self.items.reserve(left);
            self.copied
                .reserve(body.len().saturating_mul(left).min(64 << 10));
        }
        let body = if body.len() >= SHARE_MIN && body.len() * 2 >= alloc {
            Body::Shared(source.slice_ref(body), alloc)
        } else {
            let start = self.copied.len();
            self.copied.extend_from_slice(body);
            Body::Copied(start, self.copied.len())
        };
        self.items.push((id, seq, body, target));
    }

    /// Queue what was gathered in `me`'s lane, in order.
    pub(crate) fn queue(self, core: &LoopCore, me: ConnId) {
        let copied = trimmed(self.copied);
        let mut lanes = core.lanes.borrow_mut();
        let lane = lanes.lane(me);
        lane.items.reserve(self.items.len());
        for (id, seq, body, target) in self.items {
            let (body, cost) = match body {
                Body::Copied(start, end) => (copied.slice(start..end), end - start),
                Body::Shared(body, alloc) => (body, alloc),
            };
            let cost = cost.max(ITEM_COST);
            lane.held += cost;
            lane.items.push_back(Queued {
                item: Item::Message { id, seq, body },
                target,
                cost,
            });
        }
    }
}
