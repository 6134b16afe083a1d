//! Process metrics under the names every Prometheus client uses (`process_resident_memory_bytes`,
//! `process_open_fds`, `process_max_fds`, `process_cpu_seconds_total`,
//! `process_start_time_seconds`), read from /proc/self at each scrape; and [`give_back_memory`],
//! which returns what the allocator keeps of a peak once the engines are idle.
//!
//! Why a reader of our own rather than the `prometheus` crate's `process` feature: that feature
//! brings in `procfs` and its dependencies for five numbers that are three small files away,
//! and this project keeps its dependency tree short (one crypto provider, no default features).
//! /proc/self stays readable under the unit's ProtectProc=invisible (it hides other processes).

/// One reading of the process's own figures; a field is `None` when its file could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessSample {
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

/// Reads /proc/self now.
pub fn sample() -> ProcessSample {
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let stat = stat.as_deref().and_then(parse_stat);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| boot_time(&s));
    let ticks = (ticks > 0).then_some(ticks as f64);
    ProcessSample {
        resident_bytes: std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|pages| pages * page.max(0) as u64),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
        max_fds: std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| max_open_files(&s)),
        cpu_seconds: stat.zip(ticks).map(|(s, t)| (s.utime + s.stime) as f64 / t),
        start_time_seconds: stat
            .zip(ticks)
            .zip(boot)
            .map(|((s, t), boot)| boot as f64 + s.starttime as f64 / t),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// Fields 14, 15 and 22 of /proc/self/stat (proc(5)); the command name (field 2) may hold
/// spaces and parentheses, so counting starts after its last `)`.
fn parse_stat(s: &str) -> Option<Stat> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

/// `btime` of /proc/stat: boot time in seconds since the epoch.
fn boot_time(s: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// The soft limit of `Max open files` in /proc/self/limits.
fn max_open_files(s: &str) -> Option<u64> {
    s.lines().find_map(|l| {
        l.strip_prefix("Max open files")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Returns the free memory the allocator holds to the OS (glibc keeps freed chunks of a peak in
/// its arenas, one per thread that allocated, and hands back only the top of each heap itself).
/// Called when the engines have become idle; a no-op on other C libraries.
pub fn give_back_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes the arena locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 3 0 12345 1000 50";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 7,
                stime: 3,
                starttime: 12345
            })
        );
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        assert_eq!(
            max_open_files("Limit Soft Hard Units\nMax open files 1024 4096 files\n"),
            Some(1024)
        );
    }

    #[test]
    fn this_process_reads_plausibly() {
        let s = sample();
        assert!(s.resident_bytes.is_some_and(|b| b > 1 << 20), "{s:?}");
        assert!(s.open_fds.is_some_and(|n| n >= 3), "{s:?}");
        assert!(s.max_fds.is_some_and(|n| n >= s.open_fds.unwrap()), "{s:?}");
        assert!(s.cpu_seconds.is_some_and(|c| c >= 0.0), "{s:?}");
        let start = s.start_time_seconds.expect("start time");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start} vs {now}"
        );
    }
}
