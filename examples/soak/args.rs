//! The soak's flags: how long, where to write, and how many of each kind
//! of client (every count bounded, so that a run stays far below the
//! machine's 20,000 open files).

use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str =
    "usage: soak [--minutes M] [--out DIR] [--loops N] [--echo N] [--honest N] \
    [--churn N] [--churn-rate PER_S] [--slow N] [--idle N] [--high-water BYTES] \
    [--peer-up SECS] [--peer-down SECS] [--rss-margin PERCENT] [--rss-slack-mib MIB]";

/// What `--help` and the module docs list, with the defaults.
#[derive(Debug, Clone)]
pub struct Args {
    /// How long the load runs (fractions allowed: `--minutes 0.5`).
    pub duration: Duration,
    /// Where the CSV, the SVG and the summary go.
    pub out: PathBuf,
    /// Event loops of each server.
    pub loops: usize,
    /// Steady echo clients per transport (TCP, TLS, ws, wss, UDP).
    pub echo: usize,
    /// Honest full-speed clients per stream transport (TCP, TLS, ws, wss).
    pub honest: usize,
    /// Churn threads, and the connections they open per second in all.
    pub churn: usize,
    pub churn_rate: u64,
    /// Slow-peer threads (one never-reading peer at a time each).
    pub slow: usize,
    /// Idle TCP connections held all along (one message every 10 s each).
    pub idle: usize,
    /// The servers' write high-water mark.
    pub high_water: usize,
    /// The dialed peer's up and down periods.
    pub peer_up: Duration,
    pub peer_down: Duration,
    /// How far the last window's RSS (and live heap) may rise over the
    /// first plateau's: this many percent, or `rss_slack` if that is more.
    pub rss_margin_percent: f64,
    pub rss_slack: u64,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            duration: Duration::from_secs(600),
            out: PathBuf::from("target/soak"),
            loops: 2,
            echo: 4,
            honest: 1,
            churn: 2,
            churn_rate: 40,
            slow: 2,
            idle: 1000,
            high_water: 1 << 20,
            peer_up: Duration::from_secs(20),
            peer_down: Duration::from_secs(3),
            rss_margin_percent: 20.0,
            rss_slack: 8 << 20,
        }
    }
}

impl Args {
    pub fn parse(argv: &[String]) -> Result<Args, String> {
        let mut a = Args::default();
        let mut it = argv.iter();
        while let Some(flag) = it.next() {
            if flag == "--help" || flag == "-h" {
                return Err(USAGE.into());
            }
            let value = it
                .next()
                .ok_or_else(|| format!("{flag}: missing value\n{USAGE}"))?;
            let num = || -> Result<f64, String> {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| format!("{flag}: not a number: {value}"))
            };
            let count = |max: f64| -> Result<usize, String> {
                let v = num()?;
                if v > max {
                    return Err(format!("{flag}: at most {max}"));
                }
                Ok(v as usize)
            };
            match flag.as_str() {
                "--minutes" => {
                    a.duration = Duration::from_secs_f64(num()?.clamp(0.1, 240.0) * 60.0)
                }
                "--out" => a.out = PathBuf::from(value),
                "--loops" => a.loops = count(16.0)?.max(1),
                "--echo" => a.echo = count(64.0)?,
                "--honest" => a.honest = count(16.0)?,
                "--churn" => a.churn = count(16.0)?,
                "--churn-rate" => a.churn_rate = count(1000.0)? as u64,
                "--slow" => a.slow = count(16.0)?,
                "--idle" => a.idle = count(5000.0)?,
                "--high-water" => a.high_water = count((64 << 20) as f64)?.max(64 << 10),
                "--peer-up" => a.peer_up = Duration::from_secs_f64(num()?.clamp(1.0, 600.0)),
                "--peer-down" => a.peer_down = Duration::from_secs_f64(num()?.clamp(0.1, 60.0)),
                "--rss-margin" => a.rss_margin_percent = num()?,
                "--rss-slack-mib" => a.rss_slack = (num()? * 1048576.0) as u64,
                _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
            }
        }
        Ok(a)
    }
}
