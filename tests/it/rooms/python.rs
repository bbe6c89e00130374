//! Rooms against a peer nobody on the team wrote: Python's `socket`
//! module (`tests/it/rooms_peer.py`), six members on two loops.

use std::process::Command;

use super::rooms_builder;
use crate::common::peers::{require, Peer};
use crate::common::{run_bounded, start, TIMEOUT};

#[test]
fn python_members_on_two_loops() {
    let Some(python) = require(Peer::Python3) else {
        return;
    };
    let (builder, _opens) = rooms_builder(2);
    let server = start(builder);
    let addr = server.local_addr();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/rooms_peer.py");
    let mut cmd = Command::new(python);
    cmd.args([
        script,
        &addr.ip().to_string(),
        &addr.port().to_string(),
        "6",
    ]);
    let out = run_bounded(cmd, TIMEOUT * 3);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim() == "ok",
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.stats().send_errors, 0);
    server.shutdown(TIMEOUT).unwrap();
}
