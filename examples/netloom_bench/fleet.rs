//! Many mostly idle connections: connect them (with progress and a verdict
//! on what stopped the connecting), then hold them, each sending a PING
//! frame every T and reading the echoes. Used by `idle` and `c1000k`.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::wire::{self, Blame};

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectPlan {
    pub addr: SocketAddr,
    pub conns: usize,
    /// See `wire::source_addr`; 0: the kernel picks (127.0.0.1).
    pub sources: usize,
    /// Bound for one connect.
    pub timeout: Duration,
    /// Bound for the whole connect phase.
    pub max_time: Duration,
    /// Give up after this many errors in a row.
    pub max_consecutive_errors: usize,
}

/// Progress, passed to the caller about once a second.
#[derive(Debug, Clone)]
pub struct Progress {
    pub connected: usize,
    pub target: usize,
    /// Connections per second since the previous report.
    pub rate: f64,
    pub errors: u64,
    pub elapsed: Duration,
}

/// The connections, and why connecting stopped early, if it did.
#[derive(Debug)]
pub struct Fleet {
    pub streams: Vec<TcpStream>,
    pub errors: BTreeMap<&'static str, u64>,
    /// What stopped the connecting before the target, with the last error.
    pub stopped: Option<(Blame, String)>,
    pub connect_time: Duration,
}

impl Fleet {
    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn errors_line(&self) -> String {
        if self.errors.is_empty() {
            return "none".into();
        }
        self.errors
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Connect `plan.conns` connections, calling `progress` about once a second.
pub fn connect(plan: &ConnectPlan, progress: &mut dyn FnMut(&Progress)) -> Fleet {
    let t0 = Instant::now();
    let mut fleet = Fleet {
        streams: Vec::with_capacity(plan.conns),
        errors: BTreeMap::new(),
        stopped: None,
        connect_time: Duration::ZERO,
    };
    let mut consecutive = 0;
    let (mut last_t, mut last_n) = (t0, 0);
    let mut index = 0usize;
    while fleet.streams.len() < plan.conns {
        if t0.elapsed() > plan.max_time {
            fleet.stopped = Some((
                Blame::Other,
                format!("connect phase over its {:?} bound", plan.max_time),
            ));
            break;
        }
        match wire::connect(plan.addr, index, plan.sources, plan.timeout) {
            Ok(s) => {
                fleet.streams.push(TcpStream::from_std(s));
                consecutive = 0;
            }
            Err(e) => {
                let (name, blame) = wire::classify(&e);
                *fleet.errors.entry(name).or_default() += 1;
                consecutive += 1;
                let fatal = matches!(blame, Blame::ClientFdLimit | Blame::SystemFdLimit);
                if fatal || consecutive >= plan.max_consecutive_errors {
                    fleet.stopped = Some((blame, format!("{name}: {e}")));
                    break;
                }
                // EADDRNOTAVAIL on one source: the next index uses the next.
            }
        }
        index += 1;
        if last_t.elapsed() >= Duration::from_secs(1) {
            let n = fleet.streams.len();
            progress(&Progress {
                connected: n,
                target: plan.conns,
                rate: (n - last_n) as f64 / last_t.elapsed().as_secs_f64(),
                errors: fleet.errors_total(),
                elapsed: t0.elapsed(),
            });
            (last_t, last_n) = (Instant::now(), n);
        }
    }
    fleet.connect_time = t0.elapsed();
    fleet
}

/// What holding the connections saw.
#[derive(Debug, Default, Clone)]
pub struct HoldReport {
    pub pings: u64,
    /// Bytes of echoes read back.
    pub echoed: u64,
    /// Connections the server closed (or that failed) while held.
    pub closed: u64,
}

/// Keep `streams` open for `hold`; each sends a PING frame once every
/// `ping_every` (spread evenly; `None`: never), echoes are read and
/// dropped. `tick` is called about once a second with the report so far.
pub fn hold(
    streams: &mut [TcpStream],
    hold: Duration,
    ping_every: Option<Duration>,
    tick: &mut dyn FnMut(&HoldReport),
) -> io::Result<HoldReport> {
    let mut poll = Poll::new()?;
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry().register(s, Token(i), Interest::READABLE)?;
    }
    let result = hold_loop(&mut poll, streams, hold, ping_every, tick);
    for s in streams.iter_mut() {
        let _ = poll.registry().deregister(s);
    }
    result
}

fn hold_loop(
    poll: &mut Poll,
    streams: &mut [TcpStream],
    hold: Duration,
    ping_every: Option<Duration>,
    tick: &mut dyn FnMut(&HoldReport),
) -> io::Result<HoldReport> {
    let step = Duration::from_millis(10);
    let ping = wire::ping_frame();
    let mut r = HoldReport::default();
    let mut dead = vec![false; streams.len()];
    let mut events = Events::with_capacity(4096);
    let mut buf = vec![0u8; 64 << 10];
    let start = Instant::now();
    let end = start + hold;
    let mut next_tick = start + Duration::from_secs(1);
    // Pings owed so far: conns × elapsed / ping_every, sent round-robin.
    let mut sent_total: u64 = 0;
    let mut cursor = 0usize;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if let (Some(every), false) = (ping_every, streams.is_empty()) {
            let owed =
                (streams.len() as f64 * (now - start).as_secs_f64() / every.as_secs_f64()) as u64;
            while sent_total < owed {
                if !dead[cursor] {
                    match (&streams[cursor]).write(&ping) {
                        Ok(8) => r.pings += 1,
                        // A partial or refused 8-byte write on an idle
                        // socket means it is broken.
                        _ => {
                            dead[cursor] = true;
                            r.closed += 1;
                        }
                    }
                }
                sent_total += 1;
                cursor = (cursor + 1) % streams.len();
            }
        }
        poll.poll(&mut events, Some(step.min(end - now)))
            .or_else(|e| {
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
        for ev in events.iter() {
            let k = ev.token().0;
            if dead[k] {
                continue;
            }
            loop {
                match (&streams[k]).read(&mut buf) {
                    Ok(0) => {
                        dead[k] = true;
                        r.closed += 1;
                        break;
                    }
                    Ok(n) => r.echoed += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        dead[k] = true;
                        r.closed += 1;
                        break;
                    }
                }
            }
        }
        if Instant::now() >= next_tick {
            tick(&r);
            next_tick += Duration::from_secs(1);
        }
    }
    Ok(r)
}

/// Send one PING on every stream and wait (bounded) until every echo is
/// back; returns how many came back. Proves each connection is served.
pub fn ping_all(streams: &mut [TcpStream], bound: Duration) -> io::Result<usize> {
    let mut poll = Poll::new()?;
    let ping = wire::ping_frame();
    let mut got = vec![0usize; streams.len()];
    let mut done = 0;
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry().register(s, Token(i), Interest::READABLE)?;
        // An 8-byte write on a fresh socket goes through or the socket is
        // broken; a broken one simply never answers.
        let _ = (&*s).write(&ping);
    }
    let end = Instant::now() + bound;
    let mut events = Events::with_capacity(4096);
    let mut buf = [0u8; 64];
    while done < streams.len() && Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        match poll.poll(&mut events, Some(left.min(Duration::from_millis(100)))) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        }
        for ev in events.iter() {
            let k = ev.token().0;
            loop {
                match (&streams[k]).read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let before = got[k] >= 8;
                        got[k] += n;
                        if !before && got[k] >= 8 {
                            done += 1;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
    }
    for s in streams.iter_mut() {
        let _ = poll.registry().deregister(s);
    }
    Ok(done)
}
