//! Shared helpers for the integration tests: frames built from literal
//! bytes (never with netloom's encoder), a blocking test client with
//! timeouts, bounded waits instead of sleeps, and the third-party peers
//! (`peers`).
#![allow(dead_code)]

pub mod panics;
pub mod peers;
pub mod race;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{Builder, CloseReason, Context, ServerHandle};

/// How long any single wait in a test may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

pub fn init_logs() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// Bind to an ephemeral loopback port and start.
pub fn start(builder: Builder) -> ServerHandle {
    init_logs();
    builder
        .bind("127.0.0.1:0")
        .expect("bind")
        .start()
        .expect("start")
}

/// A frame of the default wire format, assembled by hand:
/// body length u32 LE, message id u32 LE, body.
pub fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut v = vec![
        len as u8,
        (len >> 8) as u8,
        (len >> 16) as u8,
        (len >> 24) as u8,
        id as u8,
        (id >> 8) as u8,
        (id >> 16) as u8,
        (id >> 24) as u8,
    ];
    v.extend_from_slice(body);
    v
}

/// Poll `cond` until it holds or `TIMEOUT` passes (then panic with `what`).
/// Used only where no event can be waited on (e.g. a counter to settle).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A blocking client with read/write timeouts.
pub struct Client {
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client { stream }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub fn send(&mut self, id: u32, body: &[u8]) {
        self.send_raw(&frame(id, body));
    }

    /// Read one frame: (id, body). Panics on timeout or close.
    pub fn recv(&mut self) -> (u32, Vec<u8>) {
        self.try_recv().expect("read frame")
    }

    pub fn try_recv(&mut self) -> io::Result<(u32, Vec<u8>)> {
        let mut head = [0u8; 8];
        self.stream.read_exact(&mut head)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let id = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        Ok((id, body))
    }

    /// Assert the server closes the connection (EOF or reset) within
    /// `TIMEOUT`, discarding anything it sends before.
    pub fn expect_closed(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            assert!(
                Instant::now() < deadline,
                "server did not close the connection"
            );
            match self.stream.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    panic!("server did not close the connection within {TIMEOUT:?}")
                }
                Err(_) => return, // reset counts as closed
            }
        }
    }
}

/// `on_close` events, matched to clients by address (the server's peer
/// address is the client's local address).
pub struct Closes {
    pub rx: Receiver<(SocketAddr, CloseReason)>,
    seen: Vec<(SocketAddr, CloseReason)>,
}

impl Closes {
    /// The reason `on_close` got for the connection from `addr`.
    pub fn reason_for(&mut self, addr: SocketAddr) -> CloseReason {
        if let Some(i) = self.seen.iter().position(|(a, _)| *a == addr) {
            return self.seen.remove(i).1;
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok((a, reason)) if a == addr => return reason,
                Ok(other) => self.seen.push(other),
                Err(_) => panic!("on_close did not run for {addr} within {TIMEOUT:?}"),
            }
        }
    }

    /// The next `on_close` event, whoever it is for.
    pub fn next(&mut self) -> (SocketAddr, CloseReason) {
        if !self.seen.is_empty() {
            return self.seen.remove(0);
        }
        self.rx
            .recv_timeout(TIMEOUT)
            .expect("on_close did not run in time")
    }
}

/// Install an `on_close` hook that reports (peer address, reason).
pub fn track_closes(builder: Builder) -> (Builder, Closes) {
    let (tx, rx) = unbounded();
    let builder = builder.on_close(move |session, reason| {
        let _ = tx.send((session.peer_addr(), reason.clone()));
    });
    (
        builder,
        Closes {
            rx,
            seen: Vec::new(),
        },
    )
}

/// [`start`] with an `on_close` hook installed by [`track_closes`].
pub fn start_tracked(builder: Builder) -> (ServerHandle, Closes) {
    let (builder, closes) = track_closes(builder);
    (start(builder), closes)
}

/// Run a command to completion with its output collected, killing it (by
/// pid) if it outlives `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let (tx, rx) = unbounded();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for child"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

/// User + system CPU time of the whole process (every thread).
pub fn cpu_time() -> Duration {
    rusage_cpu(libc::RUSAGE_SELF)
}

/// CPU time (user + system) of the calling thread alone: called from a
/// hook, a loop thread's own use, whatever else the test process does.
#[cfg(target_os = "linux")]
pub fn thread_cpu_time() -> Duration {
    rusage_cpu(libc::RUSAGE_THREAD)
}

/// User + system CPU time of `who` (`getrusage`).
fn rusage_cpu(who: libc::c_int) -> Duration {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    let rc = unsafe { libc::getrusage(who, &mut usage) };
    assert_eq!(rc, 0, "getrusage: {}", io::Error::last_os_error());
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Tests that change or measure process-wide state (CPU time, the fd
/// limit) hold this while they run, so they run one at a time within
/// their test binary.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A handler that replies with the request's id and body.
pub fn echo(ctx: &mut Context<'_>) -> netloom::Result<()> {
    ctx.reply(ctx.msg_id(), ctx.body())
}
