//! File descriptors: the process limit (raised to the hard limit at start, as nginx's
//! `worker_rlimit_nofile` and Go's runtime do), the open-file cache's share of it, and what
//! running out (`EMFILE`, `ENFILE`) looks like.

/// Descriptors kept free of the open-file cache for everything else: stdio, the listener, the
/// log, the Python side's socket, slice-cache files, a response's file evicted while it is sent.
const RESERVED: u64 = 64;
/// The open-file cache's automatic size never goes above this (nginx's `open_file_cache max=`
/// is usually set around it); more descriptors go to connections.
const AUTO_CACHE_MAX: u64 = 4096;

/// The descriptor limit before and after `raise_limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The soft limit the process started with.
    pub initial_soft: u64,
    /// The soft limit now (the hard limit when it could be raised).
    pub soft: u64,
    pub hard: u64,
}

/// The most a soft limit can be raised to: the hard limit, or the kernel's `nr_open` ceiling
/// when the hard limit is unlimited (setrlimit refuses more than that).
fn ceiling(hard: u64) -> u64 {
    if hard != libc::RLIM_INFINITY {
        return hard;
    }
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(1 << 20)
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; the limits before and after (the soft
/// limit stays as it was when setrlimit refuses).
pub fn raise_limit() -> Limits {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Limits { initial_soft: 1024, soft: 1024, hard: 1024 };
    }
    let initial_soft = rl.rlim_cur;
    let target = ceiling(rl.rlim_max);
    if rl.rlim_cur != libc::RLIM_INFINITY && rl.rlim_cur < target {
        let raised = libc::rlimit { rlim_cur: target, rlim_max: rl.rlim_max };
        // SAFETY: a valid in-pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            rl.rlim_cur = target;
        }
    }
    Limits { initial_soft, soft: rl.rlim_cur, hard: rl.rlim_max }
}

/// The open-file cache's capacity: `setting` when it is not 0; else a quarter of the soft limit
/// left after the reserve, at most `AUTO_CACHE_MAX` (1024 descriptors: 240 cached files,
/// the rest for connections).
pub fn cache_capacity(setting: usize, soft: u64) -> usize {
    if setting > 0 {
        return setting;
    }
    (soft.saturating_sub(RESERVED) / 4).min(AUTO_CACHE_MAX) as usize
}

/// The process (`EMFILE`) or the system (`ENFILE`) has no descriptor left.
pub fn exhausted(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_gets_a_quarter_of_what_is_left() {
        assert_eq!(cache_capacity(0, 1024), 240);
        assert_eq!(cache_capacity(0, 64), 0);
        assert_eq!(cache_capacity(0, 10), 0);
        assert_eq!(cache_capacity(0, 1 << 20), 4096);
        assert_eq!(cache_capacity(100, 1024), 100);
    }

    #[test]
    fn exhaustion_is_emfile_or_enfile_only() {
        assert!(exhausted(&std::io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(exhausted(&std::io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!exhausted(&std::io::Error::from_raw_os_error(libc::ENOENT)));
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let limits = raise_limit();
        assert!(limits.soft >= limits.initial_soft);
        assert_eq!(limits.soft, ceiling(limits.hard));
    }
}
