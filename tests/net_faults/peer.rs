//! A Python peer (`peers.py`) started in namespace B, killed by its pid
//! when dropped (or by the scenario, to make it vanish).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crossbeam_channel::bounded;

use crate::netns::kill;

/// How long a peer may take to say `ready`.
const READY: Duration = Duration::from_secs(10);

/// A running peer.
pub struct Peer {
    child: Child,
    /// The port it listens on (a server), or its local port (a client).
    pub port: u16,
    killed: bool,
}

impl Peer {
    /// `ip netns exec NS python3 peers.py MODE ARGS...`, once it printed
    /// `ready PORT`. `ip netns exec` execs the program in place, so the
    /// child's pid is Python's.
    pub fn start(python: &str, ns: &str, mode: &str, args: &[String]) -> Peer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/net_faults/peers.py");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, python, script, mode])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a peer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = bounded(1);
        // The reader keeps draining until the peer's stdout closes.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            for _ in lines {}
        });
        let pid = child.id() as i32;
        let port = match rx.recv_timeout(READY) {
            Ok(Some(Ok(line))) => line
                .strip_prefix("ready ")
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("peer {mode}: unexpected line {line:?}")),
            other => {
                kill(pid);
                let _ = child.wait();
                panic!("peer {mode} {args:?} did not become ready: {other:?}");
            }
        };
        Peer {
            child,
            port,
            killed: false,
        }
    }

    /// Its address on namespace B's veth.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(crate::netns::ADDR_B.parse().unwrap(), self.port)
    }

    /// SIGKILL it (its kernel then closes its sockets: FIN or RST, which
    /// a [`Fault::DropAll`](crate::netns::Fault) set before keeps in B).
    pub fn kill(&mut self) {
        if !self.killed {
            self.killed = true;
            kill(self.child.id() as i32);
            let _ = self.child.wait();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}
