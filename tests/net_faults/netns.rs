//! Two network namespaces joined by a veth pair, made by the driver for
//! one scenario and deleted when the guard drops (also on a panic), and
//! the faults a scenario sets in namespace B with nftables.
//!
//! ```text
//!   namespace A (netloom, the scenario process)      namespace B (peers)
//!   lo up, 10.231.0.1/30 on <name>a  ── veth ──  <name>b 10.231.0.2/30, lo up
//!                                                nft table `inet nlf`: faults
//! ```
//!
//! Nothing here listens or connects: it only runs `ip` and `nft`.

use std::process::Command;
use std::time::Duration;

use crate::common::run_bounded;

/// Netloom's side.
pub const ADDR_A: &str = "10.231.0.1";
/// The peers' side.
pub const ADDR_B: &str = "10.231.0.2";
/// How long one `ip` or `nft` call may take.
const CALL: Duration = Duration::from_secs(10);

/// Run `program args`, bounded; `Err(what it printed)` unless it succeeded.
pub fn call(program: &str, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = run_bounded(cmd, CALL);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}`: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

/// The pair of namespaces of one scenario; `Drop` deletes them and kills
/// (by pid) whatever the scenario left running in them.
pub struct Pair {
    pub a: String,
    pub b: String,
}

impl Pair {
    /// Make `<name>a` and `<name>b` (names unique per run: the driver's
    /// pid and the scenario's index), the veth pair, addresses, `lo` up.
    pub fn new(name: &str) -> Result<Pair, String> {
        let (a, b) = (format!("{name}a"), format!("{name}b"));
        call("ip", &["netns", "add", &a])?;
        // From here on, Drop deletes what exists.
        let pair = Pair { a, b };
        call("ip", &["netns", "add", &pair.b])?;
        // The veth ends are made inside the namespaces, never in ours.
        call(
            "ip",
            &[
                "link", "add", &pair.a, "netns", &pair.a, "type", "veth", "peer", "name", &pair.b,
                "netns", &pair.b,
            ],
        )?;
        for (ns, addr) in [(&pair.a, ADDR_A), (&pair.b, ADDR_B)] {
            call(
                "ip",
                &["-n", ns, "addr", "add", &format!("{addr}/30"), "dev", ns],
            )?;
            call("ip", &["-n", ns, "link", "set", ns, "up"])?;
            call("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    /// Pids of the processes in namespace `ns` (`ip netns pids`).
    fn pids(ns: &str) -> Vec<i32> {
        call("ip", &["netns", "pids", ns])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b].into_iter().filter(|ns| !ns.is_empty()) {
            // Only processes this run started live in its namespaces.
            for pid in Pair::pids(ns) {
                kill(pid);
            }
            if let Err(e) = call("ip", &["netns", "del", ns]) {
                eprintln!("net_faults: could not delete namespace {ns}: {e}");
            }
        }
    }
}

/// Delete the namespaces an earlier run left behind (its driver was
/// killed before its guards ran): `nlf<pid>-…` whose driver `pid` is gone.
/// What still runs in them was started by that run (a scenario, its
/// peers): killed by pid first.
pub fn sweep_stale() {
    let listed = call("ip", &["netns", "list"]).unwrap_or_default();
    for ns in listed.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = ns.strip_prefix("nlf").and_then(|r| r.split('-').next()) else {
            continue;
        };
        if pid.parse::<u32>().is_err() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!("net_faults: deleting {ns}, left by an earlier run (pid {pid}, gone)");
        drop(Pair {
            a: ns.to_owned(),
            b: String::new(),
        });
    }
}

/// SIGKILL one process we started.
pub fn kill(pid: i32) {
    // SAFETY: kill(2) with a pid and a signal number; no memory involved.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// A fault in namespace B, on its veth (B's own loopback, where relays
/// talk to their echo servers, is never touched).
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Every packet in and out dropped: a partition, or (before its peer
    /// is killed) a peer that vanishes without FIN or RST.
    DropAll,
    /// Each packet in and each packet out dropped with this probability
    /// in percent (`numgen random mod 100 < N`).
    Loss(u32),
}

/// Set `fault` in namespace `ns` (replacing any fault set before), both
/// directions at once: one `nft` call is one transaction.
pub fn set_fault(ns: &str, fault: Fault) {
    clear_fault(ns);
    let verdict = match fault {
        Fault::DropAll => "drop".to_string(),
        Fault::Loss(pct) => format!("numgen random mod 100 < {pct} drop"),
    };
    let script = format!(
        "add table inet nlf; \
         add chain inet nlf in {{ type filter hook input priority 0; }}; \
         add rule inet nlf in iifname != \"lo\" {verdict}; \
         add chain inet nlf out {{ type filter hook output priority 0; }}; \
         add rule inet nlf out oifname != \"lo\" {verdict}"
    );
    if let Err(e) = call("ip", &["netns", "exec", ns, "nft", &script]) {
        panic!("nft in {ns}: {e}");
    }
}

/// Remove the fault from namespace `ns` (nothing dropped any more).
pub fn clear_fault(ns: &str) {
    // Deleting a table that is not there fails; that is fine.
    let _ = call(
        "ip",
        &["netns", "exec", ns, "nft", "delete", "table", "inet", "nlf"],
    );
}
