//! A message the packer refuses to encode is logged at warn once per
//! connection, with the connection's id, and at debug after that. The test
//! installs its own logger to read the records, so it has a test binary of
//! its own (a process has one logger).

mod common;

use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use netloom::{Context, Server};

use common::{start, Client, TIMEOUT};

/// netloom's records of the refusal: (level, message).
static RECORDS: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl Log for Capture {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target().starts_with("netloom")
    }

    fn log(&self, r: &Record<'_>) {
        let text = r.args().to_string();
        if self.enabled(r.metadata()) && text.contains("not sent") {
            RECORDS.lock().unwrap().push((r.level(), text));
        }
    }

    fn flush(&self) {}
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
    log::set_logger(&Capture).expect("the first logger of this process");
    log::set_max_level(LevelFilter::Debug);
    let server = start(
        Server::builder()
            // The default packer refuses a body over 16 bytes.
            .max_body_length(16)
            .route(1, |ctx: &mut Context<'_>| {
                let refused = ctx.reply(1, [0u8; 100]);
                assert!(matches!(refused, Err(netloom::Error::Pack(_))));
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
