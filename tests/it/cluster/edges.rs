//! Edges of the cluster found in review: each test states a behaviour
//! that must hold (each failed on the first cut of issue 24, 19b5a66).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{config, join, node, node_with, settle, Redis};

/// A loopback TCP proxy in front of redis that delivers everything the
/// broker says `delay` late (an honest broker far away, or busy): bytes
/// from the client go through at once, bytes back are held for `delay`
/// and then written, in order, without limiting throughput.
struct SlowProxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

fn pump_now(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn pump_late(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = crossbeam_channel::unbounded::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        while let Ok((due, bytes)) = rx.recv() {
            // The latency being simulated, not synchronisation.
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
}

impl SlowProxy {
    fn start(upstream: SocketAddr, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let accept = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::Acquire) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(up) = TcpStream::connect_timeout(&upstream, Duration::from_secs(2)) else {
                    continue;
                };
                for s in [&client, &up] {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                    let _ = s.set_nodelay(true);
                }
                let (c2, u2) = (client.try_clone().unwrap(), up.try_clone().unwrap());
                std::thread::spawn(move || pump_now(c2, u2));
                std::thread::spawn(move || pump_late(up, client, delay));
            }
        });
        SlowProxy {
            addr,
            stop,
            accept: Some(accept),
        }
    }

    fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn redis_addr(redis: &Redis) -> SocketAddr {
    let url = redis.url();
    let hostport = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string();
    hostport.parse().unwrap()
}

/// Limits that trip on honest peers: a broker 50 ms away (another
/// datacentre, or a Redis busy for a moment) is an honest broker. The node
/// behind it must come up, subscribe to its rooms and receive their
/// messages. The subscriber's 20 ms read timeout (its polling tick) also
/// bounds the replies to SUBSCRIBE: every subscribe "times out", the link
/// is taken for lost, and the node never comes up.
#[test]
fn a_node_behind_a_broker_50ms_away_connects_and_receives_room_messages() {
    let Some(redis) = Redis::start() else { return };
    let proxy = SlowProxy::start(redis_addr(&redis), Duration::from_millis(50));
    let a = node(&redis, "a");
    let mut far = config(&redis, "far");
    far.url = proxy.url();
    let b = node_with(far, |b| b);
    let (mut a1, mut b1) = (a.connect(), b.connect());
    join(&mut a1, "r");
    join(&mut b1, "r");
    settle("a subscribed", || a.cluster.is_subscribed("r"));
    let deadline = Instant::now() + crate::common::TIMEOUT;
    while !(b.cluster.is_connected() && b.cluster.is_subscribed("r")) {
        assert!(
            Instant::now() < deadline,
            "the far node never connected and subscribed to r: {:?}",
            b.cluster.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    a1.send(3, b"r\nacross");
    assert_eq!(b1.recv(), (3, b"r\nacross".to_vec()));
    drop((a, b));
    drop(proxy);
}

/// Presence: "a node that stops refreshing is dropped after a timeout".
/// A node that lost the broker cannot read the records any more; its view
/// of the others must not outlive `presence_timeout` either, or
/// `Cluster::nodes` and `Cluster::room_len` go on counting a node (and its
/// members) that is long gone, for as long as the outage lasts.
#[test]
fn a_node_without_the_broker_forgets_other_nodes_after_presence_timeout() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let (a, b) = (node(&redis, "a"), node(&redis, "b"));
    let (mut a1, mut b1) = (a.connect(), b.connect());
    join(&mut a1, "r");
    join(&mut b1, "r");
    settle("a counts b's member", || a.cluster.room_len("r") == 2);
    redis.stop();
    // b dies meanwhile.
    b.server.shutdown(crate::common::TIMEOUT).unwrap();
    drop(b.cluster);
    drop(b1);
    settle("a sees the broker gone", || !a.cluster.is_connected());
    let gone = Instant::now();
    // presence_timeout is 500 ms in these tests; allow ten times that.
    let mut counted = usize::MAX;
    while gone.elapsed() < Duration::from_secs(5) {
        counted = a.cluster.room_len("r");
        if counted == 1 && a.cluster.nodes().iter().all(|n| n.node != "b") {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "5 s after the broker went (presence_timeout 500 ms), a still lists {:?} \
         and counts {counted} members of r",
        a.cluster
            .nodes()
            .iter()
            .map(|n| &n.node)
            .collect::<Vec<_>>()
    );
}

/// `cluster_chat` names its node from the host name when `--node` is not
/// given, cut to 40 bytes with `String::truncate`, which panics when byte
/// 40 falls inside a character. Linux accepts any bytes as a host name
/// (and on systems without /proc the example reads `$HOSTNAME`): the
/// example must start whatever the host is called. Run in a user and UTS
/// namespace of its own (`unshare`), skipped where that is not allowed.
#[test]
fn cluster_chat_starts_on_a_host_whose_name_has_a_multibyte_char_at_byte_40() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let example = crate::dial::examples::example("cluster_chat");
    // 39 ASCII bytes, then 'é' (2 bytes: byte 40 is its second half).
    let launcher = r#"
import ctypes, os, sys
name = ("a" * 39 + "\u00e9" + "b").encode()
if ctypes.CDLL(None, use_errno=True).sethostname(name, len(name)) != 0:
    print("skip: sethostname refused"); sys.exit(0)
os.execv(sys.argv[1], [sys.argv[1], "127.0.0.1:0"])
"#;
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--uts", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: unshare --user --uts is not allowed here");
        return;
    }
    let mut child = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--uts",
            "python3",
            "-c",
            launcher,
        ])
        .arg(&example)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        let first = std::io::BufReader::new(stdout).lines().next();
        let _ = tx.send(first);
    });
    let first = rx.recv_timeout(crate::common::TIMEOUT);
    let _ = child.kill();
    let out = child.wait_with_output().expect("wait");
    let line = match first {
        Ok(Some(Ok(line))) => line,
        other => format!("{other:?}"),
    };
    if line.starts_with("skip:") {
        return;
    }
    assert!(
        line.contains("listening on"),
        "cluster_chat did not start: first line {line:?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Node ids: an echo is recognised by the node *name* alone. Two live
/// nodes given the same name (a copy-pasted `--node`, a restarted
/// instance that comes up before the old one drained) each drop the
/// other's room messages as their own echoes, silently (counted only as
/// `echoes`), and overwrite each other's presence record. The run's
/// `incarnation`, which every node already draws, tells them apart: the
/// member on the other node must get the message (or the clash be
/// refused or reported).
#[test]
fn two_live_nodes_given_one_name_still_deliver_room_messages_to_each_other() {
    let Some(redis) = Redis::start() else { return };
    let (a, twin) = (node(&redis, "a"), node(&redis, "a"));
    let (mut a1, mut t1) = (a.connect(), twin.connect());
    join(&mut a1, "r");
    join(&mut t1, "r");
    settle("both subscribed", || {
        a.cluster.is_subscribed("r") && twin.cluster.is_subscribed("r")
    });
    a1.send(
        3,
        b"r
to the twin",
    );
    t1.stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let got = t1.try_recv();
    assert!(
        got.is_ok(),
        "the member on the other node named 'a' got nothing ({got:?}); its stats: {:?}",
        twin.cluster.stats()
    );
}
