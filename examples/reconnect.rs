//! A connection that comes back: dials ADDR with the default reconnect
//! policy (3 s, 6 s, 12 s, … up to 60 s) and prints every loss, attempt
//! and delay, while you stop and start the server.
//!
//! ```text
//! cargo run --release --example rpc_server &          # a server to dial
//! cargo run --release --example reconnect -- 127.0.0.1:6572
//! # now stop rpc_server (kill %1) and start it again: the same handle
//! # reconnects and its requests get answers again.
//! ```
//!
//! Once a second it sends a request (sequence packer, id 1) and prints the
//! answer or why there is none. `--for SECS` stops it after that long
//! (default: run until Ctrl-C).

use std::time::{Duration, Instant};

use netloom::{Dial, Reconnect, SeqPacker, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:6572".into());
    let run_for = match (args.next().as_deref(), args.next()) {
        (Some("--for"), Some(secs)) => Some(Duration::from_secs(secs.parse()?)),
        (None, _) => None,
        _ => return Err("usage: reconnect [ADDR] [--for SECS]".into()),
    };
    let started = Instant::now();
    let at = move || format!("{:>7.3}s", started.elapsed().as_secs_f64());
    let client = Server::builder()
        .packer(SeqPacker::default())
        .event_loops(1)
        .on_open(move |s| println!("{} connected to {}", at(), s.peer_addr()))
        .on_disconnect(move |_s, d| {
            println!(
                "{} down ({}); attempt {} in {:?}",
                at(),
                d.reason,
                d.attempt,
                d.retry_in
            )
        })
        .on_reconnect(move |s, attempts| {
            println!(
                "{} back on {} after {attempts} attempt(s)",
                at(),
                s.peer_addr()
            )
        })
        .start()?;
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&addr)?
        .next()
        .ok_or("the address resolved to nothing")?;
    let conn = client
        .hub()
        .dial(Dial::new(addr).reconnect(Reconnect::default()))?;
    println!("{} dialing {addr} (Ctrl-C to stop)", at());
    let mut n = 0u32;
    while run_for.is_none_or(|d| started.elapsed() < d) {
        n += 1;
        let body = format!("ping {n}");
        match conn
            .request(1, &body, Duration::from_secs(1))
            .and_then(|p| p.wait())
        {
            Ok(reply) => println!("{} {body}: answered ({} bytes)", at(), reply.body.len()),
            Err(e) => println!("{} {body}: {e}", at()),
        }
        std::thread::sleep(Duration::from_secs(1)); // the example's pace, not a synchronisation
    }
    client.shutdown(Duration::from_secs(1))?;
    Ok(())
}
