//! Unit tests of the table's own bookkeeping.

use std::net::SocketAddr;

use super::testing::table;
use super::Conn;
use crate::transport::Layer;

/// The loop closes the connection `largest_partial` names when over its
/// partial-frame budget: one that holds nothing is never named (found by
/// mutation testing: `accounted > 0` → `>= 0` passed).
#[test]
fn the_largest_partial_holder_holds_something() {
    let table = table();
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let conn = |table: &super::ConnTable, accounted| {
        let mut c = Conn::new(None, addr, table.next_generation(), 0, Layer::default());
        c.accounted = accounted;
        table.insert(c)
    };
    conn(&table, 0);
    assert_eq!(table.largest_partial(), None);
    conn(&table, 10);
    let large = conn(&table, 300);
    conn(&table, 0);
    let generation = table.conns.borrow()[large].generation;
    assert_eq!(table.largest_partial(), Some((large, generation, false)));
}
