//! A loop shares its turns between its inbox and its sockets: threads
//! that keep its inbox full never keep it from reading and answering its
//! connections.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netloom::Server;

use crate::common::{echo, start, Client, TIMEOUT};

#[test]
fn threads_flooding_the_inbox_do_not_starve_the_loops_sockets() {
    let server = start(Server::builder().event_loops(1).fallback(echo));
    let addr = server.local_addr();
    // A sink: a connection that reads everything sent to it (the floods'
    // one target: it is the only connection when the ids are taken).
    let mut sink = Client::connect(addr);
    sink.send(1, b"sink");
    assert_eq!(sink.recv().1, b"sink");
    let target = server.hub().connection_ids();
    assert_eq!(target.len(), 1);
    let mut stream = sink.stream.try_clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0; 64 << 10];
            while !stop.load(Ordering::Relaxed) {
                if std::io::Read::read(&mut stream, &mut buf).unwrap_or(0) == 0 {
                    break;
                }
            }
        })
    };
    let mut probe = Client::connect(addr);
    probe.send(1, b"first");
    assert_eq!(probe.recv().1, b"first");
    let floods: Vec<_> = (0..2)
        .map(|_| {
            let (hub, stop, to) = (server.hub(), stop.clone(), target.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + TIMEOUT * 2;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    for id in &to {
                        let _ = hub.conn(*id).send(9, [0u8; 16]);
                    }
                }
            })
        })
        .collect();
    // While the floods run, every echo comes back within a second.
    for i in 0..20u32 {
        let sent = Instant::now();
        probe.send(2, &i.to_le_bytes());
        assert_eq!(probe.recv().1, i.to_le_bytes());
        let took = sent.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "echo {i} took {took:?} under the flood"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for f in floods {
        f.join().unwrap();
    }
    drop(sink);
    let _ = reader.join();
    server.shutdown(TIMEOUT).unwrap();
}
