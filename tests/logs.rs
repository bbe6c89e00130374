//! What netloom logs once per event, read back from its records: a
//! message the packer refuses to encode is logged at warn once per
//! connection, with the connection's id, and at debug after that; a
//! connection paused for its write queue is logged once per pause. The
//! tests install their own logger to read the records, so they have a
//! test binary of their own (a process has one logger).

mod common;

use std::sync::{Mutex, MutexGuard, Once};

use crossbeam_channel::unbounded;
use log::{Level, LevelFilter, Log, Metadata, Record};
use netloom::{Context, Error, Server};

use common::{serial, start, Client, TIMEOUT};

/// netloom's records: (level, message).
static RECORDS: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl Log for Capture {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target().starts_with("netloom")
    }

    fn log(&self, r: &Record<'_>) {
        let text = r.args().to_string();
        if self.enabled(r.metadata()) && (text.contains("not sent") || text.contains("pausing")) {
            RECORDS.lock().unwrap().push((r.level(), text));
        }
    }

    fn flush(&self) {}
}

/// Install [`Capture`] as the process's logger, before anything else
/// (`start` installs the tests' usual logger unless one is set), and
/// start from no records. The tests run one at a time: connection ids on
/// two servers look alike.
fn capture() -> MutexGuard<'static, ()> {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).expect("the first logger of this process");
        log::set_max_level(LevelFilter::Debug);
    });
    let one_at_a_time = serial();
    RECORDS.lock().unwrap().clear();
    one_at_a_time
}

/// The records about connection `id`, by level.
fn levels_for(id: &str) -> Vec<Level> {
    let tag = format!("conn {id} ");
    let records = RECORDS.lock().unwrap();
    let ours = records.iter().filter(|(_, m)| m.starts_with(&tag));
    ours.map(|(l, _)| *l).collect()
}

/// Three refused replies on one connection and one on another: one warning
/// each (the first), the rest at debug; every one counted. Before, refusals
/// were only counted in `Stats::send_errors`.
#[test]
fn a_refused_encode_warns_once_per_connection() {
    let _serial = capture();
    let server = start(
        Server::builder()
            // The default packer refuses a body over 16 bytes.
            .max_body_length(16)
            .route(1, |ctx: &mut Context<'_>| {
                let refused = ctx.reply(1, [0u8; 100]);
                assert!(matches!(refused, Err(Error::Pack(_))));
                ctx.reply(2, ctx.id().to_u128().to_le_bytes())
            }),
    );
    let id_of = |c: &mut Client| {
        c.send(1, b"");
        let (id, body) = c.recv();
        assert_eq!(id, 2);
        let n = u128::from_le_bytes(body.try_into().expect("16 bytes"));
        netloom::ConnId::from_u128(n).expect("an id").to_string()
    };
    let mut a = Client::connect(server.local_addr());
    let mut b = Client::connect(server.local_addr());
    let a_id = id_of(&mut a);
    for _ in 0..2 {
        assert_eq!(id_of(&mut a), a_id);
    }
    let b_id = id_of(&mut b);
    assert_eq!(levels_for(&a_id), [Level::Warn, Level::Debug, Level::Debug]);
    assert_eq!(levels_for(&b_id), [Level::Warn]);
    assert_eq!(server.stats().send_errors, 4);
    server.shutdown(TIMEOUT).unwrap();
}

/// A connection whose queue goes over the mark is paused, and logged so
/// once, not again for each send refused while it stays paused (found by
/// mutation testing: the log could have come on every refusal but the
/// first, with every test passing).
#[test]
fn a_pause_is_logged_once_however_many_sends_it_refuses() {
    let _serial = capture();
    const MARK: usize = 64 << 10;
    let (tx, refused) = unbounded();
    let server = start(Server::builder().write_high_water(MARK).route(
        1,
        move |ctx: &mut Context<'_>| {
            // Queued until the handler returns: over the mark, and the
            // sends after it refused.
            ctx.reply(1, vec![0u8; 2 * MARK])?;
            let n = (0..3)
                .filter(|_| matches!(ctx.reply(2, b"more"), Err(Error::BufferFull)))
                .count();
            let _ = tx.send(n);
            Ok::<_, Error>(())
        },
    ));
    let mut client = Client::connect(server.local_addr());
    let local = client.stream.local_addr().unwrap();
    client.send(1, b"");
    assert_eq!(refused.recv_timeout(TIMEOUT), Ok(3), "three sends refused");
    let tag = format!("({local})");
    let pauses = RECORDS
        .lock()
        .unwrap()
        .iter()
        .filter(|(l, m)| *l == Level::Debug && m.contains("pausing reads") && m.contains(&tag))
        .count();
    assert_eq!(pauses, 1);
    drop(client);
    server.shutdown(TIMEOUT).unwrap();
}
