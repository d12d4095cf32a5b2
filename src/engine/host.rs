//! Host resources: the CPUs this process may use, its decoding threads, and free memory.

use super::log;

/// The CPUs this process may run on (affinity and cgroup quota included).
fn usable_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Decoding threads for a `threads` setting: 0 is one per physical core; more than the CPUs
/// the process may use is capped there (with a warning): llama.cpp's workers spin while they
/// wait for each other, so one more thread than CPUs makes decoding tens of times slower.
pub(crate) fn decode_threads(asked: u32) -> u32 {
    let cpus = usable_cpus();
    if asked == 0 {
        return physical_cores().min(cpus).max(1);
    }
    if asked > cpus {
        log::log_warn!(
            "threads {asked} is more than the {cpus} CPUs this process may use; using {cpus}"
        );
        return cpus;
    }
    asked
}

fn physical_cores() -> u32 {
    let logical = usable_cpus();
    // Linux: count distinct (physical id, core id) pairs.
    if let Ok(s) = std::fs::read_to_string("/proc/cpuinfo") {
        let mut cores = std::collections::HashSet::new();
        let mut phys = "";
        for line in s.lines() {
            let mut kv = line.splitn(2, ':').map(str::trim);
            match (kv.next(), kv.next()) {
                (Some("physical id"), Some(v)) => phys = v,
                (Some("core id"), Some(v)) => {
                    cores.insert((phys.to_string(), v.to_string()));
                }
                _ => {}
            }
        }
        if !cores.is_empty() {
            return (cores.len() as u32).clamp(1, logical);
        }
    }
    logical
}

/// Host memory available for new allocations (Linux: MemAvailable), if known.
pub(crate) fn available_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
