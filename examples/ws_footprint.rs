//! Measures heap bytes per idle connection (plain TCP, WebSocket and TLS,
//! after one echo each) and echo throughput over all three, in one run.
//!
//! ```text
//! cargo run --release --example ws_footprint            # 10,000 connections of each kind
//! cargo run --release --example ws_footprint -- 2000
//! cargo run --release --example ws_footprint -- 10000 65536   # echo 64 KiB first
//! ```
//!
//! The server counts its live heap with a counting global allocator
//! (requested bytes; the allocator's own per-block overhead comes on top
//! and is estimated from the number of live blocks). It sees Rust's heap
//! only: aws-lc-rs, the TLS provider, keeps its keys in C allocations that
//! it misses (about 0.3 KB per idle TLS connection, measured with glibc's
//! `mallinfo2`). The clients run in a child process (this executable with `--clients`), so their memory and
//! file descriptors are not the server's.
//!
//! Phases, one after the other: N plain TCP connections (then closed), N
//! WebSocket connections (then closed), N TLS connections to a second
//! server with `.tls(..)` (a self-signed "localhost" certificate made with
//! rcgen, aws-lc-rs provider; the child gets the certificate as a PEM
//! temp file and trusts only it). Each connection does one echo and stays idle while
//! the server's heap is read. The TLS handshakes run on [`TLS_THREADS`]
//! client threads within [`TLS_CONNECT_LIMIT`]. Then echo throughput over
//! plain TCP, WebSocket and TLS, the same method for each.

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
#[path = "common/ws_frame.rs"]
mod ws_frame;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use counting_alloc::live;
use netloom::{ws, Server, ServerHandle};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConnection, StreamOwned};
use ws_frame::client_frame;

#[global_allocator]
static ALLOC: counting_alloc::Counting = counting_alloc::Counting;

const ECHO_CONNS: usize = 16;
const BATCH: usize = 64;
const BODY: usize = 64;
const SECONDS: u64 = 3;
/// Client threads doing TLS handshakes in the TLS phase.
const TLS_THREADS: usize = 4;
/// Time allowed for all TLS connections of the TLS phase.
const TLS_CONNECT_LIMIT: Duration = Duration::from_secs(120);
/// Read and write timeout of every client socket.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

type TlsStream = StreamOwned<ClientConnection, TcpStream>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A file in the temp directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> std::io::Result<TempFile> {
        let path = std::env::temp_dir().join(format!(
            "netloom-ws-footprint-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, contents)?;
        Ok(TempFile(path))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--clients") {
        return clients(&args[2..]);
    }
    let n: usize = args.get(1).map_or(Ok(10_000), |s| s.parse())?;
    let first: usize = args.get(2).map_or(Ok(5), |s| s.parse())?;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let tls_config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)?;
    let cert_file = TempFile::new("cert.pem", &ck.cert.pem())?;
    let tls_server = Server::builder()
        .event_loops(1)
        .tls(Arc::new(tls_config))
        .route(7, |ctx| ctx.reply(7, ctx.body()))
        .bind("127.0.0.1:0")?
        .start()?;
    let tlsa = tls_server.local_addr();
    let server = Server::builder()
        .event_loops(1)
        .route(7, |ctx| ctx.reply(7, ctx.body()))
        .route(ws::TEXT, |ctx| ctx.reply(ws::TEXT, ctx.body()))
        .route(ws::BINARY, |ctx| ctx.reply(ws::BINARY, ctx.body()))
        .bind("127.0.0.1:0")?
        .bind_ws("127.0.0.1:0")?
        .start()?;
    let (tcp, wsa) = (server.local_addrs()[0], server.local_addrs()[1]);
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--clients",
            &n.to_string(),
            &tcp.to_string(),
            &wsa.to_string(),
            &first.to_string(),
            &tlsa.to_string(),
            cert_file.0.to_str().ok_or("temp path is not UTF-8")?,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let mut go = child.stdin.take().ok_or("no stdin")?;
    // The client does one phase per line it reads, then reports.
    let mut step = move |expect: &str| -> Result<String, BoxError> {
        writeln!(go, "go")?;
        let line = lines.next().ok_or("client exited")??;
        if !line.starts_with(expect) {
            return Err(format!("client said {line:?}, expected {expect}").into());
        }
        Ok(line)
    };
    let settle_on = |server: &ServerHandle, conns: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.connection_count() != conns && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let settle = |conns: usize| settle_on(&server, conns);
    settle(0);
    let base = live();
    step("tcp-ready")?;
    settle(n);
    let tcp = live();
    // The TCP connections close; the slab keeps its grown capacity, so the
    // WebSocket phase measures what a WebSocket adds to a connection slot.
    step("tcp-closed")?;
    settle(0);
    let slots = live();
    step("ws-ready")?;
    settle(n);
    let ws = live();
    // The WebSocket connections close (the client keeps at most N idle
    // sockets at a time); then N TLS connections to the TLS server, whose
    // slab is empty, so this delta is slot + TLS.
    step("ws-closed")?;
    settle(0);
    settle_on(&tls_server, 0);
    let tls_base = live();
    let tls_started = Instant::now();
    step("tls-ready")?;
    let tls_connect = tls_started.elapsed();
    settle_on(&tls_server, n);
    let tls = live();
    let per = |a: (isize, isize), b: (isize, isize)| {
        ((b.0 - a.0) as f64 / n as f64, (b.1 - a.1) as f64 / n as f64)
    };
    let (tcp_bytes, tcp_blocks) = per(base, tcp);
    let (ws_bytes, ws_blocks) = per(slots, ws);
    let (tls_bytes, tls_blocks) = per(tls_base, tls);
    println!(
        "{n} idle connections of each kind (one after the other), each after one echo of {first} bytes:"
    );
    println!(
        "  plain TCP : {tcp_bytes:5.0} heap bytes/conn (the slab slot; {tcp_blocks:.2} blocks/conn)"
    );
    println!(
        "  WebSocket : {:5.0} heap bytes/conn = slot + {ws_bytes:.0} in {ws_blocks:.2} blocks (+ ~{:.0} malloc overhead at 16 B/block)",
        tcp_bytes + ws_bytes,
        ws_blocks * 16.0
    );
    println!(
        "  TLS       : {tls_bytes:5.0} heap bytes/conn = slot + {:.0} in {tls_blocks:.2} blocks (+ ~{:.0} malloc overhead at 16 B/block)",
        tls_bytes - tcp_bytes,
        tls_blocks * 16.0
    );
    println!(
        "  ({n} TLS handshakes + echoes took {:.1} s on {TLS_THREADS} client threads; size_of::<rustls::server::UnbufferedServerConnection>() = {} bytes)",
        tls_connect.as_secs_f64(),
        std::mem::size_of::<rustls::server::UnbufferedServerConnection>()
    );
    let tcp_rate = step("tcp-echo")?;
    let ws_rate = step("ws-echo")?;
    let tls_rate = step("tls-echo")?;
    println!(
        "echo throughput, {ECHO_CONNS} connections, batches of {BATCH} x {BODY}-byte messages, {SECONDS} s each, 1 event loop:"
    );
    println!("  {tcp_rate}\n  {ws_rate}\n  {tls_rate}");
    drop(step);
    child.wait()?;
    server.shutdown(Duration::from_secs(5))?;
    tls_server.shutdown(Duration::from_secs(5))?;
    drop(cert_file);
    Ok(())
}

// ---------------------------------------------------------------------------
// The client process
// ---------------------------------------------------------------------------

fn clients(args: &[String]) -> Result<(), BoxError> {
    let n: usize = args[0].parse()?;
    let tcp: SocketAddr = args[1].parse()?;
    let wsa: SocketAddr = args[2].parse()?;
    let first: usize = args[3].parse()?;
    let tlsa: SocketAddr = args[4].parse()?;
    let cert = CertificateDer::from_pem_file(&args[5])?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let tls_config = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let mut out = std::io::stdout();
    let stdin = std::io::stdin();
    let wait = || {
        let mut line = String::new();
        stdin.read_line(&mut line).map(|n| n > 0)
    };
    let mut keep = Vec::with_capacity(n);
    wait()?;
    for _ in 0..n {
        let mut s = TcpStream::connect(tcp)?;
        let frame = packer_frame(&vec![b'h'; first]);
        s.write_all(&frame)?;
        let mut reply = vec![0u8; frame.len()];
        s.read_exact(&mut reply)?;
        keep.push(s);
    }
    writeln!(out, "tcp-ready")?;
    wait()?;
    keep.clear();
    writeln!(out, "tcp-closed")?;
    wait()?;
    for _ in 0..n {
        let mut s = ws_connect(wsa)?;
        let frame = client_frame(0x82, &vec![b'h'; first]);
        s.write_all(&frame)?;
        let mut reply = vec![0u8; frame.len() - 4];
        s.read_exact(&mut reply)?;
        keep.push(s);
    }
    writeln!(out, "ws-ready")?;
    wait()?;
    keep.clear();
    writeln!(out, "ws-closed")?;
    wait()?;
    let idle_tls = tls_connect_many(n, tlsa, &tls_config, first)?;
    writeln!(out, "tls-ready")?;
    wait()?;
    let packer_batch = {
        let mut batch = Vec::new();
        for _ in 0..BATCH {
            batch.extend_from_slice(&packer_frame(&[b'x'; BODY]));
        }
        batch
    };
    let tcp_rate = echo(
        ECHO_CONNS,
        || {
            let s = TcpStream::connect(tcp)?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            Ok(s)
        },
        &packer_batch,
        packer_batch.len(),
    )?;
    writeln!(out, "tcp-echo: {tcp_rate:.0} messages/s (plain TCP)")?;
    wait()?;
    let ws_batch = {
        let mut batch = Vec::new();
        for _ in 0..BATCH {
            batch.extend_from_slice(&client_frame(0x82, &[b'x'; BODY]));
        }
        batch
    };
    // Server frames are unmasked: 4 bytes shorter per message.
    let ws_reply = ws_batch.len() - 4 * BATCH;
    let ws_rate = echo(
        ECHO_CONNS,
        || {
            let s = ws_connect(wsa)?;
            s.set_nodelay(true)?;
            Ok(s)
        },
        &ws_batch,
        ws_reply,
    )?;
    writeln!(out, "ws-echo:  {ws_rate:.0} messages/s (WebSocket)")?;
    wait()?;
    let tls_rate = echo(
        ECHO_CONNS,
        || tls_connect(tlsa, &tls_config),
        &packer_batch,
        packer_batch.len(),
    )?;
    writeln!(out, "tls-echo: {tls_rate:.0} messages/s (TLS)")?;
    // Hold the idle connections until the server is done measuring.
    while wait()? {}
    drop(idle_tls);
    Ok(())
}

/// A TLS connection for "localhost", handshake done.
fn tls_connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> Result<TlsStream, BoxError> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let name = ServerName::try_from("localhost")?;
    let mut s = StreamOwned::new(ClientConnection::new(config.clone(), name)?, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// `n` TLS connections, each after one echo of `first` bytes, made by
/// [`TLS_THREADS`] threads within [`TLS_CONNECT_LIMIT`].
fn tls_connect_many(
    n: usize,
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    first: usize,
) -> Result<Vec<TlsStream>, BoxError> {
    let deadline = Instant::now() + TLS_CONNECT_LIMIT;
    let frame = packer_frame(&vec![b'h'; first]);
    let results: Vec<Result<Vec<TlsStream>, BoxError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..TLS_THREADS)
            .map(|t| {
                let count = n / TLS_THREADS + usize::from(t < n % TLS_THREADS);
                let frame = &frame;
                scope.spawn(move || -> Result<Vec<TlsStream>, BoxError> {
                    let mut mine = Vec::with_capacity(count);
                    for _ in 0..count {
                        if Instant::now() > deadline {
                            return Err(format!(
                                "TLS connections took longer than {TLS_CONNECT_LIMIT:?}"
                            )
                            .into());
                        }
                        let mut s = tls_connect(addr, config)?;
                        s.write_all(frame)?;
                        let mut reply = vec![0u8; frame.len()];
                        s.read_exact(&mut reply)?;
                        mine.push(s);
                    }
                    Ok(mine)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("TLS client thread panicked".into()))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(n);
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}

fn packer_frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&7u32.to_le_bytes());
    f.extend_from_slice(body);
    f
}

fn ws_connect(addr: SocketAddr) -> Result<TcpStream, BoxError> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err("upgrade refused".into());
    }
    Ok(s)
}

/// Pipelined echo over `conns` connections (nodelay set by `connect`)
/// for `SECONDS`, one thread: write a batch on every connection, then read
/// `reply_len` bytes from each; messages/s.
fn echo<S: Read + Write>(
    conns: usize,
    connect: impl Fn() -> Result<S, BoxError>,
    batch: &[u8],
    reply_len: usize,
) -> Result<f64, BoxError> {
    let mut streams = (0..conns)
        .map(|_| connect())
        .collect::<Result<Vec<_>, _>>()?;
    let mut buf = vec![0u8; reply_len];
    let start = Instant::now();
    let mut messages = 0u64;
    while start.elapsed() < Duration::from_secs(SECONDS) {
        for s in &mut streams {
            s.write_all(batch)?;
            s.flush()?;
        }
        for s in &mut streams {
            s.read_exact(&mut buf)?;
        }
        messages += (conns * BATCH) as u64;
    }
    Ok(messages as f64 / start.elapsed().as_secs_f64())
}
