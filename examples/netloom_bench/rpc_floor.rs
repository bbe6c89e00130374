//! The `mio` client of `rpc`: the floor. The same closed loop as the other
//! two clients (`conns` connections, `in_flight` requests outstanding on
//! each, every reply checked and timed, each reply sending the next
//! request), written straight on one `mio::Poll` with nothing a library
//! adds: per turn one `epoll_wait`, then per ready connection reads until
//! a short read (edge-triggered: one `recv` per wake-up), the replies matched by sequence number in a fixed ring
//! (no map, no timers, no callbacks), the next requests appended to one
//! buffer and one write. What netloom and tokio spend above this is what
//! they cost; what this spends is the kernel's share, which neither can
//! go below without fewer wake-ups.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::rpc_clients::{Meter, ID, REQUEST_TIMEOUT};

/// One connection of the floor client.
struct Link {
    stream: TcpStream,
    input: BytesMut,
    output: BytesMut,
    /// When the request with sequence number `s` left: `sent[s % len]`
    /// (at most `in_flight` are outstanding, so slots never collide).
    sent: Vec<Option<Instant>>,
    next_seq: u32,
    /// Requests of this connection still outstanding.
    outstanding: usize,
}

impl Link {
    fn request(&mut self, body: &[u8]) {
        self.next_seq = self.next_seq.wrapping_add(1).max(1);
        let seq = self.next_seq;
        self.output.reserve(12 + body.len());
        self.output.put_u32_le(body.len() as u32);
        self.output.put_u32_le(ID);
        self.output.put_u32_le(seq);
        self.output.extend_from_slice(body);
        let slots = self.sent.len();
        self.sent[seq as usize % slots] = Some(Instant::now());
        self.outstanding += 1;
    }

    /// Write what is queued; false if the connection broke.
    fn flush(&mut self) -> bool {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(0) => return false,
                Ok(n) => self.output.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

pub fn run_mio(
    addr: SocketAddr,
    conns: usize,
    in_flight: usize,
    meter: &Arc<Meter>,
    window: &mut dyn FnMut(&Meter),
) -> Result<(), String> {
    let m = meter.clone();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || drive(addr, conns, in_flight, &m, ready_tx));
    ready
        .recv_timeout(REQUEST_TIMEOUT)
        .map_err(|_| "mio client did not connect".to_string())??;
    window(meter);
    meter.drain((conns * in_flight) as u64)?;
    worker
        .join()
        .map_err(|_| "mio client panicked".to_string())?
}

fn drive(
    addr: SocketAddr,
    conns: usize,
    in_flight: usize,
    meter: &Meter,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    let setup = || -> io::Result<(Poll, Vec<Link>)> {
        let poll = Poll::new()?;
        let mut links = Vec::with_capacity(conns);
        for i in 0..conns {
            let std = std::net::TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)?;
            std.set_nodelay(true)?;
            std.set_nonblocking(true)?;
            let mut stream = TcpStream::from_std(std);
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)?;
            links.push(Link {
                stream,
                input: BytesMut::with_capacity(64 * 1024),
                output: BytesMut::with_capacity(64 * 1024),
                sent: vec![None; in_flight.max(1) * 2],
                next_seq: 0,
                outstanding: 0,
            });
        }
        Ok((poll, links))
    };
    let (mut poll, mut links) = match setup() {
        Ok(v) => v,
        Err(e) => {
            let why = format!("mio client: {e}");
            let _ = ready.send(Err(why.clone()));
            return Err(why);
        }
    };
    for link in &mut links {
        for _ in 0..in_flight {
            link.request(&meter.body);
        }
        link.flush();
    }
    let _ = ready.send(Ok(()));
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline_after_stop = REQUEST_TIMEOUT;
    let mut stopped_at: Option<Instant> = None;
    while links.iter().any(|l| l.outstanding > 0) {
        if meter.stop.load(Ordering::Relaxed) {
            let at = *stopped_at.get_or_insert_with(Instant::now);
            if at.elapsed() > deadline_after_stop {
                break;
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .map_err(|e| format!("mio client poll: {e}"))?;
        for event in &events {
            let Some(link) = links.get_mut(event.token().0) else {
                continue;
            };
            let stop = meter.stop.load(Ordering::Relaxed);
            if !read_replies(link, &mut chunk, meter, stop) {
                // A broken connection ends its chains with errors.
                for _ in 0..link.outstanding {
                    meter.errors.fetch_add(1, Ordering::Relaxed);
                    meter.ended.fetch_add(1, Ordering::Relaxed);
                }
                link.outstanding = 0;
                continue;
            }
            link.flush();
        }
    }
    Ok(())
}

/// Read until `EWOULDBLOCK`, answering each reply with the next request
/// (or ending its chain once stopping). False if the connection broke or
/// sent garbage.
fn read_replies(link: &mut Link, chunk: &mut [u8], meter: &Meter, stop: bool) -> bool {
    loop {
        match link.stream.read(chunk) {
            Ok(0) => return false,
            // Edge-triggered: a short read drained the socket, and any
            // later byte raises a new edge, so the read that would only
            // say `WouldBlock` is skipped (as netloom's loop does).
            Ok(n) if n < chunk.len() => {
                link.input.extend_from_slice(&chunk[..n]);
                break;
            }
            Ok(n) => link.input.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    while link.input.len() >= 12 {
        let len = u32::from_le_bytes([link.input[0], link.input[1], link.input[2], link.input[3]]);
        let len = len as usize;
        if len > crate::serve::MAX_BODY {
            return false;
        }
        if link.input.len() < 12 + len {
            break;
        }
        let seq =
            u32::from_le_bytes([link.input[8], link.input[9], link.input[10], link.input[11]]);
        let ok = link.input[12..12 + len] == meter.body[..];
        link.input.advance(12 + len);
        let slots = link.sent.len();
        let Some(sent) = link.sent[seq as usize % slots].take() else {
            meter.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        link.outstanding -= 1;
        meter.reply(ok, sent);
        if stop {
            meter.ended.fetch_add(1, Ordering::Relaxed);
        } else {
            link.request(&meter.body);
        }
    }
    true
}
