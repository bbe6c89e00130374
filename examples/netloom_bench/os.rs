//! Everything the benchmark asks the OS: CPU pinning, the fd limit, a
//! process's CPU time, RSS and open descriptors from /proc. Linux only; on
//! other systems the probes return `None` and pinning does nothing.

use std::io;
use std::time::Duration;

#[allow(dead_code)] // malloc_in_use is not needed here
#[path = "../common/procfs.rs"]
mod procfs;

/// Pin the calling thread (and the threads it spawns later) to `cpus`.
/// Empty `cpus`: leave the affinity alone.
#[cfg(target_os = "linux")]
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: cpu_set_t is plain data; zeroed is the empty set, CPU_SET
    // writes inside it for indices below CPU_SETSIZE (checked), and
    // sched_setaffinity only reads the set we pass with its exact size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cpu index too large",
                ));
            }
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn pin_current_thread(_cpus: &[usize]) -> io::Result<()> {
    Ok(())
}

/// Raise RLIMIT_NOFILE's soft limit to the hard limit; returns
/// `(soft, hard)` after the change.
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    // SAFETY: getrlimit/setrlimit read and write one rlimit struct that we
    // own for the duration of the call.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return Err(io::Error::last_os_error());
        }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok((rl.rlim_cur as u64, rl.rlim_max as u64))
    }
}

/// Defer the source port choice of a socket bound to an explicit address
/// until `connect` (Linux IP_BIND_ADDRESS_NO_PORT); a no-op elsewhere.
pub fn bind_address_no_port(sock: &socket2::Socket) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from `one`,
        // which lives across the call; the fd is owned by `sock`.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = sock;
    Ok(())
}

/// Clock ticks per second of /proc's CPU times.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// User + system CPU time of process `pid` (all its threads), from
/// /proc/<pid>/stat.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    cpu_times(pid).map(|(u, s)| u + s)
}

/// (user, system) CPU time of process `pid` (all its threads).
pub fn cpu_times(pid: u32) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields count from after ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime) are 11 and 12 after ')'.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let hz = clock_ticks();
    let d = |t: u64| Duration::from_nanos(t * 1_000_000_000 / hz);
    Some((d(utime), d(stime)))
}

/// Time of the listed CPUs from /proc/stat: (user + nice + steal,
/// user + nice + system + steal). Compared with our own processes' CPU
/// time, it shows how much other programs (say, a compiler) ran there.
/// Interrupt and softirq time are left out: loopback packets are processed
/// in softirq context, often charged to no process, and would look like
/// someone else's work.
pub fn cpus_time(cpus: &[usize]) -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let (mut user, mut all) = (0u64, 0u64);
    for &cpu in cpus {
        let name = format!("cpu{cpu} ");
        let line = stat.lines().find(|l| l.starts_with(&name))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let u = f.first()? + f.get(1)? + f.get(7)?;
        user += u;
        all += u + f.get(2)?;
    }
    let d = |t: u64| Duration::from_nanos(t * 1_000_000_000 / clock_ticks());
    Some((d(user), d(all)))
}

/// Resident set size of process `pid` in bytes (VmRSS).
pub fn rss(pid: u32) -> Option<u64> {
    procfs::rss(pid)
}

/// Open descriptors of process `pid`.
pub fn fd_count(pid: u32) -> Option<usize> {
    procfs::fd_count(pid)
}

/// Voluntary context switches of process `pid`, summed over its threads
/// (`voluntary_ctxt_switches` of /proc/<pid>/task/*/status): how often its
/// threads blocked, which for an event loop is how often it went to sleep
/// in the poller and had to be woken for the next packet.
pub fn voluntary_switches(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut sum = 0;
    for task in tasks.flatten() {
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        sum += switches_in(&status)?;
    }
    Some(sum)
}

/// The `voluntary_ctxt_switches` count of one /proc status file.
fn switches_in(status: &str) -> Option<u64> {
    let key = "voluntary_ctxt_switches:";
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].trim().parse().ok()
}

/// The soft "Max open files" limit of process `pid`.
pub fn fd_limit(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Number of online CPUs (not only those this thread may run on: pinning
/// narrows `available_parallelism`).
pub fn cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as usize
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// A one-line description of the machine (CPU model, cores, memory,
/// kernel) for reports.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |s| s.trim().to_string());
    let mem_gib = status_meminfo("MemTotal:").map_or(0.0, |kb| kb as f64 / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".into(), |s| s.trim().to_string());
    format!(
        "{model}, {} CPUs, {mem_gib:.0} GiB RAM, Linux {kernel}",
        cpus()
    )
}

fn status_meminfo(key: &str) -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_thread_counts_a_voluntary_switch() {
        let own = || {
            let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            switches_in(&status).unwrap()
        };
        let before = own();
        // The sleep is what is measured: blocking is a voluntary switch.
        std::thread::sleep(Duration::from_millis(1));
        assert!(own() > before);
        assert!(voluntary_switches(std::process::id()).unwrap() > 0);
    }
}
