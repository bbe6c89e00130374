//! A benchmark server in a child process: `netloom_bench serve KIND`,
//! pinned to its CPUs, alive exactly as long as its stdin is open.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a child may take to print `LISTENING`.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a child may take to exit once its stdin is closed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server child. Dropping it stops the child (closes its stdin,
/// waits, and kills it by pid if it does not exit in time).
#[derive(Debug)]
pub struct ServerChild {
    child: Child,
    stdin: Option<ChildStdin>,
    pub pid: u32,
    pub addr: SocketAddr,
    pub kind: String,
}

/// The `netloom_bench` executable: this one, or the one next to it (for
/// `c1000k`, which lives in the same `examples/` directory).
pub fn bench_exe() -> Result<PathBuf, String> {
    let me = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    if me
        .file_stem()
        .is_some_and(|s| s.to_string_lossy().starts_with("netloom_bench"))
    {
        return Ok(me);
    }
    let sibling = me.with_file_name(format!("netloom_bench{}", std::env::consts::EXE_SUFFIX));
    if sibling.exists() {
        Ok(sibling)
    } else {
        Err(format!(
            "{} not found: build it first with `cargo build --release --example netloom_bench`",
            sibling.display()
        ))
    }
}

impl ServerChild {
    /// Start `serve KIND --loops LOOPS --cpus CPUS EXTRA...` and wait for
    /// its `LISTENING <addr>` line.
    pub fn spawn(
        kind: &str,
        loops: usize,
        cpus: &[usize],
        extra: &[String],
    ) -> Result<ServerChild, String> {
        let exe = bench_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("serve")
            .arg(kind)
            .args(["--loops", &loops.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !cpus.is_empty() {
            let list: Vec<String> = cpus.iter().map(|c| c.to_string()).collect();
            cmd.args(["--cpus", &list.join(",")]);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn serve {kind}: {e}"))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // The reader thread ends when the child closes stdout (at exit).
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let mut me = ServerChild {
            child,
            stdin,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            kind: kind.to_string(),
        };
        let line = rx
            .recv_timeout(START_TIMEOUT)
            .map_err(|_| format!("serve {kind} (pid {pid}) did not report LISTENING"))?;
        me.addr = line
            .strip_prefix("LISTENING ")
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| format!("serve {kind}: unexpected first line {line:?}"))?;
        Ok(me)
    }

    /// Close stdin and wait for the exit; kill the child (by its pid) if
    /// it is still running after a bound.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        eprintln!(
            "serve {} (pid {}) did not exit; killing it",
            self.kind, self.pid
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            self.stop_inner();
        }
    }
}
