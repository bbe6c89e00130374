//! One server kind in one scenario: a pinned `serve` child, the generator
//! in this process, and the server's CPU time, sleeps and RSS (and the
//! other programs' share of the watched CPUs) sampled at the edges of the
//! measurement window; a run redone while too noisy, and the median of
//! repeated runs.

use std::time::Duration;

use super::{label, Options, Row, Scenario};
use crate::child::ServerChild;
use crate::load::{self, LoadConfig, LoadReport, Phase};

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
        json: opts.json,
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
pub(super) fn run_quiet(opts: &Options, sc: Scenario, kind: &str) -> Row {
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
pub(super) fn median(mut runs: Vec<Row>) -> Row {
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
