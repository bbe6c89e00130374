//! `examples/worker_pool` as a user runs it, against Python's socket (a
//! peer nobody on the team wrote): under `pool:4` a 400 ms blocking call
//! holds up neither another connection nor its own connection's order;
//! under `inline` and `single` the other connection waits for it.

use std::process::Command;

use crate::common::peers::{require, Peer};
use crate::common::{run_bounded, TIMEOUT};
use crate::dial::examples::run_example;

/// Run the Python peer against `worker_pool --model model`; B's slowest
/// round trip in milliseconds.
fn b_max_ms(python: &str, model: &str) -> u64 {
    let (_server, addr) = run_example("worker_pool", &["127.0.0.1:0", "--model", model]);
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/exec/worker_pool_peer.py"
    );
    let mut peer = Command::new(python);
    peer.args([script, host, port]);
    let out = run_bounded(peer, TIMEOUT * 2);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{model}: peer failed: {said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{model}: {said}");
    assert!(said.contains("a_order=2,1"), "{model}: {said}");
    said.split("b_max_ms=")
        .nth(1)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{model}: no b_max_ms in {said:?}"))
}

#[test]
fn worker_pool_example_keeps_order_and_frees_other_connections_on_the_pool() {
    let Some(python) = require(Peer::Python3) else {
        return;
    };
    let pool = b_max_ms(&python, "pool:4");
    assert!(pool < 200, "pool:4: B waited {pool} ms for A's call");
    let inline = b_max_ms(&python, "inline");
    assert!(
        inline >= 200,
        "inline: B should wait for A's call ({inline} ms)"
    );
    let single = b_max_ms(&python, "single");
    assert!(
        single >= 200,
        "single: B should wait for A's call ({single} ms)"
    );
}
