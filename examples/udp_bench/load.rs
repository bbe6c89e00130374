//! The load: one thread, `peers` UDP sockets each keeping `inflight`
//! datagrams out, every echo checked, timed and answered with the next.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use crate::Args;

/// One server's figures over the measured window.
pub struct Run {
    pub datagrams: u64,
    pub secs: f64,
    pub cpu: Duration,
    pub p50_us: u64,
    pub p99_us: u64,
    pub lost: u64,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.datagrams as f64 / self.secs
    }

    pub fn cpu_per_dgram_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.datagrams.max(1) as f64
    }
}

struct Peer {
    socket: UdpSocket,
    out: usize,
    last: Instant,
}

/// A datagram: one default-packer frame (id 1) whose body starts with the
/// nanoseconds since `start`.
fn datagram(size: usize, start: Instant, buf: &mut Vec<u8>) {
    let body = size - 8;
    buf.clear();
    buf.extend_from_slice(&(body as u32).to_le_bytes());
    buf.extend_from_slice(&1u32.to_le_bytes());
    buf.extend_from_slice(&(start.elapsed().as_nanos() as u64).to_le_bytes());
    buf.resize(size, 0x5a);
}

pub fn run(port: u16, server_pid: u32, a: Args) -> Run {
    let to: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut poll = Poll::new().expect("poll");
    let mut peers: Vec<Peer> = (0..a.peers)
        .map(|i| {
            let mut socket = UdpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
            socket.connect(to).expect("connect");
            poll.registry()
                .register(&mut socket, Token(i), Interest::READABLE)
                .expect("register");
            Peer {
                socket,
                out: 0,
                last: Instant::now(),
            }
        })
        .collect();
    let start = Instant::now();
    let mut buf = Vec::with_capacity(a.size);
    let mut rx = vec![0u8; 65_536];
    for p in &mut peers {
        top_up(p, a, start, &mut buf);
    }
    let mut events = Events::with_capacity(1024);
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let warm = start + Duration::from_secs(1);
    let end = warm + Duration::from_secs(a.secs);
    let (mut counted, mut lost) = (0u64, 0u64);
    let mut cpu0 = None;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= warm && cpu0.is_none() {
            cpu0 = Some(cpu(server_pid));
            counted = 0;
            lost = 0;
            hist.reset();
        }
        let _ = poll.poll(&mut events, Some(Duration::from_millis(50)));
        for e in events.iter() {
            let p = &mut peers[e.token().0];
            loop {
                match p.socket.recv(&mut rx) {
                    Ok(n) => {
                        assert_eq!(n, a.size, "an echo of the wrong length");
                        let sent = u64::from_le_bytes(rx[8..16].try_into().expect("8 bytes"));
                        let rtt = (start.elapsed().as_nanos() as u64).saturating_sub(sent);
                        let _ = hist.record(rtt / 1000);
                        counted += 1;
                        p.out = p.out.saturating_sub(1);
                        p.last = Instant::now();
                        top_up(p, a, start, &mut buf);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
        }
        // Datagrams the kernel dropped never come back: after 200 ms of
        // silence a peer's window starts again.
        for p in &mut peers {
            if p.last.elapsed() > Duration::from_millis(200) {
                lost += p.out as u64;
                p.out = 0;
                p.last = Instant::now();
                top_up(p, a, start, &mut buf);
            }
        }
    }
    let cpu_used = cpu(server_pid).saturating_sub(cpu0.unwrap_or_default());
    Run {
        datagrams: counted,
        secs: a.secs as f64,
        cpu: cpu_used,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        lost,
    }
}

fn top_up(p: &mut Peer, a: Args, start: Instant, buf: &mut Vec<u8>) {
    while p.out < a.inflight {
        datagram(a.size, start, buf);
        match p.socket.send(buf) {
            Ok(_) => p.out += 1,
            Err(_) => break,
        }
    }
}

/// User + system CPU time of process `pid`, from /proc/PID/stat.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let f: Vec<u64> = rest
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // utime and stime: fields 14 and 15 of stat(5), 11 and 12 after ')'
    // (the state field, a letter, does not parse: 10 and 11 here).
    let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}
