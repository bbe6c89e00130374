//! Typed messages (found by the review of issue 22): "a body that does not decode is logged at warn the
//! first time per connection (then at debug)" (docs/GUIDE.md), on each
//! execution model. Its own binary: it installs the process's logger.
#![cfg(feature = "json")]

mod common;

use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};
use netloom::{Context, Exec, Server};
use serde::{Deserialize, Serialize};

use common::{start, Client, TIMEOUT};

static RECORDS: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl Log for Capture {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target().starts_with("netloom")
    }

    fn log(&self, r: &Record<'_>) {
        let text = r.args().to_string();
        if self.enabled(r.metadata()) && text.contains("body is not json") {
            RECORDS.lock().unwrap().push((r.level(), text));
        }
    }

    fn flush(&self) {}
}

#[derive(Deserialize, Serialize)]
struct P {
    x: i32,
}

fn warnings_for(tag: &str) -> usize {
    let records = RECORDS.lock().unwrap();
    records
        .iter()
        .filter(|(l, m)| *l == Level::Warn && m.starts_with(tag))
        .count()
}

#[test]
fn bad_bodies_warn_once_per_connection_on_every_exec() {
    log::set_logger(&Capture).expect("the first logger of this process");
    log::set_max_level(LevelFilter::Debug);
    let mut seen = Vec::new();
    for exec in [Exec::Inline, Exec::Pool(2), Exec::Single] {
        let server = start(
            Server::builder()
                .exec(exec)
                .route_json(10, |_ctx: &mut Context<'_>, p: P| {
                    Ok::<_, netloom::BoxError>(p)
                })
                .route(11, |ctx: &mut Context<'_>| {
                    ctx.reply(11, ctx.id().to_u128().to_le_bytes())
                }),
        );
        let mut c = Client::connect(server.local_addr());
        c.send(11, b"");
        let (_, id) = c.recv();
        let id = u128::from_le_bytes(id.try_into().unwrap());
        for _ in 0..20 {
            c.send(10, b"{bad");
        }
        // In order: the good one's answer comes after every bad one.
        c.send(10, br#"{"x":1}"#);
        assert_eq!(c.recv().0, 10);
        server.shutdown(TIMEOUT).unwrap();
        let ours = RECORDS
            .lock()
            .unwrap()
            .iter()
            .find(|(_, m)| m.contains("body is not json"))
            .map(|(_, m)| m.split(' ').take(2).collect::<Vec<_>>().join(" "));
        let _ = id;
        let tag = ours.expect("a record").to_string() + " ";
        seen.push((format!("{exec:?}"), warnings_for(&tag)));
        RECORDS.lock().unwrap().clear();
    }
    eprintln!("warn records per connection for 20 bad bodies: {seen:?}");
    assert!(
        seen.iter().all(|(_, n)| *n == 1),
        "warn records per connection for 20 bad bodies: {seen:?}"
    );
}
