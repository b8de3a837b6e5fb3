//! Process-level tuning of the daemon, measured (BENCH.md): the workers' scheduler slice.

/// The CPU slice a worker asks the scheduler for (EEVDF, Linux 6.12+; older kernels ignore it).
const WORKER_SLICE_NS: u64 = 100_000;

/// Ask for a short scheduler slice. A worker runs a few tens of microseconds per message and
/// then sleeps; with a short slice the scheduler runs it as soon as a message arrives instead
/// of after the current task's (default 0.75 ms+) slice, which is what sets the latency tail
/// on a busy host. Nice value and policy are unchanged; failure changes nothing.
pub(super) fn request_short_slice() {
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    // SAFETY: getpriority/sched_setattr on this process with a fully initialised attr.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        if nice == -1 && *libc::__errno_location() != 0 {
            return;
        }
        if libc::sched_getscheduler(0) != libc::SCHED_OTHER {
            return;
        }
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            flags: 0,
            nice,
            priority: 0,
            runtime: WORKER_SLICE_NS,
            deadline: 0,
            period: 0,
        };
        libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Linux 6.12 and later honour a custom slice for SCHED_OTHER; older kernels ignore it.
    fn kernel_at_least(major: u32, minor: u32) -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (a, b) >= (major, minor)
    }

    #[test]
    fn a_worker_asks_for_a_short_slice() {
        // In a thread of its own: the request applies to the calling thread.
        std::thread::spawn(|| {
            let nice_before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            request_short_slice();
            let sched = std::fs::read_to_string("/proc/thread-self/sched").unwrap();
            let slice = sched
                .lines()
                .find(|l| l.starts_with("se.slice"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string());
            if kernel_at_least(6, 12) {
                assert_eq!(slice.as_deref(), Some("100000"), "{sched}");
            }
            assert_eq!(
                unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) },
                nice_before
            );
        })
        .join()
        .unwrap();
    }
}
