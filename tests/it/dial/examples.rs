//! The request/response examples as a user runs them: `rpc_server` and
//! `rpc_client` as processes. The client's verdict is tested both ways:
//! against `rpc_server` it reports timeouts for the slow requests and exits
//! 0; against a server that answers with the wrong body it exits 1.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use netloom::{Context, SeqPacker, Server};

use crate::common::{start, TIMEOUT};

/// Build the examples (a no-op when `cargo test` built them already) and
/// return the path of `name`.
fn example(name: &str) -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--all-features",
            "--example",
            "rpc_server",
            "--example",
            "rpc_client",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "cargo build --example rpc_server --example rpc_client failed"
    );
    crate::common::peers::target_dir()
        .join("debug/examples")
        .join(name)
}

/// Kill a child we started (by its handle) when the test ends, however.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `rpc_client` with `args`, bounded in time.
fn rpc_client(args: &[&str]) -> Output {
    let mut child = Command::new(example("rpc_client"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rpc_client");
    let deadline = Instant::now() + TIMEOUT * 3;
    while child.try_wait().expect("rpc_client status").is_none() {
        assert!(Instant::now() < deadline, "rpc_client did not finish");
        std::thread::sleep(Duration::from_millis(20)); // polling a child's exit
    }
    child.wait_with_output().expect("rpc_client output")
}

#[test]
fn rpc_client_against_rpc_server_checks_every_reply_and_shows_timeouts() {
    let server = Command::new(example("rpc_server"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rpc_server");
    let mut server = Reaped(server);
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    let first = lines.next().expect("rpc_server printed nothing").unwrap();
    let addr = first.rsplit(' ').next().unwrap().to_string();
    assert!(first.contains("listening on"), "{first}");
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
