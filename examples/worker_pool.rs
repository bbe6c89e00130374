//! Handlers that block, on the execution model of your choice.
//!
//! ```text
//! cargo run --release --example worker_pool                       # 127.0.0.1:6569, pool:4, 1 loop
//! cargo run --release --example worker_pool -- 127.0.0.1:7000 --model single --loops 2
//! ```
//!
//! `worker_pool [ADDR] [--model inline|pool:N|single] [--loops L]`
//! (defaults: 127.0.0.1:6569, `pool:4`, 1 loop), default packer (body
//! length u32 LE, message id u32 LE, body). Message id 1 is answered at
//! once with id 1 and the same body. Message id 2 carries a decimal number
//! of milliseconds (at most 60000) as its body: the handler sleeps that
//! long (a real blocking `std::thread::sleep`, as a database call would
//! block), then answers id 2 with the same body.
//!
//! With `pool:N` a sleeping handler holds one worker: the connection's
//! later messages wait for it (each connection's order is kept), other
//! connections go on. With `inline` it holds the whole loop, and every
//! connection of that loop waits. With `single` every handler of the
//! server runs on one logic thread, one at a time.

use std::process::ExitCode;
use std::time::Duration;

use netloom::{Context, Exec, HandlerResult, Server};

/// The longest sleep id 2 may ask for.
const MAX_SLEEP_MS: u64 = 60_000;

struct Opts {
    addr: String,
    model: Exec,
    loops: usize,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let opts = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("worker_pool: {e}");
            eprintln!("usage: worker_pool [ADDR] [--model inline|pool:N|single] [--loops L]");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker_pool: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Opts) -> netloom::Result<()> {
    let server = Server::builder()
        .event_loops(opts.loops)
        .exec(opts.model)
        .route(1, |ctx: &mut Context<'_>| ctx.reply(1, ctx.body()))
        .route(2, sleep_then_answer)
        .bind(opts.addr.as_str())?
        .start()?;
    let addr = server.local_addr();
    println!(
        "netloom worker_pool listening on {addr} ({:?}, {} loop(s))",
        opts.model, opts.loops
    );
    println!(
        r#"try it (sleeps 500 ms, then answers): python3 -c 'import socket, struct; s = socket.create_connection(("{}", {}), timeout=5); s.sendall(struct.pack("<II", 3, 2) + b"500"); f = s.makefile("rb"); n, i = struct.unpack("<II", f.read(8)); print("id", i, "body", f.read(n))'"#,
        addr.ip(),
        addr.port()
    );
    println!("press Ctrl-C to stop");
    server.join()
}

/// Id 2: sleep the milliseconds the body spells, then answer with it.
fn sleep_then_answer(ctx: &mut Context<'_>) -> HandlerResult {
    let ms: u64 = std::str::from_utf8(ctx.body())?.trim().parse()?;
    std::thread::sleep(Duration::from_millis(ms.min(MAX_SLEEP_MS)));
    ctx.reply(2, ctx.body())?;
    Ok(())
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Opts, String> {
    let mut opts = Opts {
        addr: "127.0.0.1:6569".into(),
        model: Exec::Pool(4),
        loops: 1,
    };
    let mut addr_seen = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => {
                let m = args.next().ok_or("--model needs a value")?;
                opts.model = model(&m)?;
            }
            "--loops" => {
                let l = args.next().ok_or("--loops needs a value")?;
                opts.loops = l
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or(format!("--loops: not a number of loops: {l}"))?;
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            addr if !addr_seen => {
                opts.addr = addr.to_owned();
                addr_seen = true;
            }
            extra => return Err(format!("unexpected argument {extra}")),
        }
    }
    Ok(opts)
}

fn model(m: &str) -> Result<Exec, String> {
    match m {
        "inline" => Ok(Exec::Inline),
        "single" => Ok(Exec::Single),
        _ => m
            .strip_prefix("pool:")
            .and_then(|n| n.parse().ok())
            .filter(|&n: &usize| (1..=1024).contains(&n))
            .map(Exec::Pool)
            .ok_or(format!(
                "--model: inline, pool:N (1..1024) or single, not {m}"
            )),
    }
}
