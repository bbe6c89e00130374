//! What a scenario measures of its own process: open descriptors, resident
//! memory, and bounded waits on a condition.

use std::time::{Duration, Instant};

use netloom::Stats;

/// Open descriptors of this process, with what each points to.
pub fn open_fds() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{}->{}",
                e.file_name().to_string_lossy(),
                target.to_string_lossy()
            ))
        })
        .collect();
    fds.sort();
    fds
}

/// Resident set size in KiB (`VmRSS` of /proc/self/status).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Poll `cond` every 5 ms until it holds; panic naming `what` after `limit`.
/// Only for states no event announces (a counter settling, a pool
/// refilling); returns how long it took.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

/// The descriptors open before a scenario's servers started; checked
/// again once they are shut down.
pub struct Baseline {
    fds: Vec<String>,
}

impl Baseline {
    pub fn take() -> Baseline {
        Baseline { fds: open_fds() }
    }

    /// Panic unless the process holds exactly the descriptors it held
    /// (by number and target) when the baseline was taken.
    pub fn check_fds(&self, when: &str) {
        // A killed peer's pipe closes when its reader thread sees the end;
        // give that a bounded moment, then compare.
        let settled = Instant::now() + Duration::from_secs(3);
        let mut now = open_fds();
        while now != self.fds && Instant::now() < settled {
            std::thread::sleep(Duration::from_millis(10));
            now = open_fds();
        }
        assert_eq!(now, self.fds, "descriptors {when} differ from the baseline");
        println!("  leaks: {} descriptors {when}, as before", now.len());
    }
}

/// Panic unless `stats` show no connection and no partial frame held
/// (what a closed connection must give back while the server runs).
pub fn check_drained(stats: &Stats, when: &str) {
    assert_eq!(stats.connections, 0, "connections open {when}: {stats}");
    assert_eq!(stats.partial_held, 0, "partial frames held {when}: {stats}");
    println!("  leaks: Stats connections=0 partial_held=0 {when}");
}
