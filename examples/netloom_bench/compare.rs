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
//!
//! This file: the scenarios, the options, and the run over every scenario
//! and kind. `compare/run.rs`: one kind in one scenario (the server child,
//! the generator, the samples at the window's edges), redone while noisy,
//! and the median of repeated runs. `compare/ratios.rs`: netloom's ratios
//! to the baselines, paired round by round, and the targets.
//! `compare/report.rs`: the printed table, CSV, JSON, Markdown and charts.

mod ratios;
mod report;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use crate::args::{fmt_size, parse_duration, parse_size, Args};
use crate::load::LoadReport;
use ratios::{paired, paired_of, ratios, targets, Paired, EXEC_PAIRS, OTHERS};
use report::{header, line, write_outputs};
use run::{median, run_quiet};

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
    /// `--json`: JSON bodies (a three-field struct), for the JSON kinds.
    json: bool,
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
        "json",
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
        json: args.flag("json"),
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
        let every_kind = runs.clone();
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
        let exec_pairs: Vec<String> = EXEC_PAIRS
            .iter()
            .filter_map(|&(kind, other, name)| {
                let p = paired_of(&every_kind, &opts.kinds, kind, other)?;
                Some(format!(
                    "{name}: frames/s {}, CPU/frame {}, p99 {}",
                    p.frames, p.cpu, p.p99
                ))
            })
            .collect();
        if !exec_pairs.is_empty() {
            println!("    other kinds, paired: {}", exec_pairs.join(" | "));
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
