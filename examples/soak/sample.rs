//! One sample a second: elapsed time, the process's RSS and open
//! descriptors, both servers' stats (added), the pool's state, the peer's,
//! and the clients' counts; each written as a CSV row as it is taken.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::procfs;

/// Every figure of one sample by name (the CSV's header), in order.
#[derive(Debug, Clone)]
pub struct Sample {
    pub elapsed: f64,
    pub rss: Option<u64>,
    pub fds: Option<usize>,
    /// The figures' names, shared by every sample (kept for ten minutes).
    names: Arc<[String]>,
    values: Vec<u64>,
}

impl Sample {
    /// A figure by name (0 if it has none).
    pub fn get(&self, name: &str) -> u64 {
        let i = self.names.iter().position(|k| k == name);
        i.map_or(0, |i| self.values[i])
    }
}

/// Takes samples and writes them.
pub struct Sampler {
    start: Instant,
    csv: Option<BufWriter<File>>,
    pub samples: Vec<Sample>,
}

impl Sampler {
    pub fn create(path: &Path, start: Instant) -> std::io::Result<Sampler> {
        Ok(Sampler {
            start,
            csv: Some(BufWriter::new(File::create(path)?)),
            samples: Vec::new(),
        })
    }

    /// Take one sample of `figures` and write it (the header first).
    /// `figures` must name the same figures in the same order each time.
    pub fn take(&mut self, figures: Vec<(String, u64)>) -> std::io::Result<&Sample> {
        let pid = std::process::id();
        let names = match self.samples.first() {
            Some(first) => first.names.clone(),
            None => figures.iter().map(|(k, _)| k.clone()).collect(),
        };
        let s = Sample {
            elapsed: self.start.elapsed().as_secs_f64(),
            rss: procfs::rss(pid),
            fds: procfs::fd_count(pid),
            names,
            values: figures.into_iter().map(|(_, v)| v).collect(),
        };
        if let Some(csv) = self.csv.as_mut() {
            if self.samples.is_empty() {
                writeln!(csv, "elapsed_s,rss_kib,fds,{}", s.names.join(","))?;
            }
            let na = |v: Option<u64>| v.map_or("n/a".to_string(), |v| v.to_string());
            let values: Vec<String> = s.values.iter().map(u64::to_string).collect();
            writeln!(
                csv,
                "{:.1},{},{},{}",
                s.elapsed,
                na(s.rss.map(|b| b / 1024)),
                na(s.fds.map(|n| n as u64)),
                values.join(",")
            )?;
            csv.flush()?;
        }
        self.samples.push(s);
        Ok(self.samples.last().unwrap())
    }

    /// Heap bytes the samples take (what the counting allocator was asked
    /// for them).
    pub fn footprint(&self) -> usize {
        let names: usize = self.samples.first().map_or(0, |s| {
            s.names
                .iter()
                .map(|n| n.capacity() + std::mem::size_of::<String>())
                .sum()
        });
        let values: usize = self.samples.iter().map(|s| s.values.capacity() * 8).sum();
        names + values + self.samples.capacity() * std::mem::size_of::<Sample>()
    }

    /// Close the CSV file (its descriptor counts in the final check).
    pub fn finish(&mut self) -> std::io::Result<()> {
        if let Some(mut csv) = self.csv.take() {
            csv.flush()?;
        }
        Ok(())
    }
}
