//! `compare`: every scenario against every server kind, in one run.
//!
//! For each scenario (loops × connections × pipeline × body size) and each
//! kind (the raw mio floor, tokio, netloom), a fresh `serve` child is
//! started pinned to the server CPUs, the generator runs in this process
//! pinned to the load CPUs, and the server's user+sys CPU time is sampled
//! from /proc at the edges of the measurement window. The report gives
//! frames/s, latency and **server CPU time per echoed frame** (which does not
//! depend on how fast the generator is), then netloom/floor and
//! netloom/tokio ratios per scenario, and writes CSV, JSON, a Markdown table
//! and SVG charts into `--out`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::args::{fmt_size, parse_duration, parse_size, Args};
use crate::chart::{self, Series};
use crate::child::ServerChild;
use crate::load::{self, LoadConfig, LoadReport, Phase};

/// Scenarios whose smallest in-flight volume (C × (S + 8), P = 1) is above
/// this are skipped: the servers would need that much memory for partial
/// frames alone.
const MAX_INFLIGHT_P1: usize = 1 << 30;

/// The headline scenario the targets are stated for.
const HEADLINE: &str = "l1-c1000-p16-64B";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    pub loops: usize,
    pub conns: usize,
    pub pipeline: usize,
    pub size: usize,
}

impl Scenario {
    pub fn name(&self) -> String {
        format!(
            "l{}-c{}-p{}-{}",
            self.loops,
            self.conns,
            self.pipeline,
            fmt_size(self.size)
        )
    }
}

/// One server kind's result in one scenario.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: Scenario,
    pub kind: String,
    pub load: LoadReport,
    pub server_cpu_secs: f64,
    pub server_rss: u64,
    /// Voluntary context switches of the server's threads in the window
    /// (each one a sleep in the poller, paid for by a wake-up).
    pub server_sleeps: u64,
    /// User time other programs (and the hypervisor, as steal) took on the
    /// server and generator CPUs during the window, in % of those CPUs
    /// (see `--max-noise`).
    pub noise_pct: f64,
    pub error: Option<String>,
}

impl Row {
    /// Server CPU time per echoed frame, in microseconds.
    pub fn cpu_per_frame_us(&self) -> f64 {
        if self.load.frames == 0 {
            return f64::NAN;
        }
        self.server_cpu_secs * 1e6 / self.load.frames as f64
    }

    /// Server sleeps (voluntary context switches) per 1,000 echoed frames.
    pub fn sleeps_per_kframe(&self) -> f64 {
        if self.load.frames == 0 {
            return f64::NAN;
        }
        self.server_sleeps as f64 * 1e3 / self.load.frames as f64
    }

    /// Server CPU use in the window, % of one core.
    pub fn server_cpu_pct(&self) -> f64 {
        100.0 * self.server_cpu_secs / self.load.secs.max(1e-9)
    }

    fn ok(&self) -> bool {
        self.error.is_none() && self.load.ok()
    }
}

/// Display name of a server kind.
pub fn label(kind: &str) -> &str {
    match kind {
        "mio" => "floor(mio)",
        k => k,
    }
}

struct Options {
    scenarios: Vec<Scenario>,
    kinds: Vec<String>,
    duration: Duration,
    warmup: Duration,
    repeat: usize,
    out: PathBuf,
    server_cpus: Vec<usize>,
    load_cpus: Vec<usize>,
    sources: Option<usize>,
    inflight_budget: usize,
    max_noise: f64,
    retries: usize,
    /// `--busy-poll` for the netloom server (zero: off, its default).
    busy_poll: Duration,
}

fn options(args: &Args) -> Result<Options, String> {
    args.check(&[
        "quick",
        "scenario",
        "loops",
        "conns",
        "pipeline",
        "size",
        "duration",
        "warmup",
        "kinds",
        "repeat",
        "out",
        "server-cpus",
        "load-cpus",
        "sources",
        "inflight-budget",
        "max-noise",
        "retries",
        "busy-poll",
    ])?;
    let quick = args.flag("quick");
    let n = crate::os::cpus();
    let loops = args.list("loops", if quick { vec![1] } else { vec![1, n.max(2)] })?;
    let conns = args.list(
        "conns",
        if quick {
            vec![1, 100, 1000]
        } else {
            vec![1, 100, 1000, 10000]
        },
    )?;
    let pipeline = args.list("pipeline", vec![1, 16])?;
    let sizes: Vec<usize> = match args.str("size") {
        Some(s) => s.split(',').map(parse_size).collect::<Result<_, _>>()?,
        None if quick => vec![64, 4096],
        None => vec![64, 4096, 1 << 20],
    };
    let filters: Vec<String> = args
        .str("scenario")
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let mut scenarios = Vec::new();
    for &l in &loops {
        for &c in &conns {
            for &p in &pipeline {
                for &s in &sizes {
                    let sc = Scenario {
                        loops: l,
                        conns: c,
                        pipeline: p,
                        size: s,
                    };
                    let name = sc.name();
                    if filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())) {
                        scenarios.push(sc);
                    }
                }
            }
        }
    }
    if scenarios.is_empty() {
        return Err("no scenario matches --scenario".into());
    }
    Ok(Options {
        scenarios,
        kinds: args.list(
            "kinds",
            vec!["mio".to_string(), "tokio".into(), "netloom".into()],
        )?,
        duration: parse_duration(
            args.str("duration")
                .unwrap_or(if quick { "3s" } else { "10s" }),
        )?,
        warmup: parse_duration(args.str("warmup").unwrap_or("500ms"))?,
        repeat: args.get("repeat", 1usize)?.max(1),
        out: PathBuf::from(args.str("out").unwrap_or("docs/bench")),
        server_cpus: args.list("server-cpus", if n >= 2 { vec![0] } else { vec![] })?,
        load_cpus: args.list("load-cpus", if n >= 2 { vec![1] } else { vec![] })?,
        sources: args
            .str("sources")
            .map(str::parse)
            .transpose()
            .map_err(|_| "bad --sources")?,
        inflight_budget: parse_size(args.str("inflight-budget").unwrap_or("256MiB"))?,
        max_noise: args.get("max-noise", 5.0)?,
        retries: args.get("retries", 3)?,
        busy_poll: match args.str("busy-poll") {
            None => Duration::ZERO,
            Some(s) => parse_duration(s)?,
        },
    })
}

pub fn main(args: Args) -> Result<(), String> {
    let opts = options(&args)?;
    let _ = crate::os::raise_fd_limit();
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let command = format!(
        "netloom_bench {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    println!("# {command}");
    println!("# machine: {}", crate::os::machine());
    println!(
        "# server pinned to CPUs {:?}, generator to CPUs {:?}; {} per run after {:?} warm-up; \
         {} run(s) per kind (median); a run is redone (up to {} times) while other programs \
         use over {}% of those CPUs",
        opts.server_cpus,
        opts.load_cpus,
        fmt_dur(opts.duration),
        opts.warmup,
        opts.repeat,
        opts.retries,
        opts.max_noise
    );
    if !opts.busy_poll.is_zero() {
        println!(
            "# netloom with busy_poll {:?} (the other servers as always)",
            opts.busy_poll
        );
    }
    println!("{}", header());

    let mut rows: Vec<Row> = Vec::new();
    let mut every_run: Vec<(usize, Row)> = Vec::new();
    let mut pairs: Vec<(Scenario, &'static str, Paired)> = Vec::new();
    let mut failures = 0;
    for sc in &opts.scenarios {
        if sc.conns * (sc.size + 8) > MAX_INFLIGHT_P1 {
            println!(
                "{:<22} skipped: {} connections x {} in flight is over {} even at P=1",
                sc.name(),
                sc.conns,
                fmt_size(sc.size + 8),
                fmt_size(MAX_INFLIGHT_P1)
            );
            continue;
        }
        let mut runs: Vec<Vec<Row>> = vec![Vec::new(); opts.kinds.len()];
        for _ in 0..opts.repeat {
            for (i, kind) in opts.kinds.iter().enumerate() {
                runs[i].push(run_quiet(&opts, *sc, kind));
            }
        }
        for (other, name) in OTHERS {
            if let Some(p) = paired(&runs, &opts.kinds, other) {
                pairs.push((*sc, name, p));
            }
        }
        every_run.extend(
            runs.iter()
                .flat_map(|kind_runs| kind_runs.iter().cloned().enumerate()),
        );
        let scenario_rows: Vec<Row> = runs.into_iter().map(median).collect();
        for r in &scenario_rows {
            println!("{}", line(r));
            if !r.ok() {
                failures += 1;
                let why = r
                    .error
                    .clone()
                    .or(r.load.first_error.clone())
                    .unwrap_or_default();
                println!("    FAILED: {why}");
            }
        }
        if let Some(s) = ratios(&scenario_rows) {
            println!("    {s}");
        }
        let scenario_pairs: Vec<String> = pairs
            .iter()
            .filter(|(s, _, _)| s == sc)
            .map(|(_, name, p)| {
                format!(
                    "netloom/{name}: frames/s {}, CPU/frame {}, p99 {}",
                    p.frames, p.cpu, p.p99
                )
            })
            .collect();
        if !scenario_pairs.is_empty() {
            println!(
                "    paired by round, median [min-max]: {}",
                scenario_pairs.join(" | ")
            );
        }
        rows.extend(scenario_rows);
    }

    println!();
    for t in targets(&rows, &pairs) {
        println!("{t}");
    }
    write_outputs(&opts.out, &command, &rows, &every_run, &pairs)?;
    println!("results: {}", opts.out.display());
    if failures > 0 {
        return Err(format!("{failures} run(s) failed verification"));
    }
    Ok(())
}

fn fmt_dur(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn run_one(opts: &Options, sc: Scenario, kind: &str) -> Row {
    let mut row = Row {
        scenario: sc,
        kind: kind.to_string(),
        load: LoadReport::default(),
        server_cpu_secs: 0.0,
        server_rss: 0,
        server_sleeps: 0,
        noise_pct: 0.0,
        error: None,
    };
    let extra: Vec<String> = if kind == "netloom" && !opts.busy_poll.is_zero() {
        vec![
            "--busy-poll".into(),
            format!("{}us", opts.busy_poll.as_micros()),
        ]
    } else {
        Vec::new()
    };
    let child = match ServerChild::spawn(kind, sc.loops, &opts.server_cpus, &extra) {
        Ok(c) => c,
        Err(e) => {
            row.error = Some(e);
            return row;
        }
    };
    let cfg = LoadConfig {
        addr: child.addr,
        conns: sc.conns,
        pipeline: sc.pipeline,
        size: sc.size,
        duration: opts.duration,
        warmup: opts.warmup,
        drain: Duration::from_secs(10),
        sources: opts.sources.unwrap_or(crate::wire::auto_sources(sc.conns)),
        threads: 1,
        cpus: opts.load_cpus.clone(),
        inflight_budget: opts.inflight_budget,
        connect_timeout: Duration::from_secs(5),
        quiet: true,
    };
    let pid = child.pid;
    let me = std::process::id();
    let watched: Vec<usize> = opts
        .server_cpus
        .iter()
        .chain(&opts.load_cpus)
        .copied()
        .collect();
    let (mut cpu0, mut cpu1, mut rss) = (None, None, None);
    let (mut sleeps0, mut sleeps1) = (None, None);
    let (mut busy0, mut busy1) = (None, None);
    let (mut ours0, mut ours1) = (
        (Duration::ZERO, Duration::ZERO),
        (Duration::ZERO, Duration::ZERO),
    );
    // (user, user + system) of the server and this process.
    let ours = || {
        [me, pid]
            .iter()
            .filter_map(|&p| crate::os::cpu_times(p))
            .fold((Duration::ZERO, Duration::ZERO), |(u, a), (pu, ps)| {
                (u + pu, a + pu + ps)
            })
    };
    let result = load::run(&cfg, &mut |phase| match phase {
        Phase::Connected => {}
        Phase::MeasureStart => {
            busy0 = crate::os::cpus_time(&watched);
            ours0 = ours();
            cpu0 = crate::os::cpu_time(pid);
            sleeps0 = crate::os::voluntary_switches(pid);
        }
        Phase::MeasureEnd => {
            cpu1 = crate::os::cpu_time(pid);
            sleeps1 = crate::os::voluntary_switches(pid);
            ours1 = ours();
            busy1 = crate::os::cpus_time(&watched);
            rss = crate::os::rss(pid);
        }
    });
    child.stop();
    match result {
        Ok(r) => row.load = r,
        Err(e) => row.error = Some(e),
    }
    match (cpu0, cpu1) {
        (Some(a), Some(b)) => row.server_cpu_secs = b.saturating_sub(a).as_secs_f64(),
        _ if row.error.is_none() => row.error = Some("cannot read the server's CPU time".into()),
        _ => {}
    }
    row.server_rss = rss.unwrap_or(0);
    if let (Some(a), Some(b)) = (sleeps0, sleeps1) {
        row.server_sleeps = b.saturating_sub(a);
    }
    if let (Some(b0), Some(b1)) = (busy0, busy1) {
        let secs = |a: Duration, b: Duration| b.saturating_sub(a).as_secs_f64();
        // Others' user time, or others' user + system time, whichever is
        // larger. Our system time includes some softirq ticks, so the
        // second alone would miss part of the others' work.
        let by_user = secs(b0.0, b1.0) - secs(ours0.0, ours1.0);
        let by_all = secs(b0.1, b1.1) - secs(ours0.1, ours1.1);
        let capacity = opts.duration.as_secs_f64() * watched.len().max(1) as f64;
        row.noise_pct = (100.0 * by_user.max(by_all) / capacity).max(0.0);
    }
    row
}

/// Run one kind in one scenario; while other programs took more than
/// `--max-noise` of the watched CPUs, run it again (up to `--retries`
/// times) and keep the quietest run.
fn run_quiet(opts: &Options, sc: Scenario, kind: &str) -> Row {
    let mut best = run_one(opts, sc, kind);
    for _ in 0..opts.retries {
        if best.noise_pct <= opts.max_noise || best.error.is_some() {
            break;
        }
        eprintln!(
            "  {} {}: {:.0}% of the CPUs went to other programs; running it again",
            sc.name(),
            label(kind),
            best.noise_pct
        );
        let again = run_one(opts, sc, kind);
        if again.noise_pct < best.noise_pct && again.error.is_none() {
            best = again;
        }
    }
    best
}

/// Median of each metric over repeated runs (the first run's other fields).
fn median(mut runs: Vec<Row>) -> Row {
    if runs.len() == 1 {
        return runs.pop().expect("one run");
    }
    fn med(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }
    let mut out = runs[0].clone();
    let f = |get: &dyn Fn(&Row) -> f64| med(runs.iter().map(get).collect());
    out.load.frames_per_sec = f(&|r| r.load.frames_per_sec);
    out.load.mb_per_sec = f(&|r| r.load.mb_per_sec);
    out.load.p50_us = f(&|r| r.load.p50_us);
    out.load.p99_us = f(&|r| r.load.p99_us);
    out.load.p999_us = f(&|r| r.load.p999_us);
    out.load.max_us = f(&|r| r.load.max_us);
    out.load.gen_cpu_secs = f(&|r| r.load.gen_cpu_secs);
    // Keep CPU per frame consistent: median of the ratio, expressed over
    // the median frame count.
    let cpf = f(&|r| r.cpu_per_frame_us());
    out.load.frames = f(&|r| r.load.frames as f64) as u64;
    out.server_cpu_secs = cpf * out.load.frames as f64 / 1e6;
    out.server_rss = f(&|r| r.server_rss as f64) as u64;
    let spk = f(&|r| r.sleeps_per_kframe());
    out.server_sleeps = (spk * out.load.frames as f64 / 1e3).round() as u64;
    out.noise_pct = f(&|r| r.noise_pct);
    out.load.lost = runs.iter().map(|r| r.load.lost).sum();
    out.load.mismatches = runs.iter().map(|r| r.load.mismatches).sum();
    out.load.conn_errors = runs.iter().map(|r| r.load.conn_errors).sum();
    out.error = runs.iter().find_map(|r| r.error.clone());
    out
}

fn header() -> String {
    format!(
        "{:<22} {:<11} {:>3} {:>11} {:>9} {:>8} {:>8} {:>9} {:>10} {:>7} {:>10} {:>9} {:>6} {:>6}",
        "scenario",
        "server",
        "P",
        "frames/s",
        "MB/s",
        "p50 us",
        "p99 us",
        "p999 us",
        "srv us/fr",
        "srv %",
        "sleeps/kfr",
        "srv RSS",
        "gen %",
        "noise%"
    )
}

fn line(r: &Row) -> String {
    format!(
        "{:<22} {:<11} {:>3} {:>11.0} {:>9.1} {:>8.0} {:>8.0} {:>9.0} {:>10.3} {:>7.1} {:>10.1} {:>8.1}M {:>6.0} {:>6.1}",
        r.scenario.name(),
        label(&r.kind),
        r.load.pipeline,
        r.load.frames_per_sec,
        r.load.mb_per_sec,
        r.load.p50_us,
        r.load.p99_us,
        r.load.p999_us,
        r.cpu_per_frame_us(),
        r.server_cpu_pct(),
        r.sleeps_per_kframe(),
        r.server_rss as f64 / (1 << 20) as f64,
        100.0 * r.load.gen_cpu_secs / r.load.secs.max(1e-9),
        r.noise_pct,
    )
}

/// netloom's ratios to the other kinds in one scenario.
#[derive(Debug, Clone, Copy)]
pub struct Ratio {
    pub frames: f64,
    pub cpu: f64,
    pub p99: f64,
}

fn ratio(rows: &[Row], other: &str) -> Option<Ratio> {
    let n = rows.iter().find(|r| r.kind == "netloom" && r.ok())?;
    let o = rows.iter().find(|r| r.kind == other && r.ok())?;
    Some(Ratio {
        frames: n.load.frames_per_sec / o.load.frames_per_sec,
        cpu: n.cpu_per_frame_us() / o.cpu_per_frame_us(),
        p99: n.load.p99_us / o.load.p99_us,
    })
}

/// The baselines netloom is compared with: kind and the name printed.
const OTHERS: &[(&str, &str)] = &[("mio", "floor"), ("tokio", "tokio")];

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
fn paired(runs: &[Vec<Row>], kinds: &[String], other: &str) -> Option<Paired> {
    let at = |k: &str| kinds.iter().position(|x| x == k);
    let (n, o) = (&runs[at("netloom")?], &runs[at(other)?]);
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

fn ratios(rows: &[Row]) -> Option<String> {
    let mut parts = Vec::new();
    for &(other, name) in OTHERS {
        if let Some(r) = ratio(rows, other) {
            parts.push(format!(
                "netloom/{name}: frames/s {:.2}x, CPU/frame {:.2}x, p99 {:.2}x",
                r.frames, r.cpu, r.p99
            ));
        }
    }
    (!parts.is_empty()).then(|| parts.join(" | "))
}

/// The issue's targets, checked against this run. With repeated rounds
/// the ratios judged are the paired ones (the median of the per-round
/// ratios); for the headline the ratio of the medians is shown next to
/// them.
fn targets(rows: &[Row], pairs: &[(Scenario, &str, Paired)]) -> Vec<String> {
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

/// The CSV columns of one run (or of a scenario's medians).
const CSV_HEADER: &str = "scenario,loops,conns,pipeline,pipeline_used,size,server,frames_per_sec,\
    mb_per_sec,p50_us,p99_us,p999_us,max_us,server_cpu_us_per_frame,server_cpu_pct,\
    server_sleeps_per_kframe,server_rss_bytes,generator_cpu_pct,noise_pct,frames,lost,mismatches,conn_errors,ok";

fn csv_line(r: &Row) -> String {
    let s = r.scenario;
    format!(
        "{},{},{},{},{},{},{},{:.0},{:.2},{:.1},{:.1},{:.1},{:.1},{:.4},{:.1},{:.2},{},{:.1},{:.1},{},{},{},{},{}",
        s.name(),
        s.loops,
        s.conns,
        s.pipeline,
        r.load.pipeline,
        s.size,
        r.kind,
        r.load.frames_per_sec,
        r.load.mb_per_sec,
        r.load.p50_us,
        r.load.p99_us,
        r.load.p999_us,
        r.load.max_us,
        r.cpu_per_frame_us(),
        r.server_cpu_pct(),
        r.sleeps_per_kframe(),
        r.server_rss,
        100.0 * r.load.gen_cpu_secs / r.load.secs.max(1e-9),
        r.noise_pct,
        r.load.frames,
        r.load.lost,
        r.load.mismatches,
        r.load.conn_errors,
        r.ok()
    )
}

fn write_outputs(
    out: &Path,
    command: &str,
    rows: &[Row],
    every_run: &[(usize, Row)],
    pairs: &[(Scenario, &str, Paired)],
) -> Result<(), String> {
    let w = |name: &str, text: &str| {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    // CSV: the medians, and every run with its round
    let mut csv = format!("{CSV_HEADER}\n");
    for r in rows {
        let _ = writeln!(csv, "{}", csv_line(r));
    }
    let mut runs_csv = format!("round,{CSV_HEADER}\n");
    for (round, r) in every_run {
        let _ = writeln!(runs_csv, "{round},{}", csv_line(r));
    }
    w("runs.csv", &runs_csv)?;
    w("results.csv", &csv)?;

    // JSON (flat; no serde needed)
    let mut json = format!(
        "{{\n  \"command\": {:?},\n  \"machine\": {:?},\n  \"rows\": [\n",
        command,
        crate::os::machine()
    );
    for (i, r) in rows.iter().enumerate() {
        let s = r.scenario;
        let num = |v: f64| {
            if v.is_finite() {
                format!("{v:.4}")
            } else {
                "null".into()
            }
        };
        let _ = writeln!(
            json,
            "    {{\"scenario\": \"{}\", \"loops\": {}, \"conns\": {}, \"pipeline\": {}, \
             \"pipeline_used\": {}, \"size\": {}, \"server\": \"{}\", \"frames_per_sec\": {}, \
             \"mb_per_sec\": {}, \"p50_us\": {}, \"p99_us\": {}, \"p999_us\": {}, \
             \"server_cpu_us_per_frame\": {}, \"server_cpu_pct\": {}, \"server_sleeps_per_kframe\": {}, \
             \"server_rss_bytes\": {}, \
             \"ok\": {}}}{}",
            s.name(),
            s.loops,
            s.conns,
            s.pipeline,
            r.load.pipeline,
            s.size,
            r.kind,
            num(r.load.frames_per_sec),
            num(r.load.mb_per_sec),
            num(r.load.p50_us),
            num(r.load.p99_us),
            num(r.load.p999_us),
            num(r.cpu_per_frame_us()),
            num(r.server_cpu_pct()),
            num(r.sleeps_per_kframe()),
            r.server_rss,
            r.ok(),
            if i + 1 < rows.len() { "," } else { "" }
        );
    }
    json.push_str("  ]\n}\n");
    w("results.json", &json)?;

    // Markdown: one table per (loops, P, S) group, rows by connections.
    w("results.md", &markdown(command, rows, pairs))?;

    // Charts: throughput and CPU per frame vs connections, per group.
    for (loops, p, size) in groups(rows) {
        let pick = |r: &&Row| {
            r.scenario.loops == loops
                && r.scenario.pipeline == p
                && r.scenario.size == size
                && r.ok()
        };
        let series = |metric: &dyn Fn(&Row) -> f64| -> Vec<Series> {
            kinds(rows)
                .into_iter()
                .map(|k| {
                    let mut pts: Vec<(f64, f64)> = rows
                        .iter()
                        .filter(pick)
                        .filter(|r| r.kind == k)
                        .map(|r| (r.scenario.conns as f64, metric(r)))
                        .collect();
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    (label(&k).to_string(), pts)
                })
                .filter(|(_, pts)| !pts.is_empty())
                .collect()
        };
        let tag = format!("l{loops}-p{p}-{}", fmt_size(size));
        chart::log_log(
            &out.join(format!("throughput-{tag}.svg")),
            &format!(
                "Echo throughput, {loops} loop(s), P={p}, {} bodies",
                fmt_size(size)
            ),
            "connections",
            "frames/s",
            &series(&|r| r.load.frames_per_sec),
        )?;
        chart::log_log(
            &out.join(format!("cpu-per-frame-{tag}.svg")),
            &format!(
                "Server CPU per echoed frame, {loops} loop(s), P={p}, {} bodies",
                fmt_size(size)
            ),
            "connections",
            "server CPU us / frame",
            &series(&|r| r.cpu_per_frame_us()),
        )?;
    }
    Ok(())
}

fn kinds(rows: &[Row]) -> Vec<String> {
    let mut k: Vec<String> = Vec::new();
    for r in rows {
        if !k.contains(&r.kind) {
            k.push(r.kind.clone());
        }
    }
    k
}

fn groups(rows: &[Row]) -> Vec<(usize, usize, usize)> {
    let mut g = Vec::new();
    for r in rows {
        let key = (r.scenario.loops, r.scenario.pipeline, r.scenario.size);
        if !g.contains(&key) {
            g.push(key);
        }
    }
    g
}

fn markdown(command: &str, rows: &[Row], pairs: &[(Scenario, &str, Paired)]) -> String {
    let mut md = format!(
        "<!-- generated by `{command}` -->\n\nMachine: {}\n\n",
        crate::os::machine()
    );
    for (loops, p, size) in groups(rows) {
        let _ = writeln!(
            md,
            "#### {loops} loop(s), P={p}, {} bodies\n\n\
             | conns | server | P used | frames/s | MB/s | p50 us | p99 us | p999 us | server CPU us/frame | server CPU % | netloom/this frames/s | netloom/this CPU/frame | netloom/this p99 |\n\
             |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            fmt_size(size)
        );
        let mut conns: Vec<usize> = rows
            .iter()
            .filter(|r| {
                r.scenario.loops == loops && r.scenario.pipeline == p && r.scenario.size == size
            })
            .map(|r| r.scenario.conns)
            .collect();
        conns.dedup();
        for c in conns {
            let group: Vec<Row> = rows
                .iter()
                .filter(|r| {
                    r.scenario
                        == Scenario {
                            loops,
                            conns: c,
                            pipeline: p,
                            size,
                        }
                })
                .cloned()
                .collect();
            for r in &group {
                let rel = if r.kind == "netloom" {
                    "| | | ".to_string()
                } else {
                    match ratio(&group, &r.kind) {
                        Some(x) => format!("| {:.2}x | {:.2}x | {:.2}x ", x.frames, x.cpu, x.p99),
                        None => "| | | ".to_string(),
                    }
                };
                let _ = writeln!(
                    md,
                    "| {} | {}{} | {} | {:.0} | {:.1} | {:.0} | {:.0} | {:.0} | {:.3} | {:.0} {}|",
                    c,
                    label(&r.kind),
                    if r.ok() { "" } else { " (FAILED)" },
                    r.load.pipeline,
                    r.load.frames_per_sec,
                    r.load.mb_per_sec,
                    r.load.p50_us,
                    r.load.p99_us,
                    r.load.p999_us,
                    r.cpu_per_frame_us(),
                    r.server_cpu_pct(),
                    rel
                );
            }
        }
        md.push('\n');
    }
    md.push_str("```text\n");
    for t in targets(rows, pairs) {
        md.push_str(&t);
        md.push('\n');
    }
    md.push_str("```\n");
    md
}
