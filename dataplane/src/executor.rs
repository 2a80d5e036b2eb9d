//! A core's glommio executor, built within the locked-memory limit.
//!
//! Each executor sets up three io_uring rings (main, latency, poll) and
//! registers its io memory with each. Without CAP_IPC_LOCK the kernel
//! charges both to RLIMIT_MEMLOCK, and counts the charge per user across
//! all of that user's processes (`user_struct.locked_vm`): measured on
//! Linux 6.18, twenty rings of 4,096 entries fill 8 MiB. A ring is freed
//! by a kernel worker after its process exits, so a data plane restarted at
//! once can find its previous run's rings still charged; under CPU load
//! that took long enough to make a start fail. [`build`] therefore waits,
//! up to [`LOCKED_MEMORY_WAIT`], for memory this run's own need fits in,
//! and names the limit when it gives up.

use std::time::{Duration, Instant};

use glommio::{GlommioError, LocalExecutor, LocalExecutorBuilder, Placement};

/// Submission entries of a core's main ring (glommio's default is 128),
/// the ring that holds every socket's armed poll. The kernel sizes a
/// ring's poll-cancel hash table from its completion queue (8 buckets at
/// 128 entries, the maximum of 256 from 4,096), and glommio cancels its
/// preemption timeout with an async cancel on every reactor turn, which the
/// kernel first looks up among the ring's armed polls: with 10,000 idle
/// connections (one armed poll each) a turn walked ~1,250 of them per
/// bucket. Measured in BENCHMARKS.md ("Connection floods"). The latency and
/// poll rings are 128 deep (vendor/glommio/PALISADE.md).
pub const RING_DEPTH: usize = 4096;

/// Depth of the latency and poll rings (the vendored glommio's
/// `SIDE_RING_DEPTH`).
const SIDE_RING_DEPTH: usize = 128;

/// How long a core waits for locked memory still charged to this user,
/// typically to the rings of a data plane that just exited.
pub const LOCKED_MEMORY_WAIT: Duration = Duration::from_secs(30);

/// How a core's executor is built.
#[derive(Clone, Copy, Debug)]
pub struct ExecutorConfig {
    pub index: usize,
    pub cpu: usize,
    /// glommio's io memory (bytes), registered with each of the three rings.
    pub io_memory: usize,
    /// Whether this run's whole need fits RLIMIT_MEMLOCK, so that running
    /// out means another holder and waiting can help.
    pub wait_for_locked_memory: bool,
}

/// Bytes of RLIMIT_MEMLOCK a ring of `entries` submission entries is
/// charged: its submission entries (64 bytes each), and its rings region
/// (the completion queue of twice as many 16-byte entries, the submission
/// index array, the header), each rounded up to pages. Matches what the
/// kernel charged here: 404 KiB at 4,096 entries, 16 KiB at 128.
fn ring_bytes(entries: usize) -> u64 {
    let page_up = |n: usize| n.div_ceil(4096) * 4096;
    (page_up(64 * entries) + page_up(4 * entries + 2 * 16 * entries + 320)) as u64
}

/// RLIMIT_MEMLOCK one core holds: its three rings, and its io memory
/// registered once per ring (glommio rounds it up to at least 64 KiB).
pub fn locked_bytes_per_core(io_memory: usize) -> u64 {
    let io_memory = io_memory.div_ceil(4096).max(16) * 4096;
    ring_bytes(RING_DEPTH) + 2 * ring_bytes(SIDE_RING_DEPTH) + 3 * io_memory as u64
}

/// Builds core `config.index`'s executor on this thread, pinned to its CPU.
/// Out of locked memory it retries until [`LOCKED_MEMORY_WAIT`] when this
/// run's need fits the limit, and says once that it waits.
pub fn build(config: ExecutorConfig) -> Result<LocalExecutor, String> {
    let deadline = Instant::now() + LOCKED_MEMORY_WAIT;
    let mut said = false;
    loop {
        let made = LocalExecutorBuilder::new(Placement::Fixed(config.cpu))
            .name(&format!("palisade-core{}", config.index))
            .io_memory(config.io_memory)
            .ring_depth(RING_DEPTH)
            .make();
        let error = match made {
            Ok(executor) => return Ok(executor),
            Err(error) => error,
        };
        if !out_of_locked_memory(&error) {
            return Err(format!("setting up its executor: {error}"));
        }
        let limit = memlock_limit() / 1024;
        if !config.wait_for_locked_memory || Instant::now() >= deadline {
            return Err(format!(
                "its io_uring rings do not fit in locked memory ({error}): RLIMIT_MEMLOCK is \
                 {limit} KiB, counted across all of this user's processes, and each core \
                 needs ~{} KiB; raise the limit (LimitMEMLOCK= in the unit), run fewer \
                 --cores or a smaller --io-memory-kib",
                locked_bytes_per_core(config.io_memory) / 1024,
            ));
        }
        if !said {
            crate::say!(
                "dataplane: core {}: locked memory (RLIMIT_MEMLOCK {limit} KiB) is held by \
                 another of this user's processes, or a run that just exited; waiting up to {} s",
                config.index,
                LOCKED_MEMORY_WAIT.as_secs()
            );
            said = true;
        }
        // The kernel frees an exited process's rings on a worker thread and
        // says nothing when it is done: poll for it.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a failed build ran out of RLIMIT_MEMLOCK: `io_uring_setup`
/// answers ENOMEM (EAGAIN from `mmap` of a ring on some kernels).
fn out_of_locked_memory(error: &GlommioError<()>) -> bool {
    let io = match error {
        GlommioError::IoError(e) => e,
        GlommioError::EnhancedIoError { source, .. } => source,
        _ => return false,
    };
    matches!(io.raw_os_error(), Some(libc::ENOMEM) | Some(libc::EAGAIN))
}

/// The soft RLIMIT_MEMLOCK in force (bytes); 0 if it cannot be read.
pub fn memlock_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return 0;
    }
    lim.rlim_cur
}

/// Raises the soft RLIMIT_MEMLOCK toward the hard limit when `needed`
/// bytes would not fit. Returns the soft limit in force afterwards.
pub fn ensure_memlock(needed: u64) -> u64 {
    crate::server::raise_soft_limit(libc::RLIMIT_MEMLOCK, needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_charges_match_what_the_kernel_charged() {
        // Measured: 20 rings of 4,096 entries fit 8 MiB and 21 do not;
        // exactly 512 of 128 entries fit.
        assert_eq!(ring_bytes(4096), 404 * 1024);
        assert_eq!(ring_bytes(128), 16 * 1024);
        assert!(20 * ring_bytes(4096) <= 8 << 20 && 21 * ring_bytes(4096) > 8 << 20);
        // A core at the default io memory (64 KiB): 404 + 2 × 16 + 3 × 64.
        assert_eq!(locked_bytes_per_core(64 << 10), 628 * 1024);
        // glommio's floor of 64 KiB applies below it.
        assert_eq!(locked_bytes_per_core(1), 628 * 1024);
    }
}
