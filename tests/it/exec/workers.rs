//! Shutdown joins the worker pool's threads (found by the review of the
//! fixes for issue 21; each failed before its fix): the idle ones beside a
//! stuck handler, and every time, without false warnings. Linux: counts
//! threads in /proc, in a child process.

use std::process::Command;
use std::time::Duration;

use crossbeam_channel::bounded;
use netloom::{Context, Exec, Server};

use crate::common::{run_bounded, start, Client, TIMEOUT};

// ---------------------------------------------------------------------
// Workers::join with a deadline (src/dispatch/exec/worker.rs)
// ---------------------------------------------------------------------

/// The worker threads of this process (Linux: their names, cut to 15
/// bytes, in /proc).
fn worker_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("netloom-worker"))
        .count()
}

/// `shutdown(deadline)` with one handler stuck on a pool of 4: the
/// worker running it is "left to end that handler on its own"; the idle
/// ones should end and be joined ("an idle thread gets GRACE to see its
/// channel close"). But the stuck worker holds the application (`Arc<App>`,
/// upgraded for its task), and with it the pool's sender: the idle
/// workers' channel never closes, they are not joined either, and the
/// warning says all 4 "still ran a handler". Run in a child process to
/// count the threads.
#[cfg(target_os = "linux")]
#[test]
fn shutdown_joins_the_idle_workers_beside_a_stuck_one() {
    const CHILD: &str = "NETLOOM_REVIEW_IDLE_WORKERS_CHILD";
    if std::env::var_os(CHILD).is_some() {
        idle_workers_child();
        return;
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(CHILD, "1").args([
        "--exact",
        "exec::workers::shutdown_joins_the_idle_workers_beside_a_stuck_one",
        "--nocapture",
        "--test-threads=1",
    ]);
    let out = run_bounded(cmd, TIMEOUT * 3);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = (text.lines())
        .find_map(|l| l.find("left:").map(|i| &l[i..]))
        .unwrap_or("none");
    println!("{line}");
    assert!(
        out.status.success(),
        "{line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(target_os = "linux")]
fn idle_workers_child() {
    let (running_tx, running) = bounded(1);
    let (release_tx, release) = bounded::<()>(1);
    let server = start(Server::builder().exec(Exec::Pool(4)).route(
        1,
        move |_ctx: &mut Context<'_>| {
            let _ = running_tx.send(());
            let _ = release.recv_timeout(TIMEOUT);
        },
    ));
    crate::common::wait_until("4 workers started", || worker_threads() == 4);
    let mut c = Client::connect(server.local_addr());
    c.send(1, b"");
    running.recv_timeout(TIMEOUT).unwrap();
    let result = server.shutdown(Duration::from_millis(100));
    let left = worker_threads();
    println!(
        "left: {left} worker thread(s) after shutdown returned ({result:?}), one handler stuck"
    );
    release_tx.send(()).unwrap();
    crate::common::wait_until("the workers to end", || worker_threads() == 0);
    assert!(
        left <= 1,
        "{left} worker threads left behind, 1 handler stuck"
    );
}

/// `Workers::join(Some(deadline))` waits until every worker dropped its
/// `alive` sender, then joins only the threads `is_finished()` says have
/// ended, leaving the others. But a worker drops `alive` before its
/// closure returns (its captured receiver, application and runtime are
/// dropped after, then the result is stored): the last one is often not
/// "finished" yet, and an idle worker is left behind, unjoined (with a
/// warning that it "still ran a handler"), though nothing ran. Many
/// servers with idle pools, each shut down: count the workers still
/// there once `shutdown` has returned. Run in a child process.
#[cfg(target_os = "linux")]
#[test]
fn shutdown_joins_idle_workers_every_time() {
    const CHILD: &str = "NETLOOM_REVIEW_JOIN_RACE_CHILD";
    if std::env::var_os(CHILD).is_some() {
        join_race_child();
        return;
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(CHILD, "1").env("RUST_LOG", "netloom=warn").args([
        "--exact",
        "exec::workers::shutdown_joins_idle_workers_every_time",
        "--nocapture",
        "--test-threads=1",
    ]);
    let out = run_bounded(cmd, TIMEOUT * 6);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = (text.lines())
        .find_map(|l| l.find("servers:").map(|i| &l[i..]))
        .unwrap_or("none");
    let warned = text.matches("still ran a handler").count()
        + String::from_utf8_lossy(&out.stderr)
            .matches("still ran a handler")
            .count();
    println!("{line}; warnings that a worker \"still ran a handler\": {warned}");
    assert!(out.status.success(), "{line}");
    assert_eq!(
        warned, 0,
        "{line}: idle workers left unjoined, reported as busy"
    );
}

#[cfg(target_os = "linux")]
fn join_race_child() {
    const SERVERS: usize = 100;
    let (mut unjoined, mut worst) = (0, 0);
    for _ in 0..SERVERS {
        let server = start(
            Server::builder()
                .event_loops(1)
                .exec(Exec::Pool(2))
                .route(1, |ctx: &mut Context<'_>| ctx.reply(1, b"ok")),
        );
        let mut c = Client::connect(server.local_addr());
        c.send(1, b"");
        assert_eq!(c.recv().0, 1);
        drop(c);
        server.shutdown(TIMEOUT).unwrap();
        let left = worker_threads();
        if left > 0 {
            unjoined += 1;
            worst = worst.max(left);
        }
        crate::common::wait_until("left workers to end", || worker_threads() == 0);
    }
    // (A thread joined a moment ago may still be listed in /proc: the
    // warnings, not this count, say whether one was left unjoined.)
    println!("servers: {SERVERS}; shutdowns that returned with idle workers listed: {unjoined} (at most {worst})");
}
