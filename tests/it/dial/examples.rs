//! The request/response examples as a user runs them: `rpc_server` and
//! `rpc_client` as processes. The client's verdict is tested both ways:
//! against `rpc_server` it reports timeouts for the slow requests and exits
//! 0; against a server that answers with the wrong body it exits 1.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crossbeam_channel::unbounded;
use netloom::{Context, SeqPacker, Server};

use crate::common::{run_bounded, start, TIMEOUT};

/// How long building the examples may take: a cold `--all-features` build
/// is slow on a small machine.
const BUILD_LIMIT: Duration = Duration::from_secs(600);

/// Build the examples once per test process (a no-op when `cargo test`
/// built them already), bounded in time, and return the path of `name`.
pub(crate) fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args([
                "build",
                "--quiet",
                "--all-features",
                "--example",
                "rpc_server",
                "--example",
                "rpc_client",
                "--example",
                "pool_client",
                "--example",
                "gateway",
                "--example",
                "worker_pool",
                "--example",
                "ws_json_echo",
                "--example",
                "cluster_chat",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // A build past its limit panics in `run_bounded`: kept as the
        // result, so the other test fails at once instead of building again.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_bounded(cargo, BUILD_LIMIT)
        }))
        .map_err(|_| format!("cargo build took longer than {BUILD_LIMIT:?}"))?;
        match out.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    });
    if let Err(e) = built {
        panic!("cargo build of the rpc and pool examples failed: {e}");
    }
    crate::common::peers::target_dir()
        .join("debug/examples")
        .join(name)
}

/// Kill a child we started (by its handle) when the test ends, however.
pub(crate) struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `rpc_client` with `args`, bounded in time (killed past it).
fn rpc_client(args: &[&str]) -> Output {
    let mut client = Command::new(example("rpc_client"));
    client.args(args);
    run_bounded(client, TIMEOUT * 3)
}

/// `rpc_server` on an ephemeral port: the process and its address.
fn rpc_server() -> (Reaped, String) {
    run_example("rpc_server", &["127.0.0.1:0"])
}

/// Start example `name` with `args`; it, and the address it says it
/// listens on in its first line.
pub(crate) fn run_example(name: &str, args: &[&str]) -> (Reaped, String) {
    let server = Command::new(example(name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let mut server = Reaped(server);
    // Its stdout read on a thread (to its end, so it never blocks on a
    // full pipe), so the wait for its first line has a deadline.
    let stdout = server.0.stdout.take().unwrap();
    let (line_tx, lines) = unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if line_tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = lines
        .recv_timeout(TIMEOUT)
        .unwrap_or_else(|_| panic!("{name} printed no line within TIMEOUT"))
        .unwrap_or_else(|e| panic!("read {name}'s stdout: {e}"));
    let addr = first
        .split("listening on ")
        .nth(1)
        .and_then(|after| after.split([' ', ',']).next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    (server, addr)
}

#[test]
fn rpc_client_against_rpc_server_checks_every_reply_and_shows_timeouts() {
    let (_server, addr) = rpc_server();
    let out = rpc_client(&[
        &addr,
        "--threads",
        "4",
        "--in-flight",
        "8",
        "--requests",
        "2000",
        "--slow-every",
        "100",
        "--timeout-ms",
        "300",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains("ok 1980, timed out 20, failed 0, mismatched 0"),
        "{summary}"
    );
}

#[test]
fn rpc_client_exits_non_zero_when_a_reply_is_not_its_request_s() {
    // Answers with the request's id and sequence number, but the body
    // reversed: a mismatch for every request.
    let liar = start(Server::builder().packer(SeqPacker::default()).fallback(
        |ctx: &mut Context<'_>| {
            let mut body = ctx.body().to_vec();
            body.reverse();
            ctx.reply(ctx.msg_id(), body)
        },
    ));
    let addr = liar.local_addr().to_string();
    let out = rpc_client(&[&addr, "--threads", "2", "--requests", "20"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("ok 0, timed out 0, failed 0, mismatched 20"),
        "{stdout}"
    );
    liar.shutdown(TIMEOUT).unwrap();
}

/// Run `pool_client` with `args`, bounded in time; its last line.
fn pool_client(args: &[&str]) -> (Output, String) {
    let mut client = Command::new(example("pool_client"));
    client.args(args);
    let out = run_bounded(client, TIMEOUT * 3);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or_default().to_string();
    (out, last)
}

#[test]
fn pool_client_against_rpc_server_gets_every_answer_right() {
    let (_server, addr) = rpc_server();
    let (out, last) = pool_client(&[&addr, "--threads", "12", "--requests", "50", "--size", "3"]);
    assert!(out.status.success(), "{last}");
    assert_eq!(
        last,
        "pool: requests=600 ok=600 failed=0 timeouts=0 max_size=3"
    );
}

#[test]
fn pool_client_goes_on_with_typed_errors_while_the_server_is_down() {
    // A port nothing listens on: every connect is refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (out, last) = pool_client(&[
        &addr,
        "--threads",
        "4",
        "--requests",
        "3",
        "--timeout-ms",
        "200",
    ]);
    assert!(out.status.success(), "{last}");
    assert_eq!(
        last,
        "pool: requests=12 ok=0 failed=0 timeouts=12 max_size=8"
    );
}

#[test]
fn pool_client_exits_non_zero_on_a_wrong_answer() {
    let liar = start(Server::builder().packer(SeqPacker::default()).fallback(
        |ctx: &mut Context<'_>| {
            // The request's id and sequence number, another body.
            let mut body = ctx.body().to_vec();
            body.push(b'!');
            ctx.reply(ctx.msg_id(), body)
        },
    ));
    let addr = liar.local_addr().to_string();
    let (out, last) = pool_client(&[&addr, "--threads", "2", "--requests", "5"]);
    assert_eq!(out.status.code(), Some(1), "{last}");
    assert_eq!(
        last,
        "pool: requests=10 ok=0 failed=0 timeouts=0 max_size=8"
    );
    liar.shutdown(TIMEOUT).unwrap();
}

/// `gateway` relays its clients' `LengthPacker` messages to its
/// `SeqPacker` backends in turn: `rpc_server` echoes them, and a backend
/// that is down makes the answer a `u32::MAX` message saying so.
#[test]
fn the_gateway_example_relays_to_rpc_server_and_reports_a_dead_backend() {
    let (_server, backend) = rpc_server();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (_gateway, gateway) = run_example("gateway", &["127.0.0.1:0", &backend, &dead]);
    let mut client = crate::common::Client::connect(gateway.parse().unwrap());
    for i in 0..6u32 {
        let body = format!("request {i}");
        client.send(7, body.as_bytes());
        let (id, answer) = client.recv();
        if i % 2 == 0 {
            assert_eq!((id, answer), (7, body.into_bytes()), "echoed by rpc_server");
        } else {
            assert_eq!(id, u32::MAX, "{}", String::from_utf8_lossy(&answer));
        }
    }
}

#[test]
fn pool_client_refuses_bad_arguments_with_status_2() {
    for args in [&["--threads"][..], &["--size", "many"], &["--frobnicate"]] {
        let (out, _) = pool_client(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
