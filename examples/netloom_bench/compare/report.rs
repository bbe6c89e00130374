//! What a run prints and writes: the table's header and lines, CSV (the
//! medians and every run), JSON, Markdown tables and SVG charts.

use std::fmt::Write as _;
use std::path::Path;

use super::ratios::{ratio, targets, Paired};
use super::{label, Row, Scenario};
use crate::args::fmt_size;
use crate::chart::{self, Series};

pub(super) fn header() -> String {
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

pub(super) fn line(r: &Row) -> String {
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

pub(super) fn write_outputs(
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
