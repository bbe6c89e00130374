//! The end of a run: the summary, each check with its figures, and the
//! verdict (written to `summary.txt` as well as printed).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::args::Args;
use crate::sample::Sample;

/// Everything the checks look at.
pub struct Outcome<'a> {
    pub args: &'a Args,
    pub samples: &'a [Sample],
    /// Elapsed seconds when the clients were told to stop.
    pub load_end: f64,
    /// `on_close` by (role, reason kind).
    pub closes: BTreeMap<(char, &'static str), u64>,
    /// The clients' final counts.
    pub counts: Vec<(&'static str, u64)>,
    pub failures: Vec<String>,
    pub panics: u64,
    pub fds_baseline: Option<usize>,
    pub fds_end: Option<usize>,
    /// Live heap after everything closed and dropped, less before the
    /// servers started, less what the samples kept for the report take.
    pub heap_growth: isize,
    /// Stream connections still open on the servers once the clients were
    /// gone (waited for, bounded).
    pub streams_left: i64,
    pub peer_restarts: u64,
}

/// Close reasons that end an honest connection normally: it closed, or
/// the servers shut down.
const NORMAL: [&str; 3] = ["peer_closed", "ws_closed", "shutdown"];

/// The RSS windows: a warm-up, then the first plateau and the last window
/// of the load, each `window` long (a minute in a 10-minute run).
fn rss_windows(load_end: f64) -> ((f64, f64), (f64, f64)) {
    let window = (load_end / 4.0).min(60.0);
    let warm = (load_end / 8.0).min(30.0);
    ((warm, warm + window), (load_end - window, load_end))
}

/// The peak of `f` over the samples within `(from, to)`.
fn peak_in(
    samples: &[Sample],
    (from, to): (f64, f64),
    f: impl Fn(&Sample) -> Option<u64>,
) -> Option<u64> {
    samples
        .iter()
        .filter(|s| s.elapsed >= from && s.elapsed <= to)
        .filter_map(f)
        .max()
}

/// Print the summary and the checks; `true` if every check passed.
pub fn judge(o: &Outcome<'_>) -> (bool, String) {
    let mut out = String::new();
    let mut ok = true;
    let mut check = |out: &mut String, pass: bool, what: String| {
        ok &= pass;
        let _ = writeln!(out, "  [{}] {what}", if pass { "pass" } else { "FAIL" });
    };
    let count = |name: &str| {
        o.counts
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, v)| *v)
    };
    let last = o.samples.iter().rfind(|s| s.elapsed <= o.load_end);
    let _ = writeln!(
        out,
        "soak: {:.0} s of load, {} samples",
        o.load_end,
        o.samples.len()
    );
    if let Some(s) = last {
        let _ = writeln!(
            out,
            "  server: {} accepted, {} messages in, {} out, {:.1} GiB in, {} closed, {} slow-peer events, \
             {} unflushed closes, {} request timeouts, {} connects, {} connect failures, {} datagrams in",
            s.get("accepted"),
            s.get("messages_in"),
            s.get("messages_out"),
            s.get("bytes_in") as f64 / (1u64 << 30) as f64,
            s.get("closed"),
            s.get("slow_peer_events"),
            s.get("unflushed_closes"),
            s.get("request_timeouts"),
            s.get("connects"),
            s.get("connect_failures"),
            s.get("datagrams_in"),
        );
    }
    let peak =
        |f: &dyn Fn(&Sample) -> Option<u64>| o.samples.iter().filter_map(f).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "  peaks: {} connections, {} descriptors, {:.1} MiB RSS, {} bytes of partial frames held",
        peak(&|s| Some(s.get("connections"))),
        peak(&|s| s.fds.map(|n| n as u64)),
        peak(&|s| s.rss) as f64 / 1048576.0,
        peak(&|s| Some(s.get("partial_held"))),
    );
    let counts: Vec<String> = o.counts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(out, "  clients: {}", counts.join(" "));
    let closes: Vec<String> = o
        .closes
        .iter()
        .map(|((r, k), v)| format!("{r}/{k}={v}"))
        .collect();
    let _ = writeln!(out, "  on_close by role/reason: {}", closes.join(" "));
    for f in &o.failures {
        let _ = writeln!(out, "  failure: {f}");
    }
    let _ = writeln!(out, "checks:");

    check(
        &mut out,
        o.panics == 0,
        format!("no panic ({} seen)", o.panics),
    );

    let honest_roles = ['E', 'H', 'C', 'I'];
    let honest_bad: Vec<String> = o
        .closes
        .iter()
        .filter(|((r, k), _)| honest_roles.contains(r) && !NORMAL.contains(k))
        .map(|((r, k), v)| format!("{r}/{k}={v}"))
        .collect();
    check(
        &mut out,
        honest_bad.is_empty(),
        format!(
            "honest connections (E echo, H full speed, C churn, I idle) closed only by their peer or shutdown{}",
            if honest_bad.is_empty() { String::new() } else { format!(": {}", honest_bad.join(" ")) }
        ),
    );
    let errs = [
        "echo_err",
        "echo_wrong",
        "honest_err",
        "honest_wrong",
        "churn_err",
        "idle_err",
        "udp_err",
    ];
    let bad: u64 = errs.iter().map(|e| count(e)).sum();
    check(
        &mut out,
        bad == 0
            && (o.args.honest == 0 || count("honest_ok") > 0)
            && (o.args.echo == 0 || count("echo_ok") > 0),
        format!(
            "every honest echo correct: {} echo, {} full-speed bursts, {} churn, {} idle, {} UDP round trips; \
             {bad} errors or wrong echoes ({} UDP datagrams lost, not counted)",
            count("echo_ok"),
            count("honest_ok"),
            count("churn_ok"),
            count("idle_ok"),
            count("udp_ok"),
            count("udp_lost"),
        ),
    );

    if o.args.slow > 0 {
        let by_slow: u64 = o.closes.get(&('S', "slow_peer")).copied().unwrap_or(0);
        let other: Vec<String> = o
            .closes
            .iter()
            .filter(|((r, k), _)| *r == 'S' && *k != "slow_peer" && *k != "shutdown")
            .map(|((r, k), v)| format!("{r}/{k}={v}"))
            .collect();
        check(
            &mut out,
            count("slow_opened") > 0 && count("slow_unclosed") == 0 && count("slow_err") == 0 && other.is_empty()
                && by_slow >= count("slow_closed"),
            format!(
                "slow peers closed with CloseReason::SlowPeer: {} opened, {} closed by the server (seen by the \
                 client), {by_slow} on_close with SlowPeer, {} not closed in time, {} errors, other reasons: [{}]",
                count("slow_opened"),
                count("slow_closed"),
                count("slow_unclosed"),
                count("slow_err"),
                other.join(" ")
            ),
        );
    }

    let (first, end) = rss_windows(o.load_end);
    let memory = [
        (
            "RSS",
            Box::new(|s: &Sample| s.rss) as Box<dyn Fn(&Sample) -> Option<u64>>,
        ),
        (
            "live heap (Rust)",
            Box::new(|s: &Sample| Some(s.get("heap_kib") * 1024)),
        ),
    ];
    for (what, f) in memory {
        match (peak_in(o.samples, first, &f), peak_in(o.samples, end, &f)) {
            (Some(a), Some(b)) if a > 0 => {
                let limit = (a as f64 * (1.0 + o.args.rss_margin_percent / 100.0))
                    .max((a + o.args.rss_slack) as f64);
                check(
                    &mut out,
                    b as f64 <= limit,
                    format!(
                        "{what}: last window ({:.0}-{:.0} s) peak {:.1} MiB vs first plateau ({:.0}-{:.0} s) \
                         peak {:.1} MiB: {:+.1} % (margin {} % or {} MiB, whichever is more)",
                        end.0,
                        end.1,
                        b as f64 / 1048576.0,
                        first.0,
                        first.1,
                        a as f64 / 1048576.0,
                        (b as f64 / a as f64 - 1.0) * 100.0,
                        o.args.rss_margin_percent,
                        o.args.rss_slack >> 20
                    ),
                );
            }
            _ => {
                let _ = writeln!(out, "  [n/a ] {what}: not available on this system");
            }
        }
    }
    let _ = writeln!(
        out,
        "  [info] live heap after everything closed and dropped: {:+.1} KiB over the start (the samples kept for the report not counted)",
        o.heap_growth as f64 / 1024.0
    );

    match (o.fds_baseline, o.fds_end) {
        (Some(a), Some(b)) => check(
            &mut out,
            b <= a,
            format!(
                "descriptors back to the baseline after everything closed: {a} before, {b} after"
            ),
        ),
        _ => {
            let _ = writeln!(out, "  [n/a ] descriptors: not available on this system");
        }
    }
    check(
        &mut out,
        o.streams_left == 0,
        format!(
            "stream connections on the servers once the clients left: {}",
            o.streams_left
        ),
    );

    // The dial came back after every restart of its peer: a request
    // through it succeeded after each one.
    let mut restarts_seen = 0;
    let mut recovered = 0;
    let mut mark: Option<u64> = None; // dial_ok when the last restart was seen
    let mut prev_restarts = 0;
    for s in o.samples.iter().filter(|s| s.elapsed <= o.load_end) {
        let r = s.get("peer_restarts");
        if r > prev_restarts {
            restarts_seen += r - prev_restarts;
            prev_restarts = r;
            mark = Some(s.get("dial_ok"));
        } else if let Some(m) = mark {
            if s.get("dial_ok") > m {
                recovered += 1;
                mark = None;
            }
        }
    }
    check(
        &mut out,
        count("dial_ok") > 0 && count("pool_ok") > 0 && recovered == restarts_seen,
        format!(
            "dial-out: the peer restarted {} times, the dial's requests came back after {recovered} of \
             {restarts_seen} seen; {} ok and {} failed through the dial, {} ok and {} failed through the pool",
            o.peer_restarts,
            count("dial_ok"),
            count("dial_err"),
            count("pool_ok"),
            count("pool_err"),
        ),
    );
    let _ = writeln!(out, "verdict: {}", if ok { "PASS" } else { "FAIL" });
    (ok, out)
}
