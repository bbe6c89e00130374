//! Faults on a real network path (issue 26, item 2).
//!
//! Each scenario (see `scenarios/`) gets two network namespaces of its own
//! joined by a veth pair (`netns.rs`): netloom runs in namespace A, its
//! peers (CPython's `socket`, `peers.py`) in namespace B, and the faults
//! are nftables rules in B (drop everything: a partition, or a peer that
//! vanishes without FIN or RST; `numgen random` loss) or a delaying relay
//! in B (latency, and reordering for UDP: this kernel has no qdiscs, so
//! `tc netem` is not used; the driver checks and says so).
//!
//! This binary is both sides. Without `NETLOOM_FAULTS_SCENARIO` it is the
//! driver: it makes each scenario's namespaces, runs itself inside A with
//! `ip netns exec A <this binary>` and that variable set, kills it if it
//! outlives its deadline, deletes the namespaces (a guard, also on
//! failure) and prints what ran. With the variable it is that scenario's
//! process: netloom, its assertions, and the leak checks of its own
//! descriptors, memory and stats.
//!
//! Run: `cargo test --all-features --test net_faults` (as root; arguments
//! that are not flags select scenarios by substring, `--list` lists them).
//! Not root, or `ip netns add` refused: every scenario is skipped, said on
//! stderr and counted in `scripts/test`'s summary (`target/skipped-tests`).

#[cfg(target_os = "linux")]
#[path = "../common/mod.rs"]
mod common;
#[cfg(target_os = "linux")]
mod netns;
#[cfg(target_os = "linux")]
mod peer;
#[cfg(target_os = "linux")]
mod probe;
#[cfg(target_os = "linux")]
mod scenarios;

#[cfg(not(target_os = "linux"))]
fn main() {
    println!("net_faults: Linux only (network namespaces, nftables)");
}

#[cfg(target_os = "linux")]
fn main() {
    if let Ok(name) = std::env::var(scenarios::SCENARIO_ENV) {
        // Inside namespace A: run one scenario; a panic fails it.
        scenarios::run_here(&name);
        return;
    }
    // On a named thread, so a skip is recorded under this binary's name.
    let driver = std::thread::Builder::new()
        .name("all_scenarios".into())
        .spawn(driver::run)
        .expect("spawn the driver");
    match driver.join() {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(_) => std::process::exit(101),
    }
}

#[cfg(target_os = "linux")]
mod driver {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::common::peers::{require, skip, Peer};
    use crate::netns::{call, kill, Pair};
    use crate::scenarios::{self, Scenario};

    /// The longest one scenario's process may run before it is killed.
    const DEADLINE: Duration = Duration::from_secs(60);

    /// Which scenarios the arguments select (libtest's flags ignored,
    /// `--skip NAME` honoured), or `None` for `--list`.
    fn selected() -> Option<Vec<&'static Scenario>> {
        let mut filters = Vec::new();
        let mut skips = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--list" => {
                    for s in scenarios::ALL {
                        println!("{}: test", s.name);
                    }
                    return None;
                }
                "--skip" => skips.extend(args.next()),
                "--test-threads" | "--color" | "--format" | "-Z" | "--logfile" => {
                    args.next();
                }
                a if a.starts_with('-') => {}
                a => filters.push(a.to_string()),
            }
        }
        let chosen = scenarios::ALL.iter().filter(|s| {
            (filters.is_empty() || filters.iter().any(|f| s.name.contains(f.as_str())))
                && !skips.iter().any(|f| s.name.contains(f.as_str()))
        });
        Some(chosen.collect())
    }

    /// Whether this kernel has `tc netem` (it is not used either way: the
    /// relays give latency and reordering the same way everywhere).
    fn netem(probe: &Pair) -> String {
        let tc = call(
            "ip",
            &[
                "netns", "exec", &probe.a, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                "delay", "10ms",
            ],
        );
        match tc {
            Ok(_) => "tc netem: available (not used; the relays stand in everywhere)".into(),
            Err(e) => format!(
                "tc netem: NOT available ({}); latency and reordering come from the user-space relays",
                e.lines().last().unwrap_or("").trim()
            ),
        }
    }

    /// Run the selected scenarios; false if any failed.
    pub fn run() -> bool {
        let Some(chosen) = selected() else {
            return true;
        };
        if chosen.is_empty() {
            println!("net_faults: no scenario selected");
            return true;
        }
        // SAFETY: geteuid(2) has no arguments and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            skip("not root: network namespaces need CAP_SYS_ADMIN (`ip netns add`)");
            return true;
        }
        let Some(ip) = require(Peer::Iproute2) else {
            return true;
        };
        let Some(_) = require(Peer::Nft) else {
            return true;
        };
        let Some(python) = require(Peer::Python3) else {
            return true;
        };
        crate::netns::sweep_stale();
        let tag = format!("nlf{}-", std::process::id());
        let probe = match Pair::new(&format!("{tag}p")) {
            Ok(pair) => pair,
            Err(e) => {
                skip(&format!("network namespaces cannot be made here: {e}"));
                return true;
            }
        };
        println!("net_faults: namespaces and veth pairs: available ({ip})");
        println!("net_faults: nftables drop and `numgen random` loss: available");
        println!("net_faults: {}", netem(&probe));
        drop(probe);

        let mut results = Vec::new();
        for (i, scenario) in chosen.iter().enumerate() {
            println!("\n=== {}: {}", scenario.name, scenario.proves);
            println!("    faults: {}", scenario.faults);
            let start = Instant::now();
            let outcome = run_one(scenario, &format!("{tag}{i}"), &python);
            let took = start.elapsed();
            match &outcome {
                Ok(()) => println!("=== {}: ok ({took:.1?})", scenario.name),
                Err(e) => println!("=== {}: FAILED ({took:.1?}): {e}", scenario.name),
            }
            results.push((scenario.name, outcome, took));
        }
        println!("\nnet_faults summary:");
        for (name, outcome, took) in &results {
            let verdict = if outcome.is_ok() { "ok" } else { "FAILED" };
            println!("  {name:56} {verdict:6} {took:.1?}");
        }
        results.iter().all(|(_, outcome, _)| outcome.is_ok())
    }

    /// One scenario: its namespaces, this binary inside A, bounded.
    fn run_one(scenario: &Scenario, name: &str, python: &str) -> Result<(), String> {
        let pair = Pair::new(name)?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new("ip");
        child
            .args(["netns", "exec", &pair.a])
            .arg(&exe)
            .env(scenarios::SCENARIO_ENV, scenario.name)
            .env(scenarios::NS_B_ENV, &pair.b)
            .env(scenarios::PY_ENV, python)
            .stdin(Stdio::null());
        // SAFETY: prctl(2) in the child between fork and exec: no
        // allocation, no lock. The scenario dies with this driver (a
        // killed `cargo test`) instead of running on unwatched; the
        // setting survives the exec of `ip` (not set-uid) and its exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut child, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = child.spawn().map_err(|e| format!("spawn: {e}"))?;
        // `ip netns exec` execs in place: this pid is the scenario's.
        let pid = child.id() as i32;
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    kill(pid);
                    let _ = child.wait();
                    return Err(format!("still running after {DEADLINE:?}: killed"));
                }
                Err(e) => return Err(format!("wait: {e}")),
            }
        };
        drop(pair); // deletes the namespaces, kills what is left in them
        if status.success() {
            Ok(())
        } else {
            Err(format!("the scenario's process ended with {status}"))
        }
    }
}
