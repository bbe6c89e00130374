//! The docs kept in step with the code: every `Stats` field is a row of
//! the GUIDE's Stats table (and every row a field), and `Stats`' printed
//! summary names every field, also over a real server's counters.

use std::collections::BTreeSet;
use std::net::TcpStream;

use netloom::{CloseReason, Server, Stats};

use crate::common::{start, wait_until, TIMEOUT};

/// The field names in `Stats`' `Debug` output (`Stats { connections: 0,
/// …, closed: [0, …], … }`): each `name: ` is an identifier before `": "`.
fn debug_fields(stats: &Stats) -> BTreeSet<String> {
    let debug = format!("{stats:?}");
    let pieces: Vec<&str> = debug.split(": ").collect();
    pieces[..pieces.len() - 1]
        .iter()
        .map(|piece| {
            let tail = piece.len()
                - piece
                    .chars()
                    .rev()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .count();
            piece[tail..].to_string()
        })
        .collect()
}

/// The names in backticks in the first column of the table under the
/// GUIDE's `## Stats` heading.
fn guide_table_fields() -> BTreeSet<String> {
    let guide = include_str!("../../docs/GUIDE.md");
    let section = guide
        .split("\n## Stats\n")
        .nth(1)
        .expect("the GUIDE has a ## Stats section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut names = BTreeSet::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = row.split('|').nth(1).unwrap_or("");
        for (i, part) in first_cell.split('`').enumerate() {
            if i % 2 == 1 {
                names.insert(part.to_string());
            }
        }
    }
    names
}

/// The `name=` keys of the printed summary.
fn display_keys(stats: &Stats) -> BTreeSet<String> {
    stats
        .to_string()
        .split(' ')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
        .collect()
}

#[test]
fn the_guides_stats_table_lists_every_field_and_nothing_else() {
    let fields = debug_fields(&Stats::default());
    assert!(fields.len() > 10, "parsed too few fields: {fields:?}");
    let table = guide_table_fields();
    let undocumented: Vec<_> = fields.difference(&table).collect();
    let stale: Vec<_> = table.difference(&fields).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "docs/GUIDE.md's Stats table: missing {undocumented:?}, not fields {stale:?}"
    );
}

#[test]
fn the_printed_summary_names_every_field() {
    let stats = Stats::default();
    let fields = debug_fields(&stats);
    let keys = display_keys(&stats);
    assert_eq!(keys, fields, "Display of {stats:?}:\n{stats}");
}

/// Over a real server: a closed connection shows in `closed=` and in its
/// kind's `closed.<kind>=`, and the summary still names every field.
#[test]
fn the_printed_summary_of_a_running_server_counts_closes_by_kind() {
    let server = start(Server::builder().event_loops(2));
    let client = TcpStream::connect(server.local_addr()).unwrap();
    wait_until("the connection to be accepted", || {
        server.stats().accepted == 1
    });
    drop(client);
    wait_until("the close to be counted", || {
        server.stats().closed_by(&CloseReason::PeerClosed) == 1
    });
    let stats = server.stats();
    let line = stats.to_string();
    assert!(
        line.contains(" closed=1 ") && line.ends_with(" closed.peer_closed=1"),
        "{line}"
    );
    let mut keys = display_keys(&stats);
    keys.remove("closed.peer_closed");
    assert_eq!(keys, debug_fields(&stats), "{line}");
    server.shutdown(TIMEOUT).unwrap();
}
