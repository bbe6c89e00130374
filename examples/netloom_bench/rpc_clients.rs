//! The request/response clients `rpc` compares (the third, the raw-mio
//! floor, is `rpc_floor.rs`), doing the same work:
//! `conns` connections, `in_flight` requests outstanding on each at all
//! times (a closed loop: every reply sends the next request), every reply
//! checked against its request and timed.
//!
//! * `netloom`: a server that only dials (one loop), `ConnHandle::request_with`
//!   whose callback, on the loop thread, sends the next request.
//! * `tokio`: the multiplexing client of tokio-tower and tarpc: per
//!   connection a task owning a tokio-util `Framed` and a map of pending
//!   `oneshot` senders by sequence number, fed through an `mpsc`; one task
//!   per outstanding request awaits its `oneshot`. A `current_thread`
//!   runtime, so both clients have one thread doing the work.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use hdrhistogram::Histogram;
use netloom::{ConnHandle, SeqPacker, Server};

/// Longest a request may wait before it counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Message id of every request.
pub const ID: u32 = 1;

/// What the measuring side reads while a client runs.
pub struct Meter {
    /// Set while the measurement window is open: replies are recorded.
    measuring: AtomicBool,
    /// Set at the end: no new requests.
    pub stop: AtomicBool,
    replies: AtomicU64,
    pub errors: AtomicU64,
    /// Request chains that ended (one per outstanding request).
    pub ended: AtomicU64,
    hist: Mutex<Histogram<u64>>,
    pub body: Bytes,
}

impl Meter {
    pub fn new(size: usize) -> Arc<Meter> {
        Arc::new(Meter {
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            replies: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds")),
            body: Bytes::from(vec![b'r'; size]),
        })
    }

    /// One reply came, `sent` when its request left.
    pub fn reply(&self, ok: bool, sent: Instant) {
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        } else if self.measuring.load(Ordering::Relaxed) {
            self.replies.fetch_add(1, Ordering::Relaxed);
            let ns = sent.elapsed().as_nanos() as u64;
            if let Ok(mut h) = self.hist.lock() {
                let _ = h.record(ns.max(1));
            }
        }
    }

    /// Open the window (clearing what warm-up recorded).
    pub fn start(&self) {
        if let Ok(mut h) = self.hist.lock() {
            h.reset();
        }
        self.replies.store(0, Ordering::Relaxed);
        self.measuring.store(true, Ordering::Relaxed);
    }

    /// Close the window: replies, errors, p50 and p99 in microseconds.
    pub fn finish(&self) -> (u64, u64, f64, f64) {
        self.measuring.store(false, Ordering::Relaxed);
        let h = self.hist.lock().map(|h| h.clone()).ok();
        let q = |p| {
            h.as_ref()
                .map_or(0.0, |h| h.value_at_quantile(p) as f64 / 1000.0)
        };
        (
            self.replies.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            q(0.50),
            q(0.99),
        )
    }

    /// Stop sending and wait (bounded) for the `chains` outstanding
    /// requests to end.
    pub fn drain(&self, chains: u64) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(2);
        while self.ended.load(Ordering::Relaxed) < chains {
            if Instant::now() > deadline {
                return Err("requests still outstanding after the run".into());
            }
            std::thread::sleep(Duration::from_millis(5)); // polling a counter at the end of a run
        }
        Ok(())
    }
}

/// A client under measurement: `run` returns after `window` plus warm-up,
/// calling `open` when the window opens and `close` when it closes.
pub fn run(
    kind: &str,
    addr: SocketAddr,
    conns: usize,
    in_flight: usize,
    meter: &Arc<Meter>,
    window: &mut dyn FnMut(&Meter),
) -> Result<(), String> {
    match kind {
        "netloom" => run_netloom(addr, conns, in_flight, meter, window),
        "tokio" => run_tokio(addr, conns, in_flight, meter, window),
        "mio" => crate::rpc_floor::run_mio(addr, conns, in_flight, meter, window),
        other => Err(format!("unknown client kind {other:?}")),
    }
}

// ---------------------------------------------------------------- netloom

fn run_netloom(
    addr: SocketAddr,
    conns: usize,
    in_flight: usize,
    meter: &Arc<Meter>,
    window: &mut dyn FnMut(&Meter),
) -> Result<(), String> {
    let err = |e: netloom::Error| format!("netloom client: {e}");
    let client = Server::builder()
        .packer(SeqPacker::new(crate::serve::MAX_BODY))
        .event_loops(1)
        .start()
        .map_err(err)?;
    let handles: Vec<ConnHandle> = (0..conns)
        .map(|_| client.hub().connect(addr))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    for h in &handles {
        h.request(ID, b"hello", REQUEST_TIMEOUT)
            .and_then(|p| p.wait())
            .map_err(err)?;
    }
    for h in &handles {
        for _ in 0..in_flight {
            fire(h.clone(), meter.clone());
        }
    }
    window(meter);
    let drained = meter.drain((conns * in_flight) as u64);
    let _ = client.shutdown(Duration::from_secs(2));
    drained
}

/// One request; its callback (on the loop thread) checks the reply and
/// sends the next, until the meter says stop.
fn fire(conn: ConnHandle, meter: Arc<Meter>) {
    let sent = Instant::now();
    let (next, m) = (conn.clone(), meter.clone());
    let started = conn.request_with(ID, &meter.body, REQUEST_TIMEOUT, move |reply| {
        m.reply(reply.is_ok_and(|r| r.body == m.body), sent);
        if m.stop.load(Ordering::Relaxed) {
            m.ended.fetch_add(1, Ordering::Relaxed);
        } else {
            fire(next, m);
        }
    });
    if started.is_err() {
        meter.errors.fetch_add(1, Ordering::Relaxed);
        meter.ended.fetch_add(1, Ordering::Relaxed);
    }
}

// ------------------------------------------------------------------ tokio

/// `len u32 | id u32 | seq u32 | body`, little-endian, as a tokio-util
/// codec: a frame is `(seq, body)` (the id is always [`ID`]).
#[derive(Debug, Default)]
struct SeqCodec;

impl tokio_util::codec::Decoder for SeqCodec {
    type Item = (u32, Bytes);
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<(u32, Bytes)>> {
        crate::serve::decode_frame(src, 12, 8)
    }
}

impl tokio_util::codec::Encoder<(u32, Bytes)> for SeqCodec {
    type Error = io::Error;

    fn encode(&mut self, (seq, body): (u32, Bytes), dst: &mut BytesMut) -> io::Result<()> {
        dst.reserve(12 + body.len());
        dst.put_u32_le(body.len() as u32);
        dst.put_u32_le(ID);
        dst.put_u32_le(seq);
        dst.extend_from_slice(&body);
        Ok(())
    }
}

type Call = (Bytes, tokio::sync::oneshot::Sender<Bytes>);

fn run_tokio(
    addr: SocketAddr,
    conns: usize,
    in_flight: usize,
    meter: &Arc<Meter>,
    window: &mut dyn FnMut(&Meter),
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let m = meter.clone();
    let worker = std::thread::spawn(move || {
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for _ in 0..conns {
                let stream = match tokio::net::TcpStream::connect(addr).await {
                    Ok(s) => s,
                    Err(e) => return Err(format!("tokio connect: {e}")),
                };
                let _ = stream.set_nodelay(true);
                let (tx, rx) = tokio::sync::mpsc::channel::<Call>(in_flight.max(1) * 2);
                tokio::spawn(connection(stream, rx));
                for _ in 0..in_flight {
                    tasks.push(tokio::spawn(caller(tx.clone(), m.clone())));
                }
            }
            let _ = ready_tx.send(());
            for t in tasks {
                let _ = t.await;
            }
            Ok(())
        })
    });
    ready
        .recv_timeout(REQUEST_TIMEOUT)
        .map_err(|_| "tokio client did not connect".to_string())?;
    window(meter);
    // A run whose requests do not all end leaves its thread behind (the
    // process ends soon after) rather than waiting on it without bound.
    meter.drain((conns * in_flight) as u64)?;
    worker
        .join()
        .map_err(|_| "tokio client panicked".to_string())?
}

/// One outstanding request at a time, until the meter says stop.
async fn caller(tx: tokio::sync::mpsc::Sender<Call>, meter: Arc<Meter>) {
    while !meter.stop.load(Ordering::Relaxed) {
        let (reply_tx, reply) = tokio::sync::oneshot::channel();
        let sent = Instant::now();
        if tx.send((meter.body.clone(), reply_tx)).await.is_err() {
            meter.errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
        let got = reply.await;
        meter.reply(got.is_ok_and(|b| b == meter.body), sent);
    }
    meter.ended.fetch_add(1, Ordering::Relaxed);
}

/// The connection's task: requests from the callers go out with fresh
/// sequence numbers (all that are waiting, then one flush); replies are
/// matched in the map of pending senders.
async fn connection(stream: tokio::net::TcpStream, mut calls: tokio::sync::mpsc::Receiver<Call>) {
    use futures_util::{SinkExt, StreamExt};
    let mut framed = tokio_util::codec::Framed::new(stream, SeqCodec);
    let mut pending: HashMap<u32, tokio::sync::oneshot::Sender<Bytes>> = HashMap::new();
    let mut seq = 0u32;
    loop {
        tokio::select! {
            call = calls.recv() => {
                let Some(mut call) = call else { return };
                loop {
                    seq = seq.wrapping_add(1).max(1);
                    pending.insert(seq, call.1);
                    if framed.feed((seq, call.0)).await.is_err() {
                        return;
                    }
                    match calls.try_recv() {
                        Ok(next) => call = next,
                        Err(_) => break,
                    }
                }
                if framed.flush().await.is_err() {
                    return;
                }
            }
            frame = framed.next() => {
                let Some(Ok((seq, body))) = frame else { return };
                if let Some(tx) = pending.remove(&seq) {
                    let _ = tx.send(body);
                }
            }
        }
    }
}
