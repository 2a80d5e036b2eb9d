//! Graceful stop on SIGTERM or SIGINT: every core writes the log batches it
//! holds in memory (sealed or being filled) to its spill directory, so a
//! restarted data plane sends them; then the process exits.
//!
//! The signals are blocked in every thread (the mask is set before the
//! cores start and inherited) and taken by one thread with `sigwait`; the
//! cores see the request through an atomic flag polled by their log flush
//! task (shared-nothing: no core state is touched from another thread).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static REQUESTED: AtomicBool = AtomicBool::new(false);
static CORES_DONE: AtomicUsize = AtomicUsize::new(0);

/// How long the cores get to write their batches.
const PERSIST_DEADLINE: Duration = Duration::from_secs(5);

/// Whether a stop was requested (polled by the cores).
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Acquire)
}

/// A core has written its log batches and will take no more records.
pub fn core_done() {
    CORES_DONE.fetch_add(1, Ordering::AcqRel);
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread it
/// starts afterwards) and starts the thread that waits for them. When one
/// arrives, the `logging_cores` cores persist their batches (at most
/// [`PERSIST_DEADLINE`]) and the process exits with status 0.
pub fn install(logging_cores: usize) {
    let set = signal_set();
    // SAFETY: pthread_sigmask with a valid set; failure leaves the default
    // disposition (immediate exit), which is what we had before.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("palisade-signals".into())
        .spawn(move || {
            let mut signal = 0;
            // SAFETY: sigwait on the set blocked above.
            unsafe { libc::sigwait(&set, &mut signal) };
            REQUESTED.store(true, Ordering::Release);
            let start = Instant::now();
            while CORES_DONE.load(Ordering::Acquire) < logging_cores
                && start.elapsed() < PERSIST_DEADLINE
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            let done = CORES_DONE.load(Ordering::Acquire);
            if done < logging_cores {
                crate::say!(
                    "dataplane: stopping: {} of {logging_cores} cores did not write their log batches in time",
                    logging_cores - done
                );
            }
            std::process::exit(0);
        });
}
