//! netloom's ratios to the baselines: per scenario (of the medians),
//! paired round by round, and the targets judged on them.

use super::{Row, Scenario, HEADLINE};

/// netloom's ratios to the other kinds in one scenario.
#[derive(Debug, Clone, Copy)]
pub struct Ratio {
    pub frames: f64,
    pub cpu: f64,
    pub p99: f64,
}

pub(super) fn ratio(rows: &[Row], other: &str) -> Option<Ratio> {
    ratio_of(rows, "netloom", other)
}

/// `kind`'s ratios to `other` in one scenario.
fn ratio_of(rows: &[Row], kind: &str, other: &str) -> Option<Ratio> {
    let n = rows.iter().find(|r| r.kind == kind && r.ok())?;
    let o = rows.iter().find(|r| r.kind == other && r.ok())?;
    Some(Ratio {
        frames: n.load.frames_per_sec / o.load.frames_per_sec,
        cpu: n.cpu_per_frame_us() / o.cpu_per_frame_us(),
        p99: n.load.p99_us / o.load.p99_us,
    })
}

/// The baselines netloom is compared with: kind and the name printed.
pub(super) const OTHERS: &[(&str, &str)] = &[("mio", "floor"), ("tokio", "tokio")];

/// Comparisons of netloom's other kinds, each with what it is compared
/// with and the name printed: the execution models (issue 21; `netloom` is
/// `Exec::Inline`, `tokio-blocking` answers each frame from
/// `spawn_blocking`) and typed JSON (issue 22).
pub(super) const EXEC_PAIRS: &[(&str, &str, &str)] = &[
    ("netloom-pool", "netloom", "pool/inline"),
    ("netloom-single", "netloom", "single/inline"),
    ("netloom-pool", "tokio-blocking", "pool/spawn_blocking"),
    ("netloom-single", "tokio-blocking", "single/spawn_blocking"),
    ("netloom-json", "netloom", "json/raw"),
    ("netloom-json", "tokio-json", "json netloom/tokio"),
    ("netloom-json", "netloom-json-vec", "reply_json/to_vec"),
];

/// A ratio's median and range over the rounds of a repeated run.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Option<Spread> {
        v.retain(|x| x.is_finite());
        v.sort_by(|a, b| a.total_cmp(b));
        Some(Spread {
            median: *v.get(v.len() / 2)?,
            min: *v.first()?,
            max: *v.last()?,
        })
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2}x [{:.2}-{:.2}]", self.median, self.min, self.max)
    }
}

/// netloom's ratios to one baseline taken round by round (each round runs
/// every kind once, back to back), then summarised. A drifting host moves
/// both runs of a round alike, so these ratios vary less than the ratio
/// of the medians, which compares runs minutes apart.
#[derive(Debug, Clone, Copy)]
pub struct Paired {
    pub rounds: usize,
    pub frames: Spread,
    pub cpu: Spread,
    pub p99: Spread,
}

/// Paired ratios of netloom to `other` from `runs[kind][round]`; `None`
/// with fewer than two rounds where both succeeded.
pub(super) fn paired(runs: &[Vec<Row>], kinds: &[String], other: &str) -> Option<Paired> {
    paired_of(runs, kinds, "netloom", other)
}

/// Paired ratios of `kind` to `other` (see [`paired`]).
pub(super) fn paired_of(
    runs: &[Vec<Row>],
    kinds: &[String],
    kind: &str,
    other: &str,
) -> Option<Paired> {
    let at = |k: &str| kinds.iter().position(|x| x == k);
    let (n, o) = (&runs[at(kind)?], &runs[at(other)?]);
    let both: Vec<(&Row, &Row)> = n.iter().zip(o).filter(|(a, b)| a.ok() && b.ok()).collect();
    if both.len() < 2 {
        return None;
    }
    let each =
        |f: &dyn Fn(&Row, &Row) -> f64| Spread::of(both.iter().map(|(a, b)| f(a, b)).collect());
    Some(Paired {
        rounds: both.len(),
        frames: each(&|a, b| a.load.frames_per_sec / b.load.frames_per_sec)?,
        cpu: each(&|a, b| a.cpu_per_frame_us() / b.cpu_per_frame_us())?,
        p99: each(&|a, b| a.load.p99_us / b.load.p99_us)?,
    })
}

pub(super) fn ratios(rows: &[Row]) -> Option<String> {
    let mut parts = Vec::new();
    for &(other, name) in OTHERS {
        if let Some(r) = ratio(rows, other) {
            parts.push(format!(
                "netloom/{name}: frames/s {:.2}x, CPU/frame {:.2}x, p99 {:.2}x",
                r.frames, r.cpu, r.p99
            ));
        }
    }
    for &(kind, other, name) in EXEC_PAIRS {
        if let Some(r) = ratio_of(rows, kind, other) {
            parts.push(format!(
                "{name}: frames/s {:.2}x, CPU/frame {:.2}x, p99 {:.2}x",
                r.frames, r.cpu, r.p99
            ));
        }
    }
    (!parts.is_empty()).then(|| parts.join(" | "))
}

/// The targets, checked against this run. With repeated rounds
/// the ratios judged are the paired ones (the median of the per-round
/// ratios); for the headline the ratio of the medians is shown next to
/// them.
pub(super) fn targets(rows: &[Row], pairs: &[(Scenario, &str, Paired)]) -> Vec<String> {
    let mut out = vec!["targets:".to_string()];
    let mut by_scenario: Vec<(Scenario, Vec<Row>)> = Vec::new();
    for r in rows {
        match by_scenario.iter_mut().find(|(s, _)| *s == r.scenario) {
            Some((_, v)) => v.push(r.clone()),
            None => by_scenario.push((r.scenario, vec![r.clone()])),
        }
    }
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    if let Some((sc, h)) = by_scenario.iter().find(|(s, _)| s.name() == HEADLINE) {
        let pair = |name: &str| {
            pairs
                .iter()
                .find(|(s, n, _)| s == sc && *n == name)
                .map(|(_, _, p)| *p)
        };
        // (value judged, how it is described)
        let judged = |of_medians: f64, paired: Option<Spread>, rounds: usize| {
            match paired {
            Some(p) => (
                p.median,
                format!(
                    "{:.2}x paired over {rounds} rounds [{:.2}-{:.2}]; ratio of medians {of_medians:.2}x",
                    p.median, p.min, p.max
                ),
            ),
            None => (of_medians, format!("{of_medians:.2}x")),
        }
        };
        if let Some(f) = ratio(h, "mio") {
            let p = pair("floor");
            let rounds = p.map_or(0, |p| p.rounds);
            let (cpu, cpu_text) = judged(f.cpu, p.map(|p| p.cpu), rounds);
            let (frames, frames_text) = judged(f.frames, p.map(|p| p.frames), rounds);
            out.push(format!(
                "  {} {HEADLINE}: server CPU/frame netloom/floor {cpu_text} (target <= 1.05x)",
                verdict(cpu <= 1.05),
            ));
            out.push(format!(
                "  {} {HEADLINE}: frames/s netloom/floor {frames_text} (target >= 0.95x)",
                verdict(frames >= 0.95),
            ));
        }
        if let Some(t) = ratio(h, "tokio") {
            let p = pair("tokio");
            let rounds = p.map_or(0, |p| p.rounds);
            let (cpu, cpu_text) = judged(t.cpu, p.map(|p| p.cpu), rounds);
            out.push(format!(
                "  {} {HEADLINE}: server CPU/frame netloom/tokio {cpu_text} (target <= 0.75x)",
                verdict(cpu <= 0.75),
            ));
        }
    } else {
        out.push(format!("  (headline scenario {HEADLINE} not in this run)"));
    }
    let mut p99_bad = Vec::new();
    let mut checked = 0;
    for (s, v) in &by_scenario {
        // The paired median when the scenario was repeated, else the
        // ratio of the medians.
        let p99 = |other: &str, name: &str| {
            let paired = pairs
                .iter()
                .find(|(ps, n, _)| ps == s && *n == name)
                .map(|(_, _, p)| p.p99.median);
            ratio(v, other).map(|r| paired.unwrap_or(r.p99))
        };
        let (f, t) = (p99("mio", "floor"), p99("tokio", "tokio"));
        if f.is_none() && t.is_none() {
            continue;
        }
        checked += 1;
        if f.is_some_and(|f| f > 1.2) || t.is_some_and(|t| t > 1.0) {
            p99_bad.push(format!(
                "{} (floor {:.2}x, tokio {:.2}x)",
                s.name(),
                f.unwrap_or(f64::NAN),
                t.unwrap_or(f64::NAN)
            ));
        }
    }
    out.push(format!(
        "  {} p99 <= 1.2x floor and <= tokio: {} of {checked} scenarios over{}",
        verdict(p99_bad.is_empty()),
        p99_bad.len(),
        if p99_bad.is_empty() {
            String::new()
        } else {
            format!(": {}", p99_bad.join(", "))
        }
    ));
    out
}
