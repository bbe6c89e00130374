//! Helpers for `tests/it/tls.rs` and `tests/it/tls/`: certificates made at
//! test time, temp files, a raw rustls client that counts TLS records, and
//! child processes (openssl, python3) with bounded waits.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{unbounded, Receiver};
use netloom::TlsInfo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConnection, StreamOwned, SupportedProtocolVersion};

use crate::common::{frame, TIMEOUT};

/// The ALPN protocol every test server and client offers.
pub const ALPN: &[u8] = b"netloom/1";
/// Echo: the reply carries the request's id and body.
pub const ECHO: u32 = 1;

/// What a handshake settled, as "alpn sni" ("-" for either when absent):
/// the text the test servers' info routes reply with.
pub fn alpn_and_sni(i: &TlsInfo) -> String {
    format!(
        "{} {}",
        i.alpn
            .as_deref()
            .map_or("-".into(), String::from_utf8_lossy),
        i.sni.as_deref().unwrap_or("-")
    )
}

/// A self-signed certificate for "localhost" and 127.0.0.1, made at test
/// time.
pub struct TestCert {
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn test_cert() -> TestCert {
    let names = vec!["localhost".into(), "127.0.0.1".into()];
    let ck = rcgen::generate_simple_self_signed(names).expect("rcgen");
    TestCert {
        cert_der: ck.cert.der().clone(),
        key_der: ck.signing_key.serialize_der(),
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    }
}

/// A file under the temp directory, unique to this process and call,
/// removed when dropped (certificates for openssl and Python, keys for
/// `tls_pem_files`).
pub struct TempFile(PathBuf);

impl TempFile {
    pub fn new(name: &str, contents: &str) -> TempFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "netloom-tls-test-{}-{n}-{name}",
            std::process::id()
        ));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).expect("create temp file");
        file.write_all(contents.as_bytes())
            .expect("write temp file");
        TempFile(path)
    }

    pub fn arg(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Server settings: our certificate, these versions, ALPN [`ALPN`].
pub fn server_config(
    c: &TestCert,
    versions: &[&'static SupportedProtocolVersion],
) -> rustls::ServerConfig {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_der.clone()));
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![c.cert_der.clone()], key)
        .unwrap();
    config.alpn_protocols = vec![ALPN.to_vec()];
    config
}

/// Client settings trusting `c`, these versions, ALPN [`ALPN`].
pub fn client_config_versions(
    c: &TestCert,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(c.cert_der.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Arc::new(config)
}

pub fn client_config(c: &TestCert) -> Arc<rustls::ClientConfig> {
    client_config_versions(c, rustls::ALL_VERSIONS)
}

// ---------------------------------------------------------------------------
// A raw rustls client that counts the TLS records it sends and receives.
// ---------------------------------------------------------------------------

/// Counts the TLS records in one direction of a byte stream by following
/// the 5-byte record headers (type u8, version u16, length u16 BE).
#[derive(Default)]
pub struct Records {
    head: [u8; 5],
    have: usize,
    body_left: usize,
    /// Records of type application_data (23).
    app_data: usize,
}

impl Records {
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 5 {
                self.have = 0;
                self.body_left = u16::from_be_bytes([self.head[3], self.head[4]]) as usize;
                if self.head[0] == 23 {
                    self.app_data += 1;
                }
            }
        }
    }
}

/// The TCP stream under a [`TlsPeer`], counting records both ways.
pub struct Tap {
    pub tcp: TcpStream,
    rx: Records,
    tx: Records,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tcp.read(buf)?;
        self.rx.feed(&buf[..n]);
        Ok(n)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tcp.write(buf)?;
        self.tx.feed(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// A TLS client built from rustls directly: it never sends close_notify
/// unless asked, reports a clean TLS end (close_notify) as `Ok(0)` and an
/// unclean one as `UnexpectedEof`, and counts records.
pub struct TlsPeer {
    pub s: StreamOwned<ClientConnection, Tap>,
}

impl TlsPeer {
    pub fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsPeer {
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        TlsPeer::over(tcp, config)
    }

    /// Handshake over an already connected socket, for "localhost".
    pub fn over(tcp: TcpStream, config: Arc<rustls::ClientConfig>) -> TlsPeer {
        TlsPeer::named(tcp, config, "localhost")
    }

    /// Handshake over an already connected socket, checking the server's
    /// certificate against `name` (a DNS name is sent as SNI, an IP
    /// address is not).
    pub fn named(tcp: TcpStream, config: Arc<rustls::ClientConfig>, name: &str) -> TlsPeer {
        tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
        tcp.set_nodelay(true).unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let conn = ClientConnection::new(config, name).unwrap();
        let mut s = StreamOwned::new(
            conn,
            Tap {
                tcp,
                rx: Records::default(),
                tx: Records::default(),
            },
        );
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).expect("TLS handshake");
        }
        TlsPeer { s }
    }

    /// Write every pending TLS record with one `write` (one segment on
    /// loopback), so the server reads them together.
    pub fn flush_in_one_write(&mut self) {
        let mut wire = Vec::new();
        while self.s.conn.wants_write() {
            self.s.conn.write_tls(&mut wire).unwrap();
        }
        self.s.sock.write_all(&wire).unwrap();
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.s.sock.tcp.local_addr().unwrap()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("TLS write");
        self.s.flush().expect("TLS flush");
    }

    pub fn send(&mut self, id: u32, body: &[u8]) {
        self.send_raw(&frame(id, body));
    }

    pub fn recv(&mut self) -> (u32, Vec<u8>) {
        let mut head = [0u8; 8];
        self.s.read_exact(&mut head).expect("read frame header");
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let id = u32::from_le_bytes(head[4..].try_into().unwrap());
        let mut body = vec![0u8; len];
        self.s.read_exact(&mut body).expect("read frame body");
        (id, body)
    }

    pub fn assert_echoes(&mut self, body: &[u8]) {
        self.send(ECHO, body);
        let (id, got) = self.recv();
        assert_eq!(id, ECHO);
        assert!(got == body, "echo differs ({} bytes sent)", body.len());
    }

    /// Read until the TLS stream ends. `Ok(rest)` only if the server sent
    /// close_notify (rustls reports a TCP end without it as
    /// `UnexpectedEof`).
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        let mut rest = Vec::new();
        self.s.read_to_end(&mut rest)?;
        Ok(rest)
    }

    /// Application-data records received and sent so far.
    pub fn records(&self) -> (usize, usize) {
        (self.s.sock.rx.app_data, self.s.sock.tx.app_data)
    }
}

/// Read a plain TCP socket until the server closes it; returns what it sent
/// before. Panics on a reset or a timeout: the close must be clean.
pub fn read_until_fin(tcp: &mut TcpStream) -> Vec<u8> {
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "expected a clean close (FIN), got {e} (kind {:?})",
                e.kind()
            ),
        }
    }
}

/// What a server sends a peer it drops during the handshake: nothing, or
/// TLS alert records (content type 21, plaintext before keys exist).
pub fn assert_only_alerts(bytes: &[u8]) {
    let mut rest = bytes;
    while !rest.is_empty() {
        assert!(rest.len() >= 5, "truncated record: {bytes:?}");
        assert_eq!(rest[0], 21, "expected a TLS alert record, got {bytes:?}");
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        assert!(rest.len() >= 5 + len, "truncated alert: {bytes:?}");
        rest = &rest[5 + len..];
    }
}

// ---------------------------------------------------------------------------
// Third-party peers (found by `crate::common::peers`): child processes
// with bounded waits.
// ---------------------------------------------------------------------------

/// A child process we started, with its stdout read by a thread into a
/// channel (so every read has a deadline). Killed (by its own pid, through
/// `Child::kill`) and reaped when dropped.
pub struct Proc {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Chunks of stdout; `None` once stdout is closed.
    out: Receiver<Option<Vec<u8>>>,
    buf: Vec<u8>,
    closed: bool,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut stdout = child.stdout.take().unwrap();
        let (tx, out) = unbounded();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(n) => {
                        if tx.send(Some(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Proc {
            name,
            stdin: child.stdin.take(),
            child,
            out,
            buf: Vec::new(),
            closed: false,
            stderr: errors,
        }
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to child's stdin");
        stdin.flush().unwrap();
    }

    /// Wait (bounded) until stdout holds `n` unread bytes or has closed.
    pub fn fill(&mut self, n: usize) {
        let deadline = Instant::now() + TIMEOUT;
        while self.buf.len() < n && !self.closed {
            match self.out.recv_deadline(deadline) {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => self.closed = true,
                Err(_) => panic!(
                    "{}: no output within {TIMEOUT:?} (have {} of {n} bytes); stderr:\n{}",
                    self.name,
                    self.buf.len(),
                    self.stderr()
                ),
            }
        }
    }

    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        self.fill(n);
        assert!(
            self.buf.len() >= n,
            "{}: stdout closed after {} of {n} bytes; stderr:\n{}",
            self.name,
            self.buf.len(),
            self.stderr()
        );
        self.buf.drain(..n).collect()
    }

    /// One frame of the default wire format from stdout.
    pub fn read_frame(&mut self) -> (u32, Vec<u8>) {
        let head = self.read_exact(8);
        let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
        let id = u32::from_le_bytes(head[4..].try_into().unwrap());
        (id, self.read_exact(len))
    }

    /// One line of stdout, without its newline.
    pub fn read_line(&mut self) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            assert!(
                !self.closed,
                "{}: stdout closed before a full line ({:?}); stderr:\n{}",
                self.name,
                String::from_utf8_lossy(&self.buf),
                self.stderr()
            );
            self.fill(self.buf.len() + 1);
            assert!(Instant::now() < deadline, "{}: no line in time", self.name);
        }
    }

    /// Wait (bounded) for the child to close stdout, then reap it. Returns
    /// its status and the rest of its stdout.
    pub fn finish(&mut self) -> (ExitStatus, String) {
        self.stdin = None;
        self.fill(usize::MAX);
        let status = self.child.wait().expect("wait for child");
        let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
        (status, rest)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command running `py` with tests/it on its module path (for
/// `tls_peer.py`, what the Python TLS peers share).
pub fn python(py: &str) -> Command {
    let mut cmd = Command::new(py);
    cmd.env(
        "PYTHONPATH",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it"),
    );
    cmd
}

/// Run a Python script with `py` (from `require(Peer::Python3)`) to
/// completion (bounded) and return its stdout; the script must exit 0.
pub fn run_python(py: &str, script: &str, args: &[&str]) -> String {
    let mut p = Proc::spawn("python3", python(py).arg("-c").arg(script).args(args));
    let (status, out) = p.finish();
    assert!(
        status.success(),
        "python3 failed ({status}); stdout:\n{out}\nstderr:\n{}",
        p.stderr()
    );
    out
}
