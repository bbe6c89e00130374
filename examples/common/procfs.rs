//! A process's resident set size and open descriptors from /proc (Linux;
//! `None` elsewhere). Shared by `netloom_bench`, `hostile` and `soak`,
//! included with `#[path = ".../common/procfs.rs"]`.

/// Resident set size of process `pid` in bytes (`VmRSS` of
/// /proc/PID/status).
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Open descriptors of process `pid` (entries of /proc/PID/fd).
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Bytes the C allocator (glibc malloc) has handed out and not got back,
/// over all its arenas (`mallinfo2().uordblks`): Rust's heap and C
/// libraries' (aws-lc-rs) together. `None` off glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn malloc_in_use() -> Option<u64> {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct.
    let info = unsafe { libc::mallinfo2() };
    Some(info.uordblks as u64)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn malloc_in_use() -> Option<u64> {
    None
}
