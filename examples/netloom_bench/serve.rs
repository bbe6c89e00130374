//! `serve <netloom|mio|tokio>`: one echo server, alive until stdin closes.
//! The execution models' kinds (`netloom-pool`, `netloom-single`,
//! `tokio-blocking`) are in `serve_exec.rs`; the JSON kinds
//! (`netloom-json`, `tokio-json`) in `serve_json.rs`.
//!
//! * `netloom`: the library, echoing every id with
//!   `.fallback(|ctx| ctx.reply(ctx.msg_id(), ctx.body()))`.
//! * `rpc`: the same with `SeqPacker` (`len | id | seq | body`): every
//!   request answered with its id, sequence number and body (the server
//!   of `netloom_bench rpc`).
//! * `mio`: the floor. Raw byte echo on mio with no framing and no routing:
//!   one `Poll` per thread, one SO_REUSEPORT listener per thread, a
//!   connection is a socket plus an output `Vec` that is empty (unallocated)
//!   unless the kernel buffer was full.
//! * `tokio`: tokio-util `Framed` with a small codec for the same 8-byte
//!   framing; a task per connection; replies to frames that are already
//!   buffered are fed together and flushed once (as a careful tokio server
//!   would do). `current_thread` runtime for one loop, `multi_thread` with
//!   `loops` workers otherwise.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::args::{parse_duration, Args};

/// Largest body any benchmark server accepts (netloom's default limit).
pub const MAX_BODY: usize = 1 << 20;

pub fn main(args: Args) -> Result<(), String> {
    args.check(&[
        "addr",
        "loops",
        "heartbeat",
        "cpus",
        "max-secs",
        "busy-poll",
    ])?;
    let kind = args
        .positional
        .first()
        .ok_or("usage: serve <netloom|mio|tokio> [--addr A] [--loops N] [--heartbeat CHECK,IDLE] [--busy-poll DUR] [--cpus LIST]")?
        .clone();
    let addr: SocketAddr = args.get("addr", SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let loops: usize = args.get("loops", 1)?;
    let cpus: Vec<usize> = args.list("cpus", Vec::new())?;
    let max = Duration::from_secs(args.get("max-secs", 7200u64)?);
    let heartbeat = match args.str("heartbeat") {
        None => None,
        Some(s) => {
            let (c, i) = s
                .split_once(',')
                .ok_or("--heartbeat CHECK,IDLE (e.g. 1s,30s)")?;
            Some((parse_duration(c)?, parse_duration(i)?))
        }
    };
    let busy_poll = match args.str("busy-poll") {
        None => Duration::ZERO,
        Some(s) => parse_duration(s)?,
    };
    crate::os::pin_current_thread(&cpus).map_err(|e| format!("pin to {cpus:?}: {e}"))?;
    let _ = crate::os::raise_fd_limit();

    let mut netloom_handle = None;
    let local = match kind.as_str() {
        "netloom" | "rpc" | "netloom-pool" | "netloom-single" | "netloom-json"
        | "netloom-json-vec" => {
            let exec = crate::serve_exec::model(&kind);
            let b = netloom_builder(loops, heartbeat, busy_poll, kind == "rpc", exec);
            #[cfg(feature = "json")]
            let b = match kind.as_str() {
                "netloom-json" => crate::serve_json::netloom_json(b),
                "netloom-json-vec" => crate::serve_json::netloom_json_vec(b),
                _ => b,
            };
            #[cfg(not(feature = "json"))]
            if kind.starts_with("netloom-json") {
                return Err("the netloom-json kinds need --features json".into());
            }
            let h = b
                .bind(addr)
                .and_then(|b| b.start())
                .map_err(|e| format!("netloom server: {e}"))?;
            let a = h.local_addr();
            netloom_handle = Some(h);
            a
        }
        "mio" | "floor" => mio_server(addr, loops).map_err(|e| format!("mio server: {e}"))?,
        "tokio" => crate::serve_tokio::tokio_server(addr, loops, crate::serve_tokio::Tokio::Echo)
            .map_err(|e| format!("tokio server: {e}"))?,
        "tokio-blocking" => crate::serve_tokio::tokio_server(
            addr,
            loops,
            crate::serve_tokio::Tokio::Blocking(crate::serve_exec::WORKERS),
        )
        .map_err(|e| format!("tokio server: {e}"))?,
        "tokio-json" => {
            crate::serve_tokio::tokio_server(addr, loops, crate::serve_tokio::Tokio::Json)
                .map_err(|e| format!("tokio server: {e}"))?
        }
        other => return Err(format!("unknown server kind {other:?}")),
    };
    if heartbeat.is_some() && netloom_handle.is_none() {
        return Err("--heartbeat is only implemented by the netloom server".into());
    }
    if !busy_poll.is_zero() && netloom_handle.is_none() {
        return Err("--busy-poll is only implemented by the netloom server".into());
    }
    println!("LISTENING {local}");
    io::stdout().flush().map_err(|e| e.to_string())?;

    // Bounded life even if the parent forgets us: stdin EOF or max-secs.
    std::thread::spawn(move || {
        std::thread::sleep(max);
        eprintln!("serve: --max-secs reached; exiting");
        std::process::exit(3);
    });
    let mut sink = [0u8; 256];
    let mut stdin = io::stdin();
    while let Ok(n) = stdin.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
    if let Some(h) = netloom_handle {
        let stats = h.stats();
        if stats.send_errors > 0 || stats.handler_errors > 0 || stats.slow_peer_events > 0 {
            eprintln!("serve netloom: {stats}");
        }
        let _ = h.shutdown(Duration::from_millis(200));
    }
    // The mio and tokio threads run forever; exiting the process ends them.
    std::process::exit(0);
}

fn netloom_builder(
    loops: usize,
    heartbeat: Option<(Duration, Duration)>,
    busy_poll: Duration,
    seq: bool,
    exec: netloom::Exec,
) -> netloom::Builder {
    let mut b = netloom::Server::builder();
    if seq {
        b = b.packer(netloom::SeqPacker::new(MAX_BODY));
    }
    let mut b = b
        .event_loops(loops)
        .exec(exec)
        .busy_poll(busy_poll)
        .max_body_length(MAX_BODY)
        // The generator keeps at most 16 frames of 1 MiB in flight per
        // connection; with the default 4 MiB mark an echo handler would
        // get BufferFull (and drop replies) on the largest scenarios.
        .write_high_water(32 << 20)
        .fallback(|ctx| ctx.reply(ctx.msg_id(), ctx.body()));
    if let Some((check, idle)) = heartbeat {
        b = b.heartbeat(check, idle);
    }
    b
}

// ---------------------------------------------------------------- mio floor

const LISTENER: Token = Token(usize::MAX);
/// Stop reading a peer whose unsent echo is above this.
const FLOOR_HIGH_WATER: usize = 32 << 20;

struct FloorConn {
    stream: TcpStream,
    /// Echo bytes the kernel did not take yet; unallocated while empty.
    out: Vec<u8>,
    paused: bool,
}

fn mio_server(addr: SocketAddr, loops: usize) -> io::Result<SocketAddr> {
    let mut local = addr;
    let mut listeners = Vec::new();
    for _ in 0..loops.max(1) {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        #[cfg(unix)]
        s.set_reuse_port(true)?;
        s.bind(&SockAddr::from(local))?;
        s.listen(1024)?;
        s.set_nonblocking(true)?;
        let l: std::net::TcpListener = s.into();
        local = l.local_addr()?;
        listeners.push(TcpListener::from_std(l));
    }
    for (i, l) in listeners.into_iter().enumerate() {
        std::thread::Builder::new()
            .name(format!("floor-{i}"))
            .spawn(move || {
                if let Err(e) = floor_loop(l) {
                    eprintln!("floor loop {i}: {e}");
                    std::process::exit(2);
                }
            })?;
    }
    Ok(local)
}

fn floor_loop(mut listener: TcpListener) -> io::Result<()> {
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<FloorConn> = Slab::new();
    let mut scratch = vec![0u8; 64 << 10];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let entry = conns.vacant_entry();
                            poll.registry().register(
                                &mut stream,
                                Token(entry.key()),
                                Interest::READABLE,
                            )?;
                            entry.insert(FloorConn {
                                stream,
                                out: Vec::new(),
                                paused: false,
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // EMFILE and friends: the connection waits in the
                        // backlog; retry on the next event (the floor has no
                        // back-off, like most raw servers).
                        Err(_) => break,
                    }
                }
                continue;
            }
            let key = ev.token().0;
            let mut alive = true;
            if ev.is_writable() {
                alive = floor_flush(&poll, &mut conns, key, &mut scratch);
            }
            if alive && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                alive = floor_read(&poll, &mut conns, key, &mut scratch);
            }
            if !alive {
                if let Some(mut c) = conns.try_remove(key) {
                    let _ = poll.registry().deregister(&mut c.stream);
                }
            }
        }
    }
}

/// Read and echo until WouldBlock; false when the connection is done.
fn floor_read(poll: &Poll, conns: &mut Slab<FloorConn>, key: usize, buf: &mut [u8]) -> bool {
    let Some(c) = conns.get_mut(key) else {
        return true;
    };
    loop {
        if c.out.len() > FLOOR_HIGH_WATER {
            c.paused = true;
            return true;
        }
        let n = match (&c.stream).read(buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        let data = &buf[..n];
        if !c.out.is_empty() {
            c.out.extend_from_slice(data);
            continue;
        }
        match (&c.stream).write(data) {
            Ok(m) if m == n => {}
            Ok(m) => {
                c.out.extend_from_slice(&data[m..]);
                if want_writable(poll, c, key).is_err() {
                    return false;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.out.extend_from_slice(data);
                if want_writable(poll, c, key).is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

fn want_writable(poll: &Poll, c: &mut FloorConn, key: usize) -> io::Result<()> {
    poll.registry().reregister(
        &mut c.stream,
        Token(key),
        Interest::READABLE | Interest::WRITABLE,
    )
}

/// Write pending echo bytes; false when the connection is done.
fn floor_flush(poll: &Poll, conns: &mut Slab<FloorConn>, key: usize, buf: &mut [u8]) -> bool {
    let Some(c) = conns.get_mut(key) else {
        return true;
    };
    while !c.out.is_empty() {
        match (&c.stream).write(&c.out) {
            Ok(0) => return false,
            Ok(m) => {
                c.out.drain(..m);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    c.out = Vec::new();
    if poll
        .registry()
        .reregister(&mut c.stream, Token(key), Interest::READABLE)
        .is_err()
    {
        return false;
    }
    if c.paused {
        c.paused = false;
        return floor_read(poll, conns, key, buf);
    }
    true
}

// -------------------------------------------------------------------- tokio

/// The same 8-byte framing as netloom's `LengthPacker`, as a tokio-util
/// codec: a frame is `(id, body)`.
#[derive(Debug, Default)]
pub struct FrameCodec;

impl tokio_util::codec::Decoder for FrameCodec {
    type Item = (u32, Bytes);
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<(u32, Bytes)>> {
        decode_frame(src, 8, 4)
    }
}

/// Takes one `len u32 | … | body` frame (little-endian, a `header`-byte
/// header starting with the body's length) off `src`: the u32 at `key_at`
/// in the header and the body, or `None` until the whole frame is buffered.
/// Bodies over [`MAX_BODY`] are an error.
pub fn decode_frame(
    src: &mut BytesMut,
    header: usize,
    key_at: usize,
) -> io::Result<Option<(u32, Bytes)>> {
    if src.len() < header {
        return Ok(None);
    }
    let len = u32::from_le_bytes(src[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_BODY {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
    }
    if src.len() < header + len {
        src.reserve(header + len - src.len());
        return Ok(None);
    }
    let key = u32::from_le_bytes(src[key_at..key_at + 4].try_into().expect("4 bytes"));
    src.advance(header);
    Ok(Some((key, src.split_to(len).freeze())))
}

impl tokio_util::codec::Encoder<(u32, Bytes)> for FrameCodec {
    type Error = io::Error;

    fn encode(&mut self, (id, body): (u32, Bytes), dst: &mut BytesMut) -> io::Result<()> {
        dst.reserve(8 + body.len());
        dst.put_u32_le(body.len() as u32);
        dst.put_u32_le(id);
        dst.extend_from_slice(&body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_frame_waits_for_the_whole_frame() {
        // `len | id | seq | body` with the seq as key, as `rpc`'s client reads it.
        let mut src = BytesMut::new();
        src.put_u32_le(3);
        src.put_u32_le(1);
        src.put_u32_le(42);
        src.extend_from_slice(b"ab");
        assert!(decode_frame(&mut src, 12, 8).unwrap().is_none());
        src.extend_from_slice(b"c!");
        let (key, body) = decode_frame(&mut src, 12, 8).unwrap().unwrap();
        assert_eq!((key, &body[..], &src[..]), (42, &b"abc"[..], &b"!"[..]));
        src.clear();
        src.put_u32_le(MAX_BODY as u32 + 1);
        src.put_u32_le(7);
        assert!(decode_frame(&mut src, 8, 4).is_err());
    }
}
