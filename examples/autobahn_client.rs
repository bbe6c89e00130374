//! netloom's WebSocket client (`Dial::ws`) under the Autobahn|Testsuite's
//! fuzzing server: it reads the case count, runs every case (echoing each
//! message back, text as text, binary as binary, until the server closes),
//! then asks the server to write its reports.
//!
//! ```text
//! cargo run --release --example autobahn_client -- [URL]   # default ws://127.0.0.1:9001
//! ```
//!
//! Start the fuzzing server first (`wstest -m fuzzingserver -s SPEC.json`,
//! see `scripts/autobahn`); its reports name the agent `netloom`. Messages
//! of up to 16 MiB are accepted (the 9.* cases send that much). Each
//! connection is bounded in time (60 s), and so is the whole run.
//! `RUST_LOG=debug` shows every case's close.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};
use netloom::{ws, CloseReason, Dial, Hub, Server};

const USAGE: &str = "usage: autobahn_client [URL]   (default ws://127.0.0.1:9001)";
/// The largest message a case sends (9.1.6, 9.2.6).
const MAX_MESSAGE: usize = 16 << 20;
/// How long one case may take.
const CASE_TIME: Duration = Duration::from_secs(60);

fn main() {
    env_logger::init();
    let url = match std::env::args().nth(1).as_deref() {
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return;
        }
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => "ws://127.0.0.1:9001".to_owned(),
    };
    if let Err(e) = run(&url) {
        eprintln!("autobahn_client: {e}");
        std::process::exit(1);
    }
}

fn run(url: &str) -> Result<(), String> {
    let (text_tx, texts) = unbounded::<String>();
    let (close_tx, closes) = unbounded::<CloseReason>();
    // While the case count is read (one connection at a time): its text is
    // the count, not something to echo.
    let counting = Arc::new(AtomicBool::new(true));
    let count_done = counting.clone();
    let server = Server::builder()
        .event_loops(1)
        // Echo: a text message back as text, a binary one as binary.
        .route(ws::TEXT, move |ctx| {
            if counting.load(Ordering::Acquire) {
                let _ = text_tx.send(String::from_utf8_lossy(ctx.body()).into_owned());
                return Ok(());
            }
            ctx.reply(ws::TEXT, ctx.body())
        })
        .route(ws::BINARY, |ctx| ctx.reply(ws::BINARY, ctx.body()))
        .on_close(move |_s, why| {
            let _ = close_tx.send(why.clone());
        })
        .start()
        .map_err(|e| e.to_string())?;
    let hub = server.hub();
    let count = case_count(&hub, url, &texts, &closes)?;
    count_done.store(false, Ordering::Release);
    println!("{count} cases");
    for case in 1..=count {
        let started = Instant::now();
        let target = format!("{url}/runCase?case={case}&agent=netloom");
        open(&hub, &target)?;
        let why = wait_close(&closes, CASE_TIME)
            .ok_or_else(|| format!("case {case} did not end within {CASE_TIME:?}"))?;
        log::debug!("case {case}: {why} after {:?}", started.elapsed());
    }
    open(&hub, &format!("{url}/updateReports?agent=netloom"))?;
    wait_close(&closes, CASE_TIME).ok_or("updateReports did not end")?;
    println!("reports updated");
    server
        .shutdown(Duration::from_secs(5))
        .map_err(|e| e.to_string())
}

fn case_count(
    hub: &Hub,
    url: &str,
    texts: &Receiver<String>,
    closes: &Receiver<CloseReason>,
) -> Result<u32, String> {
    open(hub, &format!("{url}/getCaseCount"))?;
    let text = texts
        .recv_timeout(CASE_TIME)
        .map_err(|_| "no case count from the server".to_owned())?;
    wait_close(closes, CASE_TIME).ok_or("getCaseCount did not end")?;
    text.trim()
        .parse()
        .map_err(|_| format!("the case count is {text:?}"))
}

fn open(hub: &Hub, url: &str) -> Result<(), String> {
    let dial = Dial::ws(url)
        .map_err(|e| e.to_string())?
        .ws_max_message(MAX_MESSAGE);
    hub.dial(dial).map_err(|e| e.to_string())?;
    Ok(())
}

fn wait_close(closes: &Receiver<CloseReason>, within: Duration) -> Option<CloseReason> {
    closes.recv_timeout(within).ok()
}
