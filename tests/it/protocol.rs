//! Protocol-level behaviour over real loopback sockets: framing, ordering,
//! routing and middleware, cross-thread sends, broadcast, and what happens
//! to peers that break the protocol.
//!
//! Every frame a client sends is written from literal bytes (or assembled
//! by hand with `crate::common::frame`), never with netloom's encoder. Nothing
//! sleeps to synchronise: tests wait on channels fed by hooks and handlers,
//! on blocking reads with timeouts, or (for counters) `crate::common::wait_until`.
//!
//! This file: the helpers the submodules share, and a client nobody on the
//! team wrote (CPython). `protocol/framing.rs`: frames split, batched and
//! large, bodies kept past the handler. `protocol/packers.rs`: custom
//! packers through the server. `protocol/ordering.rs`: pipelined requests
//! and a thousand clients. `protocol/cross_thread.rs`: sends through
//! handles and broadcast, across loops. `protocol/middleware.rs`:
//! middleware and user data. `protocol/routing.rs`: unknown ids, dense and
//! sparse ids, `ConnId` uniqueness. `protocol/faults.rs`: peers that break
//! the protocol, handlers that panic, rejecting in `on_open`.

mod cross_thread;
mod faults;
mod framing;
mod middleware;
mod ordering;
mod packers;
mod routing;

use std::io::{self, Read};
use std::net::SocketAddr;
use std::process::Command;

use netloom::{Builder, Server};

use crate::common::peers::{require, Peer};
use crate::common::{echo, run_bounded, start, Client, TIMEOUT};

// ---------------------------------------------------------------------------
// Helpers shared with the submodules.
// ---------------------------------------------------------------------------

/// A server echoing ids 1, 2 and 3 on `loops` event loops.
fn echo_builder(loops: usize) -> Builder {
    Server::builder()
        .event_loops(loops)
        .route(1, echo)
        .route(2, echo)
        .route(3, echo)
}

fn local_addr(client: &Client) -> SocketAddr {
    client.stream.local_addr().expect("local addr")
}

/// The next read must be the end of the stream (or a reset): no data.
fn assert_eof(client: &mut Client) {
    let mut buf = [0u8; 256];
    match client.stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {n} more bytes: {:?}", &buf[..n]),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ) => {}
        Err(e) => panic!("expected EOF, got {e} (kind {:?})", e.kind()),
    }
}

/// Read exactly `n` raw bytes.
fn read_raw(client: &mut Client, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    client.stream.read_exact(&mut buf).expect("read raw bytes");
    buf
}

/// One round trip on echo id 1.
fn assert_echoes(client: &mut Client, body: &[u8]) {
    client.send(1, body);
    assert_eq!(client.recv(), (1, body.to_vec()));
}

/// xorshift64: reproducible garbage without a dependency.
fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

// ---------------------------------------------------------------------------
// A client nobody on the team wrote: CPython's socket + struct.
// ---------------------------------------------------------------------------

const PY_CLIENT: &str = r#"
import socket, struct, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.settimeout(5)

def recv_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            sys.exit("server closed the connection early")
        buf += chunk
    return buf

msgs = [(1, b"hello from cpython"), (2, b""), (3, bytes(range(256)) * 40)]
s.sendall(b"".join(struct.pack("<II", len(b), i) + b for i, b in msgs))
for i, b in msgs:
    length, mid = struct.unpack("<II", recv_exact(8))
    body = recv_exact(length)
    if (mid, body) != (i, b):
        sys.exit("mismatch: sent id %d (%d bytes), got id %d (%d bytes)" % (i, len(b), mid, len(body)))
s.close()
print("ok")
"#;

#[test]
fn python_client_gets_its_echoes() {
    let Some(py) = require(Peer::Python3) else {
        return;
    };
    let server = start(echo_builder(2));
    let port = server.local_addr().port().to_string();
    let mut cmd = Command::new(py);
    cmd.args(["-c", PY_CLIENT, &port]);
    let out = run_bounded(cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "python client failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
