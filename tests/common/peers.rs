//! The third-party peers some tests talk to: python3, Python's
//! `websockets`, openssl, curl, Chromium, redis-server, and iproute2's `ip`
//! and `nft` (the network-fault tests). `scripts/test` installs them.
//!
//! A test asks for its peer first thing, on its own thread:
//!
//! ```ignore
//! let Some(py) = require(Peer::Python3) else { return };
//! ```
//!
//! If the peer is missing the test fails, saying how to install it. With
//! `NETLOOM_SKIP_MISSING_PEERS=1` it returns early instead: it says
//! `SKIPPED` on stderr and appends its name to a file under
//! `target/skipped-tests/` (one file per test process, so parallel test
//! threads and several test binaries never share one), which
//! `scripts/test` counts and lists after cargo's output. cargo still shows
//! such a test as `ok`; the summary is where it is reported as skipped.
//!
//! A test that cannot run on this machine for another reason (no IPv6
//! loopback, one CPU) calls [`skip`] the same way, so it is counted and
//! named in the same summary.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The opt-out: with this set to `1`, a missing peer skips its test.
pub const OPT_OUT: &str = "NETLOOM_SKIP_MISSING_PEERS";

/// Where skipped tests record themselves, under cargo's target directory.
pub const SKIPPED_DIR: &str = "skipped-tests";

/// The venv `scripts/test` makes, under cargo's target directory.
pub const VENV: &str = "test-venv";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// CPython 3 (`python3`): its `socket` and `ssl` modules.
    Python3,
    /// A Python that can `import websockets.sync.client`: `NETLOOM_PY` if
    /// set (and then only it), else `target/test-venv/bin/python`, else
    /// `python3`.
    PyWebsockets,
    /// `openssl` (its `s_client`).
    Openssl,
    /// `curl`.
    Curl,
    /// Headless Chromium (`chromium` or `chromium-browser`).
    Chromium,
    /// `redis-server`, the cluster tests' broker (started by the tests).
    RedisServer,
    /// iproute2's `ip` (network namespaces and veth pairs).
    Iproute2,
    /// `nft` (nftables: the network-fault tests' drop and loss rules).
    Nft,
}

impl Peer {
    fn describe(self) -> &'static str {
        match self {
            Peer::Python3 => "python3",
            Peer::PyWebsockets => "Python `websockets` (>= 11)",
            Peer::Openssl => "openssl",
            Peer::Curl => "curl",
            Peer::Chromium => "Chromium",
            Peer::RedisServer => "redis-server",
            Peer::Iproute2 => "iproute2 (`ip`)",
            Peer::Nft => "nftables (`nft`)",
        }
    }

    /// Programs to try, in order, and the arguments that must succeed.
    fn candidates(self) -> (Vec<String>, &'static [&'static str]) {
        let own = |s: &[&str]| s.iter().map(|p| p.to_string()).collect();
        match self {
            Peer::Python3 => (own(&["python3"]), &["--version"]),
            Peer::PyWebsockets => {
                let programs = match std::env::var("NETLOOM_PY") {
                    Ok(py) if !py.is_empty() => vec![py],
                    _ => {
                        let venv = target_dir().join(VENV).join("bin").join("python");
                        vec![venv.to_string_lossy().into_owned(), "python3".into()]
                    }
                };
                (programs, &["-c", "import websockets.sync.client"])
            }
            Peer::Openssl => (own(&["openssl"]), &["version"]),
            Peer::Curl => (own(&["curl"]), &["--version"]),
            Peer::Chromium => (own(&["chromium", "chromium-browser"]), &["--version"]),
            Peer::RedisServer => (own(&["redis-server"]), &["--version"]),
            Peer::Iproute2 => (own(&["ip"]), &["-V"]),
            Peer::Nft => (own(&["nft"]), &["--version"]),
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Peer::Python3 => "run `scripts/test` (as root it installs the Debian package `python3`), or `apt-get install python3`",
            Peer::PyWebsockets => "run `scripts/test` (it makes a venv in target/test-venv and runs `pip install websockets` there), or `pip install websockets` into some Python and point NETLOOM_PY at that interpreter",
            Peer::Openssl => "run `scripts/test` (as root it installs the Debian package `openssl`), or `apt-get install openssl`",
            Peer::Curl => "run `scripts/test` (as root it installs the Debian package `curl`), or `apt-get install curl`",
            Peer::Chromium => "run `scripts/test` (as root it installs the Debian package `chromium`), or `apt-get install chromium`",
            Peer::RedisServer => "run `scripts/test` (as root it installs the Debian package `redis-server`), or `apt-get install redis-server` (the tests start their own on a loopback port; no service is needed)",
            Peer::Iproute2 => "run `scripts/test` (as root it installs the Debian package `iproute2`), or `apt-get install iproute2`",
            Peer::Nft => "run `scripts/test` (as root it installs the Debian package `nftables`), or `apt-get install nftables`",
        }
    }
}

/// The program to run for `peer`. If it is missing, panics with how to
/// install it; under `NETLOOM_SKIP_MISSING_PEERS=1` records the calling
/// test as skipped and returns `None` (the test then returns at once).
/// Call it on the test's own thread: the test is named after the thread.
#[must_use = "a test must return when its peer is missing"]
pub fn require(peer: Peer) -> Option<String> {
    if let Some(program) = find(peer) {
        return Some(program);
    }
    let test = test_name();
    let (tried, _) = peer.candidates();
    let missing = format!(
        "{} is missing (tried: {})",
        peer.describe(),
        tried.join(", ")
    );
    if !opted_out() {
        panic!(
            "{test} cannot run: {missing}.\n  To install it: {}.\n  To skip the tests whose peer is missing instead: {OPT_OUT}=1 scripts/test (they are then listed as skipped at the end).",
            peer.install_hint()
        );
    }
    eprintln!("SKIPPED {test}: {missing} ({OPT_OUT}=1)");
    record_skip(&test, &format!("no {}", peer.describe()));
    None
}

/// Report the calling test as skipped because `why` (it should return
/// right after): said on stderr and counted in `scripts/test`'s summary,
/// so a test that did not run is never only an `ok`.
pub fn skip(why: &str) {
    let test = test_name();
    eprintln!("SKIPPED {test}: {why}");
    record_skip(&test, why);
}

fn opted_out() -> bool {
    std::env::var(OPT_OUT).is_ok_and(|v| v == "1")
}

/// Probe once per process and peer.
fn find(peer: Peer) -> Option<String> {
    static FOUND: Mutex<Option<HashMap<Peer, Option<String>>>> = Mutex::new(None);
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    found
        .get_or_insert_with(HashMap::new)
        .entry(peer)
        .or_insert_with(|| {
            let (programs, args) = peer.candidates();
            programs.into_iter().find(|program| {
                Command::new(program)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
        })
        .clone()
}

/// libtest runs each test on a thread named after it ("ws::python::python_echo").
fn test_name() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    // The binary's name without cargo's hash: "it-0123abcd" -> "it".
    let binary = exe.rsplit_once('-').map_or(exe.as_str(), |(name, _)| name);
    match std::thread::current().name() {
        Some(name) if name != "main" => format!("{binary}::{name}"),
        _ => format!("{binary}::(a test not on its own thread)"),
    }
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `target/`
/// in the package (the same rule as `scripts/test`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Append "test<TAB>why" to this process's file. One `write_all` of a
/// whole line, under a lock, to a file only this process writes.
fn record_skip(test: &str, why: &str) {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = target_dir().join(SKIPPED_DIR);
    let path = dir.join(std::process::id().to_string());
    let line = format!("{test}\t{why}\n");
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?
            .write_all(line.as_bytes())
    });
    if let Err(e) = written {
        panic!(
            "{test}: skipped, but could not record it in {}: {e}",
            path.display()
        );
    }
}
