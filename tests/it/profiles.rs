//! Dial profiles (issue 19, item 1): a dialed connection speaks its
//! profile's protocol (packer, routes, unknown-id policy, heartbeat, socket
//! options) on the server's loops, beside clients speaking the server's
//! own. `gateway`: one server, clients on the 8-byte packer, backends on
//! `SeqPacker` (a netloom one and a Python one); `behaviour`: routes,
//! heartbeat, linger, `send_to` and the configuration errors.

mod behaviour;
mod gateway;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::thread;

use crossbeam_channel::unbounded;

use crate::common::peers::{require, Peer};
use crate::common::TIMEOUT;

/// `profiles/seq_backend.py` running: killed and reaped however the test
/// ends (closing its stdin also ends it).
pub struct PyBackend {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for PyBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PyBackend {
    /// Start it, or `None` when Python is missing and may be skipped
    /// (`require` fails the test otherwise).
    pub fn start() -> Option<PyBackend> {
        let py = require(Peer::Python3)?;
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/profiles/seq_backend.py"
        );
        let mut child = Command::new(py)
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start python3");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = unbounded();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut backend = PyBackend {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let line = lines
            .recv_timeout(TIMEOUT)
            .expect("python printed a line within TIMEOUT")
            .expect("read python's stdout");
        let port = line
            .trim()
            .strip_prefix("ready ")
            .expect("python printed ready PORT");
        backend.addr = format!("127.0.0.1:{port}").parse().unwrap();
        Some(backend)
    }
}
