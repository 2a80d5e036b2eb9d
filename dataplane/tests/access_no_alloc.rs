//! Access evaluation allocates nothing per request: a counting global
//! allocator (this test binary only) watches 10,000 evaluations against
//! 1,000 policies and 100,000 ranges.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use palisade_dataplane::access::{self, AccessTable, Subject};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn evaluation_allocates_nothing_per_request() {
    let policy = palisade_bench::policies::access_policy(1_000, 100_000, 100);
    let table = AccessTable::build(&policy).expect("builds");
    let mut groups = Vec::with_capacity(8);
    let user_agent = b"Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36";
    let mut decisions = [0u32; 4];
    // Warm up (lazy regex caches and the like), then count.
    for round in 0..2 {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for i in 0..10_000u32 {
            let ip = IpAddr::from([10 + (i % 3) as u8, (i % 256) as u8, (i * 7 % 256) as u8, 1]);
            table.group_ids(["group1", "group5"].into_iter(), &mut groups);
            let sets = table.ip_sets_id(ip);
            let d = table.evaluate(&Subject {
                app: (i % 100) as usize,
                user: table.user_id("user3"),
                groups: &groups,
                ip_sets: table.ip_sets(sets),
                devices: access::DEVICE_UNMANAGED,
                client_kind: access::client_kind(user_agent),
                user_agent_bits: table.user_agent_bits(user_agent),
            });
            decisions[d.action as usize] += 1;
        }
        let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
        if round == 1 {
            assert_eq!(allocated, 0, "allocations during 10,000 evaluations");
        }
    }
    // The fixture exercises more than one outcome.
    assert!(
        decisions.iter().filter(|n| **n > 0).count() >= 2,
        "{decisions:?}"
    );
}
