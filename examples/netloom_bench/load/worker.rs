//! One generator thread: its connections' state (frames in flight, partly
//! written or read), the mio loop that drives them, and the check of every
//! echoed byte against what was sent.

use std::io::{self, IoSlice, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::{sleep_until, Plan, Tally};
use crate::wire::{Pattern, HEADER};

/// Most frames handed to one `writev`.
const WRITE_BATCH: usize = 32;
/// Read buffer of each generator thread.
const READ_BUF: usize = 256 << 10;

/// One connection's progress. Frames `recv_seq .. next_seq` are in flight;
/// `write_seq .. next_seq` are not fully written yet.
struct Conn {
    stream: TcpStream,
    id: u32,
    next_seq: u64,
    write_seq: u64,
    write_off: usize,
    recv_seq: u64,
    recv_off: usize,
    /// When each in-flight frame was queued (front: `recv_seq`).
    sent_at: std::collections::VecDeque<Instant>,
    writable: bool,
    dead: bool,
}

pub(super) struct Worker<'p> {
    poll: Poll,
    conns: Vec<Conn>,
    pattern: &'p Pattern,
    plan: Plan,
    buf: Vec<u8>,
    tally: Tally,
    outstanding: u64,
}

impl<'p> Worker<'p> {
    pub(super) fn new(
        streams: Vec<(u32, TcpStream)>,
        pattern: &'p Pattern,
        plan: Plan,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let mut conns = Vec::with_capacity(streams.len());
        for (i, (id, mut stream)) in streams.into_iter().enumerate() {
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)?;
            conns.push(Conn {
                stream,
                id,
                next_seq: 0,
                write_seq: 0,
                write_off: 0,
                recv_seq: 0,
                recv_off: 0,
                sent_at: std::collections::VecDeque::with_capacity(plan.pipeline),
                writable: false,
                dead: false,
            });
        }
        Ok(Worker {
            poll,
            conns,
            pattern,
            plan,
            buf: vec![0; READ_BUF],
            tally: Tally::new(),
            outstanding: 0,
        })
    }

    pub(super) fn run(mut self) -> io::Result<Tally> {
        sleep_until(self.plan.start);
        let now = Instant::now();
        for k in 0..self.conns.len() {
            for _ in 0..self.plan.pipeline {
                self.queue_frame(k, now);
            }
            self.write(k);
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if now >= self.plan.deadline || (now >= self.plan.measure_end && self.outstanding == 0)
            {
                break;
            }
            let until = if now < self.plan.measure_end {
                self.plan.measure_end
            } else {
                self.plan.deadline
            };
            let timeout = (until - now).min(Duration::from_millis(50));
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                let k = ev.token().0;
                if self.conns[k].dead {
                    continue;
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.read(k);
                }
                if !self.conns[k].dead && (ev.is_writable() || self.has_unwritten(k)) {
                    self.write(k);
                }
            }
        }
        self.tally.lost += self.outstanding;
        if self.outstanding > 0 {
            self.tally.error(format!(
                "{} frames still unanswered {:?} after the measurement",
                self.outstanding,
                self.plan.deadline - self.plan.measure_end
            ));
        }
        Ok(self.tally)
    }

    fn has_unwritten(&self, k: usize) -> bool {
        let c = &self.conns[k];
        c.write_seq < c.next_seq
    }

    fn queue_frame(&mut self, k: usize, now: Instant) {
        let c = &mut self.conns[k];
        c.next_seq += 1;
        c.sent_at.push_back(now);
        self.tally.sent += 1;
        self.outstanding += 1;
    }

    fn fail(&mut self, k: usize, why: String) {
        let c = &mut self.conns[k];
        if c.dead {
            return;
        }
        c.dead = true;
        let inflight = c.next_seq - c.recv_seq;
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.tally.conn_errors += 1;
        self.tally.lost += inflight;
        self.outstanding -= inflight;
        self.tally.error(why);
    }

    /// Read until WouldBlock, verifying every byte and completing frames.
    fn read(&mut self, k: usize) {
        loop {
            let n = match (&self.conns[k].stream).read(&mut self.buf) {
                Ok(0) => {
                    let c = &self.conns[k];
                    let why = format!(
                        "conn {}: server closed the connection with {} frames in flight",
                        c.id,
                        c.next_seq - c.recv_seq
                    );
                    return self.fail(k, why);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let why = format!("conn {}: read: {e}", self.conns[k].id);
                    return self.fail(k, why);
                }
            };
            let now = Instant::now();
            if let Err(why) = self.consume(k, n, now) {
                self.tally.mismatches += 1;
                return self.fail(k, why);
            }
            // A short read drained the socket; edge-triggered epoll reports
            // the next arrival, so skip the read that would say WouldBlock.
            if n < self.buf.len() {
                return;
            }
        }
    }

    /// Check `self.buf[..n]` against the expected echo stream.
    fn consume(&mut self, k: usize, n: usize, now: Instant) -> Result<(), String> {
        let pattern = self.pattern;
        let flen = pattern.frame_len();
        let mut data = &self.buf[..n];
        let plan = self.plan;
        let mut completed = 0;
        let mut window = 0;
        let c = &mut self.conns[k];
        while !data.is_empty() {
            if c.recv_seq >= c.next_seq {
                return Err(format!(
                    "conn {}: {} unexpected bytes after frame {}",
                    c.id,
                    data.len(),
                    c.recv_seq
                ));
            }
            if c.recv_off < HEADER {
                let head = pattern.header(c.id, c.recv_seq);
                let m = (HEADER - c.recv_off).min(data.len());
                let want = &head[c.recv_off..c.recv_off + m];
                if data[..m] != *want {
                    return Err(mismatch(c, &data[..m], want));
                }
                c.recv_off += m;
                data = &data[m..];
            }
            if c.recv_off >= HEADER && c.recv_off < flen && !data.is_empty() {
                let body = pattern.body(c.id, c.recv_seq);
                let at = c.recv_off - HEADER;
                let m = (body.len() - at).min(data.len());
                let want = &body[at..at + m];
                if data[..m] != *want {
                    return Err(mismatch(c, &data[..m], want));
                }
                c.recv_off += m;
                data = &data[m..];
            }
            if c.recv_off == flen {
                c.recv_off = 0;
                c.recv_seq += 1;
                completed += 1;
                let sent = c.sent_at.pop_front().expect("a send time per frame");
                if now >= plan.measure_start && now < plan.measure_end {
                    window += 1;
                    let _ = self
                        .tally
                        .hist
                        .record((now - sent).as_nanos().max(1) as u64);
                }
            }
        }
        self.tally.received += completed;
        self.tally.window_frames += window;
        self.outstanding -= completed;
        if now < plan.measure_end {
            for _ in 0..completed {
                self.queue_frame(k, now);
            }
        }
        Ok(())
    }

    /// Write queued frames straight from the pattern (vectored: header and
    /// body slices) until done or WouldBlock.
    fn write(&mut self, k: usize) {
        let pattern = self.pattern;
        let flen = pattern.frame_len();
        loop {
            let c = &mut self.conns[k];
            if c.write_seq == c.next_seq {
                if c.writable {
                    c.writable = false;
                    let _ = self.poll.registry().reregister(
                        &mut c.stream,
                        Token(k),
                        Interest::READABLE,
                    );
                }
                return;
            }
            let frames = ((c.next_seq - c.write_seq) as usize).min(WRITE_BATCH);
            let mut heads = [[0u8; HEADER]; WRITE_BATCH];
            for (i, h) in heads.iter_mut().enumerate().take(frames) {
                *h = pattern.header(c.id, c.write_seq + i as u64);
            }
            let mut slices = [IoSlice::new(&[]); 2 * WRITE_BATCH];
            let mut count = 0;
            for (i, head) in heads.iter().enumerate().take(frames) {
                let seq = c.write_seq + i as u64;
                let skip = if i == 0 { c.write_off } else { 0 };
                if skip < HEADER {
                    slices[count] = IoSlice::new(&head[skip..]);
                    count += 1;
                }
                let body = pattern.body(c.id, seq);
                let bskip = skip.saturating_sub(HEADER);
                if bskip < body.len() {
                    slices[count] = IoSlice::new(&body[bskip..]);
                    count += 1;
                }
            }
            let r = if count == 1 {
                (&c.stream).write(&slices[0])
            } else {
                (&c.stream).write_vectored(&slices[..count])
            };
            match r {
                Ok(0) => {
                    let why = format!("conn {}: write returned 0", c.id);
                    return self.fail(k, why);
                }
                Ok(mut n) => {
                    while n > 0 {
                        let left = flen - c.write_off;
                        if n >= left {
                            n -= left;
                            c.write_seq += 1;
                            c.write_off = 0;
                        } else {
                            c.write_off += n;
                            n = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !c.writable {
                        c.writable = true;
                        let _ = self.poll.registry().reregister(
                            &mut c.stream,
                            Token(k),
                            Interest::READABLE | Interest::WRITABLE,
                        );
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let why = format!("conn {}: write: {e}", c.id);
                    return self.fail(k, why);
                }
            }
        }
    }
}

fn mismatch(c: &Conn, got: &[u8], want: &[u8]) -> String {
    let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
    format!(
        "conn {}: frame {} byte {}: got {:#04x}, expected {:#04x}",
        c.id,
        c.recv_seq,
        c.recv_off + at,
        got[at],
        want[at]
    )
}
