//! The client's own resource use, read from `/proc`: process and per-thread CPU time and peak memory, so a run
//! can tell whether the load generator itself was the limit.

use std::path::Path;

/// Linux reports `/proc` CPU times in USER_HZ ticks, fixed at 100 on every mainstream architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// Whose time a `stat` file's user and system fields hold.
#[derive(Clone, Copy)]
enum Whose {
    /// The process or thread itself (`utime`, `stime`).
    Own,
    /// Its children that have ended and been waited for (`cutime`, `cstime`): what `time` reports of a command.
    WaitedChildren,
}

fn cpu_seconds_from_stat(path: &Path, whose: Whose) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is parenthesised and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user = match whose {
        Whose::Own => 11,
        Whose::WaitedChildren => 13,
    };
    let utime: f64 = fields.get(user)?.parse().ok()?;
    let stime: f64 = fields.get(user + 1)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// CPU seconds (user + system) used by this process so far; 0 where `/proc` is unavailable.
pub fn process_cpu_seconds() -> f64 {
    cpu_seconds_from_stat(Path::new("/proc/self/stat"), Whose::Own).unwrap_or(0.0)
}

/// CPU seconds used by this process's children that have ended and been waited for, as the kernel keeps them
/// for `time`; 0 where `/proc` is unavailable.
pub fn waited_children_cpu_seconds() -> f64 {
    cpu_seconds_from_stat(Path::new("/proc/self/stat"), Whose::WaitedChildren).unwrap_or(0.0)
}

/// The calling thread's id, for `thread_cpu_seconds` later.
pub fn current_thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU seconds used by one thread of this process.
pub fn thread_cpu_seconds(tid: u32) -> Option<f64> {
    cpu_seconds_from_stat(
        Path::new(&format!("/proc/self/task/{tid}/stat")),
        Whose::Own,
    )
}

/// Peak resident memory of this process in bytes (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    peak_rss_bytes_of("self")
}

/// Peak resident memory so far of the process `pid` (a number, or `self`) in bytes; `None` once it has ended.
pub fn peak_rss_bytes_of(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// Raises the open-file soft limit to the hard limit, since every request in flight holds a socket; returns
/// the soft limit now in force, `None` where it is unlimited.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current?;
    // Linux refuses an unlimited open-file count; the kernel's own ceiling is 2^20 by default.
    let ceiling = limit.maximum.unwrap_or(1 << 20);
    if current >= ceiling {
        return Some(current);
    }
    let mut wanted = limit;
    wanted.current = Some(ceiling);
    Some(if setrlimit(Resource::Nofile, wanted).is_ok() {
        ceiling
    } else {
        current
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burning_cpu_shows_up_in_process_and_thread_time() {
        let before = process_cpu_seconds();
        let tid = current_thread_id().expect("linux /proc");
        let thread_before = thread_cpu_seconds(tid).unwrap();
        // Burn until the thread's own clock says so, not for a wall-clock time that a busy machine may not give
        // the thread (bounded, so a broken clock fails instead of spinning forever).
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while thread_cpu_seconds(tid).unwrap() - thread_before < 0.15
            && start.elapsed().as_secs() < 20
        {
            for _ in 0..100_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        assert!(process_cpu_seconds() - before >= 0.1);
        assert!(thread_cpu_seconds(tid).unwrap() - thread_before >= 0.1);
        assert!(peak_rss_bytes().unwrap() > 1 << 20);
    }

    #[test]
    fn a_waited_childs_cpu_is_counted_as_time_counts_it() {
        let before = waited_children_cpu_seconds();
        // A child with a fixed amount of work (tenths of a second of a shell's arithmetic), however busy the machine.
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 300000 ]; do i=$((i + 1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(waited_children_cpu_seconds() - before >= 0.05);
        assert_eq!(peak_rss_bytes_of(&u32::MAX.to_string()), None);
    }
}
