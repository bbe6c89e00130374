//! Dial profiles (issue 19 item 1), the cases a second author wrote from
//! the issue against the same API (beside `profiles`): one `Server` speaks the default packer
//! to its clients and another protocol (its packer, routes, heartbeat,
//! socket options) on the links it dials. `gateway`: the gateway,
//! with a netloom backend and a Python one; `replies`: a profile without
//! routes, unknown ids, a profile's own routes and middleware; `timers`:
//! a profile's heartbeat against the server's; `sockets`: SO_LINGER over
//! a real close; `send_to`: one message reaching clients and profile
//! links, each in its own format.

mod gateway;
mod replies;
mod send_to;
mod sockets;
mod timers;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use crossbeam_channel::{unbounded, Receiver};

use crate::common::TIMEOUT;

/// A `SeqPacker` frame built from literal bytes: body length, id and
/// sequence number (u32 little-endian each), then the body.
fn seq_frame(id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + body.len());
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(&id.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// One end of a link a profile dialed, as a plain blocking socket that
/// reads and writes `SeqPacker` frames by hand.
struct SeqPeer {
    stream: TcpStream,
}

impl SeqPeer {
    /// Read one frame: (id, seq, body).
    fn try_recv(&mut self) -> io::Result<(u32, u32, Vec<u8>)> {
        let mut head = [0u8; 12];
        self.stream.read_exact(&mut head)?;
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let mut body = vec![0u8; word(0) as usize];
        self.stream.read_exact(&mut body)?;
        Ok((word(4), word(8), body))
    }

    fn recv(&mut self) -> (u32, u32, Vec<u8>) {
        self.try_recv().expect("a SeqPacker frame")
    }

    fn send(&mut self, id: u32, seq: u32, body: &[u8]) {
        self.stream
            .write_all(&seq_frame(id, seq, body))
            .expect("write");
    }
}

/// A loopback listener whose accepted sockets come out of the channel as
/// [`SeqPeer`]s (with read and write timeouts).
fn seq_peers() -> (SocketAddr, Receiver<SeqPeer>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, accepted) = unbounded();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            stream.set_write_timeout(Some(TIMEOUT)).unwrap();
            if tx.send(SeqPeer { stream }).is_err() {
                return;
            }
        }
    });
    (addr, accepted)
}

/// The next link dialed to a [`seq_peers`] listener.
fn next_peer(accepted: &Receiver<SeqPeer>) -> SeqPeer {
    accepted
        .recv_timeout(TIMEOUT)
        .expect("the server dialed within TIMEOUT")
}
