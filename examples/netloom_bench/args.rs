//! A tiny command-line parser: positional words and `--key value` /
//! `--flag` options, with typed getters that name the bad option.

use std::collections::HashMap;
use std::str::FromStr;

/// Parsed arguments of one subcommand.
#[derive(Debug, Default)]
pub struct Args {
    pub positional: Vec<String>,
    options: HashMap<String, Option<String>>,
}

impl Args {
    /// Parse `args`; options listed in `flags` take no value.
    pub fn parse(args: impl IntoIterator<Item = String>, flags: &[&str]) -> Result<Args, String> {
        let mut out = Args::default();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if let Some((k, v)) = name.split_once('=') {
                    out.options.insert(k.to_string(), Some(v.to_string()));
                } else if flags.contains(&name) {
                    out.options.insert(name.to_string(), None);
                } else {
                    let v = it.next().ok_or(format!("--{name} needs a value"))?;
                    out.options.insert(name.to_string(), Some(v));
                }
            } else {
                out.positional.push(a);
            }
        }
        Ok(out)
    }

    /// Was `--name` given?
    pub fn flag(&self, name: &str) -> bool {
        self.options.contains_key(name)
    }

    /// The raw value of `--name`.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.options.get(name).and_then(|v| v.as_deref())
    }

    /// `--name` parsed as `T`, or `default`.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.str(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("bad value for --{name}: {v}")),
        }
    }

    /// `--name` as a comma-separated list of `T`, or `default`.
    pub fn list<T: FromStr>(&self, name: &str, default: Vec<T>) -> Result<Vec<T>, String> {
        match self.str(name) {
            None => Ok(default),
            Some(v) => v
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.trim()
                        .parse()
                        .map_err(|_| format!("bad item in --{name}: {s}"))
                })
                .collect(),
        }
    }

    /// Reject options not in `known`.
    pub fn check(&self, known: &[&str]) -> Result<(), String> {
        for k in self.options.keys() {
            if !known.contains(&k.as_str()) {
                return Err(format!("unknown option --{k}"));
            }
        }
        Ok(())
    }
}

/// A size like `64`, `4k`, `4KiB`, `1m`, `1MiB` in bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<usize>()
        .map(|n| n * mul)
        .map_err(|_| format!("bad size: {s}"))
}

/// A size in bytes for humans: `64B`, `4KiB`, `1MiB`.
pub fn fmt_size(n: usize) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{}MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{}KiB", n >> 10)
    } else {
        format!("{n}B")
    }
}

/// A duration like `3`, `3s`, `2.5s`, `500ms`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let bad = || format!("bad duration: {s}");
    if let Some(us) = t.strip_suffix("us") {
        return us
            .parse::<u64>()
            .map(std::time::Duration::from_micros)
            .map_err(|_| bad());
    }
    match t.strip_suffix("ms") {
        Some(ms) => ms
            .parse::<u64>()
            .map(std::time::Duration::from_millis)
            .map_err(|_| bad()),
        None => t
            .trim_end_matches('s')
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64").unwrap(), 64);
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("1m").unwrap(), 1 << 20);
        assert_eq!(fmt_size(4096), "4KiB");
    }
}
