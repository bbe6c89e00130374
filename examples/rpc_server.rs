//! A request/response server on the sequence packer: every request is
//! answered with its own id, sequence number and body.
//!
//! ```text
//! cargo run --release --example rpc_server            # 127.0.0.1:6572
//! cargo run --release --example rpc_server -- 0.0.0.0:7000
//! ```
//!
//! Frames are `SeqPacker`'s: body length u32 LE, message id u32 LE,
//! sequence number u32 LE, body. Message id 2 is answered late, from a
//! worker thread, after the number of milliseconds its body spells (e.g.
//! body `1500`): what `rpc_client --slow-every N` uses to show timeouts.
//! Every other id is answered at once. Limits and the idle timeout come
//! from `NETLOOM_*` environment variables where set (see
//! `Builder::config_from_env`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use netloom::bytes::Bytes;
use netloom::{Context, Responder, SeqPacker, Server};

/// The id answered late.
const SLOW: u32 = 2;
/// The longest delay id 2 may ask for.
const MAX_DELAY: Duration = Duration::from_secs(30);

fn main() -> Result<(), netloom::Error> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6572".into());
    let later = delayer();
    let server = Server::builder()
        .packer(SeqPacker::default())
        .heartbeat(Duration::from_secs(30), Duration::from_secs(180))
        .route(SLOW, move |ctx: &mut Context<'_>| {
            let delay = std::str::from_utf8(ctx.body())
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .map_or(Duration::ZERO, Duration::from_millis)
                .min(MAX_DELAY);
            let answer = (Instant::now() + delay, ctx.responder(), ctx.body_bytes());
            let _ = later.send(answer);
        })
        .fallback(|ctx| ctx.reply(ctx.msg_id(), ctx.body()))
        .config_from_env()?
        .bind(addr.as_str())?
        .start()?;
    let addr = server.local_addr();
    println!("netloom rpc server listening on {addr}");
    println!("try it: cargo run --release --example rpc_client -- {addr}");
    println!(
        r#"or with Python (len=5, id=1, seq=42, body=hello): python3 -c 'import socket, struct; s = socket.create_connection(("{}", {}), timeout=5); s.sendall(struct.pack("<III", 5, 1, 42) + b"hello"); f = s.makefile("rb"); n, i, q = struct.unpack("<III", f.read(12)); print("id", i, "seq", q, "body", f.read(n))'"#,
        addr.ip(),
        addr.port()
    );
    println!("press Ctrl-C to stop");
    server.join()
}

/// An answer due at a time.
type Late = (Instant, Responder, Bytes);

/// One thread that sends each late answer when it is due, however many
/// are waiting (a thread per request would let a client spawn thousands).
fn delayer() -> Sender<Late> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || run_delayer(&rx));
    tx
}

fn run_delayer(rx: &Receiver<Late>) {
    // Ordered by due time; the sequence number breaks ties.
    let mut due: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut waiting: HashMap<u64, (Responder, Bytes)> = HashMap::new();
    let mut n = 0u64;
    loop {
        let now = Instant::now();
        while let Some(&Reverse((at, k))) = due.peek() {
            if at > now {
                break;
            }
            due.pop();
            if let Some((responder, body)) = waiting.remove(&k) {
                let _ = responder.respond(SLOW, body);
            }
        }
        let got = match due.peek() {
            Some(&Reverse((at, _))) => rx.recv_timeout(at.saturating_duration_since(now)),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match got {
            Ok((at, responder, body)) => {
                n += 1;
                due.push(Reverse((at, n)));
                waiting.insert(n, (responder, body));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
